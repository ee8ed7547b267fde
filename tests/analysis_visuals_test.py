"""Grad-CAM, timeline.png and report.html of the emotion analysis."""

import base64
import io
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from mre_jax import models
from mre_jax.analysis import gradcam
from mre_jax.analysis import html_parts
from mre_jax.analysis import report_html
from mre_jax.analysis import timeline
from mre_jax.config.labels import CLASS_NAMES
from mre_jax.data import input_pipeline
from mre_jax.datasets import loading
from mre_jax.inference.predictor import Predictor

SIZE = 16  # Input size of the hand-built model: its conv3 stage is 4 x 4.


def hand_filled(shape, rng):
  """Weights of scale 1/sqrt(fan in); vectors (biases) small."""
  if len(shape) == 1:
    return (0.1 * rng.standard_normal(shape)).astype(np.float32)
  fan_in = int(np.prod(shape[:-1]))
  return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


@pytest.fixture(scope="module")
def hand_built():
  """A tiny RGB model, filled by hand, whose conv3 stage is > 0 everywhere.

  With bn3's bias at 6 the ReLU after it is the identity, so gradients taken
  at bn3's output (below) are the gradients at the Grad-CAM layer.
  """
  model = models.ResEmoteNet(width=4)
  rng = np.random.default_rng(3)
  shapes = models.abstract_variables(model, SIZE)
  params = jax.tree.map(lambda s: hand_filled(s.shape, rng), shapes["params"])
  for name in ("bn1", "bn2", "bn3"):
    params[name]["scale"] = np.ones_like(params[name]["scale"])
  params["bn3"]["bias"] = np.full_like(params["bn3"]["bias"], 6.0)
  stats = {"mean": np.zeros, "var": np.ones}
  batch_stats = jax.tree_util.tree_map_with_path(
      lambda path, s: stats[path[-1].key](s.shape, np.float32),
      shapes["batch_stats"])
  return Predictor(model, {"params": params, "batch_stats": batch_stats},
                   SIZE, CLASS_NAMES, batch_size=4)


def direct_gradcam(predictor, crops, class_ids):
  """Grad-CAM from bn3's captured output and jax.grad, without sow/perturb."""
  model, variables = predictor.model, predictor.variables
  x = input_pipeline.preprocess(jnp.asarray(crops), image_size=SIZE)

  def score(delta):
    captured = []

    def add_delta(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if context.module.name == "bn3" and context.method_name == "__call__":
        captured.append(out)
        return out + delta
      return out

    with nn.intercept_methods(add_delta):
      logits = model.apply(variables, x, train=False)
    return logits[np.arange(len(crops)), class_ids].sum(), captured[0]

  zeros = jnp.zeros((len(crops), SIZE // 4, SIZE // 4, 4 * model.width))
  grads, pre_relu = jax.jit(jax.grad(score, has_aux=True))(zeros)
  assert float(pre_relu.min()) > 0  # ReLU is the identity here.
  activations, grads = np.asarray(pre_relu), np.asarray(grads)
  cam = np.maximum(np.einsum("bhwc,bc->bhw", activations,
                             grads.mean(axis=(1, 2))), 0)
  cam = np.asarray(jax.image.resize(cam, (len(crops), SIZE, SIZE),
                                    "bilinear"))
  peak = cam.max(axis=(1, 2), keepdims=True)
  return np.where(peak > 0, cam / np.where(peak > 0, peak, 1), 0)


def test_gradcam_equals_the_direct_computation(hand_built):
  rng = np.random.default_rng(0)
  crops = rng.integers(0, 256, (3, 20, 20, 3), np.uint8)
  class_ids = np.array([0, 3, 6])
  maps = gradcam.gradcam(hand_built, crops, class_ids)
  assert maps.shape == (3, SIZE, SIZE) and maps.dtype == np.float32
  assert (maps.max(axis=(1, 2)) == 1).sum() >= 2  # Not trivially all zero.
  np.testing.assert_allclose(maps, direct_gradcam(hand_built, crops,
                                                  class_ids), atol=1e-5)
  # Same crop, other classes: other maps.
  same = gradcam.gradcam(hand_built, crops[[0, 0, 0]], class_ids)
  assert np.abs(same[0] - same[1]).max() > 0.05
  assert np.abs(same[1] - same[2]).max() > 0.05


@pytest.fixture(scope="module")
def teacher(teacher_run):
  return Predictor.from_workdir(teacher_run[0], batch_size=8)


@pytest.fixture(scope="module")
def faces(teacher_run):
  test = loading.load_splits(loading.DataSpec.from_config(
      teacher_run[1].dataset))["test"]
  return test.images[:6]


def test_gradcam_of_a_trained_model(teacher, faces):
  maps = gradcam.gradcam(teacher, faces)
  assert maps.shape == (6, teacher.image_size, teacher.image_size)
  assert maps.dtype == np.float32 and np.isfinite(maps).all()
  assert maps.min() >= 0 and maps.max() <= 1
  peaks = maps.max(axis=(1, 2))
  assert ((np.abs(peaks - 1) < 1e-6) | (peaks == 0)).all() and peaks.any()
  # No class given: the predicted one.
  predicted = teacher.logits(faces).argmax(-1)
  np.testing.assert_allclose(maps, gradcam.gradcam(teacher, faces, predicted),
                             atol=1e-6)
  # One face, each class: the maps are not all the same.
  per_class = gradcam.gradcam(teacher, np.repeat(faces[:1], 7, axis=0),
                              np.arange(7))
  spread = np.abs(per_class - per_class[:1]).max(axis=(1, 2))
  assert spread.max() > 0.05
  # The predictor's preprocessing: a grey face as RGB is the same face, and
  # crops of mixed sizes keep their order.
  rgb = np.repeat(faces, 3, axis=-1) if faces.shape[-1] == 1 else faces
  bigger = np.asarray([np.kron(f, np.ones((2, 2, 1), np.uint8)) for f in rgb])
  mixed = gradcam.gradcam(teacher, [*rgb, *bigger])
  np.testing.assert_allclose(mixed[:6], maps, atol=1e-5)
  np.testing.assert_allclose(mixed[6:], gradcam.gradcam(teacher, bigger),
                             atol=1e-6)
  with pytest.raises(ValueError, match="class_ids"):
    gradcam.gradcam(teacher, faces, [7] * 6)


def test_overlay_colours_the_crop_by_the_map():
  crop = np.full((30, 20), 100, np.uint8)  # Grey, not square.
  heat = np.zeros((8, 8), np.float32)
  heat[:, :4] = 1.0  # Left half: all influence.
  out = gradcam.overlay(crop, heat)
  assert out.shape == (30, 20, 3) and out.dtype == np.uint8
  left, right = out[15, 2].astype(int), out[15, 17].astype(int)
  assert left[0] > left[2] + 50  # Red where the map is 1.
  assert right[2] > right[0] + 50  # Blue where it is 0.
  np.testing.assert_array_equal(gradcam.overlay(crop, np.zeros((4, 4)), 0.0),
                                np.repeat(crop[..., None], 3, axis=-1))


def make_rows(face_times, labels=("neutral", "happy")):
  """Rows of faces seen at the given times; face i leans to labels[i]."""
  rows = []
  rng = np.random.default_rng(1)
  for face, times in enumerate(face_times):
    for t in times:
      probs = rng.dirichlet(np.ones(7)) * 0.3
      probs[CLASS_NAMES.index(labels[face % len(labels)])] += 0.7
      rows.append({"source": "clip.mp4", "frame": int(t * 25),
                   "time_s": float(t), "face_id": face, "x": 0, "y": 0,
                   "w": 10, "h": 10, **dict(zip(CLASS_NAMES, probs)),
                   "emotion": labels[face % len(labels)],
                   "confidence": float(probs.max())})
  return rows


def colour_pixels(png, name):
  """Pixels within 40 of the emotion's fixed colour."""
  rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
  hexa = timeline.EMOTION_COLOURS[name]
  target = np.array([int(hexa[i:i + 2], 16) for i in (1, 3, 5)])
  return int((np.abs(rgb - target).sum(-1) < 40).sum())


def test_timeline_panels_per_face(tmp_path):
  path = tmp_path / "timeline.png"
  rows = make_rows([np.arange(0, 60, 0.5), np.arange(20, 40, 0.5)])
  rows.append({"time_s": 3.0, "face_id": None})  # A frame without a face.
  timeline.write_timeline(rows, CLASS_NAMES, str(path))
  with Image.open(path) as image:
    assert image.format == "PNG"
    assert image.size == timeline.image_size(2) == (1000, 600)
  assert os.path.getsize(path) < 300_000
  # Face 0 leans neutral, face 1 happy, in their fixed colours.
  assert colour_pixels(path, "neutral") > 2000
  assert colour_pixels(path, "happy") > 1000
  assert os.listdir(tmp_path) == ["timeline.png"]


def test_timeline_of_one_image_and_of_no_face(tmp_path):
  single = tmp_path / "single.png"
  timeline.write_timeline(make_rows([[0.0], [0.0]]), CLASS_NAMES, single)
  with Image.open(single) as image:
    assert image.size == timeline.image_size(2)
  assert colour_pixels(single, "happy") > 2000  # Face 1's bar.
  empty = tmp_path / "empty.png"
  timeline.write_timeline([{"time_s": 0.0, "face_id": None}], CLASS_NAMES,
                          empty)
  with Image.open(empty) as image:
    assert image.size == timeline.image_size(0) == (1000, 360)
  long = tmp_path / "long.png"
  many = [np.arange(0, 1800, 0.25)] * 3
  timeline.write_timeline(make_rows(many, ("angry", "sad", "fear")),
                          CLASS_NAMES, long)
  assert os.path.getsize(long) < 300_000


def hex_pixels(png, colour):
  """Pixels within 12 of an exact colour."""
  rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
  target = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
  return int((np.abs(rgb - target).sum(-1) < 12).sum())


def test_timeline_shades_tasks_and_draws_valence(tmp_path):
  rows = make_rows([np.arange(0, 60, 0.5)], labels=("happy",))
  plain, banded = tmp_path / "plain.png", tmp_path / "banded.png"
  timeline.write_timeline(rows, CLASS_NAMES, plain)
  tasks = [{"label": "login", "start_s": 0.0, "end_s": 20.0},
           {"label": "search", "start_s": 20.0, "end_s": 45.0},
           {"label": "pay", "start_s": 45.0, "end_s": None}]
  timeline.write_timeline(rows, CLASS_NAMES, banded, tasks=tasks)
  for colour in timeline.TASK_COLOURS:  # A few from anti-aliased lines.
    assert hex_pixels(plain, colour) < 500 < 5000 < hex_pixels(banded, colour)
  # Valence (black, right axis) follows the face: high for a happy face,
  # low for a sad one.
  sad = tmp_path / "sad.png"
  timeline.write_timeline(make_rows([np.arange(0, 60, 0.5)], ("sad",)),
                          CLASS_NAMES, sad)

  def black_rows(png):
    black = np.asarray(Image.open(png).convert("L")) < 40
    panel = black[timeline.HEADER_PX + 30:-timeline.BOTTOM_PX - 10, 150:850]
    return np.nonzero(panel.any(axis=1))[0], panel.shape[0]

  (happy_rows, height), (sad_rows, _) = black_rows(plain), black_rows(sad)
  assert len(happy_rows) and len(sad_rows)
  assert happy_rows.mean() < height / 2 < sad_rows.mean()


NAME = 'Interview <B> & "final".mp4'


def make_summary(faces=2, grouped=False):
  shares = [dict(zip(CLASS_NAMES, [0, 0, 0, .28, 0, .1, .62])),
            dict(zip(CLASS_NAMES, [.45, 0, 0, 0, .55, 0, 0]))]
  faces = {str(i): {"seconds_seen": 90.0 - 35 * i,
                    "dominant_emotion": ("neutral", "sad")[i],
                    "share_of_time": shares[i],
                    "mean_probabilities": shares[i], "key_moments": []}
           for i in range(faces)}
  summary = {"input": f"/data/{NAME}", "faces": faces,
             "model": {"name": "student_c", "params": 53213,
                       "checkpoint": "runs/E6"},
             "detector": {"name": "haar", "min_size": 40}}
  if not grouped:
    return {**summary, "frames_total": 2250, "frames_analysed": 180,
            "frames_with_face": 178, "frames_unreadable": 2, "wall_s": 12.3,
            "frames_per_second": 14.6}
  for face in faces.values():
    face["emotion_share"] = face.pop("share_of_time")
  return {**summary, "frames": {"total": 2250, "analysed": 180,
                                "with_face": 178, "unreadable_skipped": 2},
          "settings": {"sample_fps": 2.0, "smoothing_s": 0.5},
          "timing": {"wall_s": 12.3, "frames_per_s": 14.6}}


def data_uris(page):
  return [base64.b64decode(m) for m in
          re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_is_self_contained_and_escaped(tmp_path):
  png = tmp_path / "timeline.png"
  timeline.write_timeline(make_rows([[0.0, 1.0]]), CLASS_NAMES, png)
  crop = np.random.default_rng(2).integers(0, 256, (48, 40, 3), np.uint8)
  moments = [{"source": f"/data/{NAME}", "frame": 1885, "time_s": 75.4,
              "face_id": 1, "emotion": "sad", "confidence": 0.8,
              "crop": crop, "overlay": gradcam.overlay(crop, np.eye(4))},
             {"source": f"/data/{NAME}", "frame": 10, "time_s": 0.4,
              "face_id": 0, "emotion": "happy", "confidence": 0.7,
              "crop": crop[..., 0], "overlay": None}]
  path = tmp_path / "report.html"
  path.write_text("old")
  report_html.write_report(str(path), make_summary(), str(png), moments)
  page = path.read_text(encoding="utf-8")
  assert sorted(os.listdir(tmp_path)) == ["report.html", "timeline.png"]
  images = [Image.open(io.BytesIO(data)) for data in data_uris(page)]
  assert len(images) == 4  # Timeline, two crops, one overlay.
  assert images[0].size == timeline.image_size(1)
  assert images[1].size[1] == html_parts.THUMB_PX  # 48 x 40 crop, scaled.
  assert not re.search(r'(src|href)="(?!data:)', page)
  assert "<script" not in page.lower() and "http" not in page
  assert "Interview &lt;B&gt; &amp; &quot;final&quot;.mp4" in page
  assert NAME not in page and "<B>" not in page
  assert page.count('<tr class="face">') == 2
  assert "01:15" in page and "00:00" in page  # Moments' times, mm:ss.
  assert "62&nbsp;%" in page and "Grad-CAM" in page
  assert ">2,250<" in page and "14.6 frames per second" in page


def test_report_has_a_table_per_task_with_its_moments(tmp_path):
  summary = make_summary(grouped=True)
  summary["faces"]["0"]["mean_valence"] = -0.25
  shares = summary["faces"]["1"]["emotion_share"]
  summary["tasks"] = [
      {"label": "login <1>", "start_s": 0.0, "end_s": 42.0, "duration_s": 42,
       "seconds_with_face": 40.2, "mean_valence": 0.31,
       "dominant_emotion": "sad", "emotion_share": shares,
       "mean_probabilities": shares},
      {"label": "search", "start_s": 42.0, "end_s": 60.0, "duration_s": 18,
       "seconds_with_face": 0.0, "mean_valence": None,
       "dominant_emotion": None, "emotion_share": None,
       "mean_probabilities": None}]
  summary["participant"] = {"face_id": 0, "other_faces_dropped": 1}
  crop = np.zeros((48, 48, 3), np.uint8)
  moments = [{"source": "clip.mp4", "frame": 30, "time_s": 3.0,
              "face_id": 0, "emotion": "sad", "confidence": 0.8,
              "task": "login <1>", "crop": crop, "overlay": None}]
  path = tmp_path / "report.html"
  report_html.write_report(path, summary, None, [], task_moments=moments)
  page = path.read_text(encoding="utf-8")
  assert page.count('<tr class="task">') == 2
  assert "login &lt;1&gt;" in page and "login <1>" not in page
  assert "00:00&ndash;00:42" in page and "+0.31" in page
  assert "-0.25" in page and "Mean valence" in page
  assert "<h4>login &lt;1&gt;</h4>" in page and len(data_uris(page)) == 1
  assert "1 other face dropped" in page


def test_report_reads_grouped_fields_and_no_face(tmp_path):
  path = tmp_path / "report.html"
  report_html.write_report(path, make_summary(grouped=True), None, [])
  page = path.read_text(encoding="utf-8")
  assert page.count('<tr class="face">') == 2 and "55&nbsp;%" in page
  assert ">178<" in page and "12.3 s" in page and "Smoothing" in page
  report_html.write_report(path, make_summary(faces=0), None, [])
  page = path.read_text(encoding="utf-8")
  assert '<tr class="face">' not in page and "No face was found" in page
  assert "no face found" in page


def test_mmss():
  assert timeline.mmss(0) == "00:00"
  assert timeline.mmss(75.4) == "01:15"
  assert timeline.mmss(3725) == "1:02:05"
