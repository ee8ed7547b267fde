"""Shipped models: publishing a run, loading it by name, re-measuring it.

A tiny trained student is published into a temporary folder, so every path
of publishing and loading runs on a real model; the models that come with
the package are then loaded and re-measured on the real datasets (skipped
where those are absent).
"""

import json
import os
import shutil

import numpy as np
import pytest

from mre_jax import inference
from mre_jax import pretrained
from mre_jax.analysis import classifier as analysis_classifier
from mre_jax.datasets import common
from mre_jax.errors import UserError
from mre_jax.inference.predictor import Predictor
from mre_jax.models import shipped
from mre_jax.pretrained import __main__ as cli
from mre_jax.pretrained import adjust
from mre_jax.pretrained import measure
from mre_jax.pretrained import publish
from mre_jax.pretrained import tables

NAME = "student_c-synthetic"


@pytest.fixture(scope="module")
def published(baseline_run, data_dir, tmp_path_factory):
  """``baseline_run`` published as NAME into a folder of its own."""
  folder = str(tmp_path_factory.mktemp("pretrained"))
  card = publish.publish(baseline_run[0], NAME, data_dir, "", folder)
  return folder, card


def test_card_records_the_run_and_the_shipped_weights(published, baseline_run):
  folder, card = published
  assert shipped.names(folder) == (NAME,)
  assert card == shipped.card(NAME, folder)
  assert card["model"]["name"] == "student_c" and card["model"]["width"] == 4
  assert card["preprocessing"]["image_size"] == 16
  assert card["dataset"]["name"] == "synthetic_faces"
  for split in ("validation", "test", "test_flip"):
    assert 0 <= card["accuracy"][split]["accuracy"] <= 1
    assert len(card["accuracy"][split]["per_class_accuracy"]) == 7
  training = card["training"]
  assert training["epochs"] == 1 and training["best_epoch"] == 1
  assert training["experiment"] == "baseline" and training["commit"]
  assert training["logit_adjustment"]["tau"] in adjust.TAUS
  assert len(training["logit_adjustment"]["offsets"]) == 7
  with np.load(os.path.join(folder, NAME + ".npz")) as f:
    dtypes = {f[k].dtype for k in f.files}
  assert dtypes == {np.dtype(card["weights"]["dtype"])}
  # float16 only when test accuracy moves by less than the tolerance.
  change = abs(training["float16_test_accuracy_change"])
  assert (card["weights"]["dtype"] == "float16") == (
      change < publish.FLOAT16_TOLERANCE)


def test_loaded_by_name_it_predicts_as_the_workdir(published, baseline_run):
  folder, card = published
  model = pretrained.load(NAME, folder=folder)
  reference = Predictor.from_workdir(baseline_run[0])
  rng = np.random.default_rng(0)
  faces = rng.integers(0, 256, (12, 20, 20, 3), dtype=np.uint8)
  # The shipped logits are the run's plus the card's adjustment offsets.
  offsets = np.asarray(card["training"]["logit_adjustment"]["offsets"])
  got, expected = model.logits(faces), reference.logits(faces) + offsets
  atol = 1e-4 if card["weights"]["dtype"] == "float32" else 5e-2
  np.testing.assert_allclose(got, expected, atol=atol)
  assert model.card["name"] == NAME
  described = analysis_classifier.describe(model, None)
  assert described["kind"] == "shipped" and described["dataset"] == (
      "synthetic_faces")
  assert described["test_accuracy"] == card["accuracy"]["test"]["accuracy"]


def test_verification_agrees_with_the_card(published, data_dir):
  folder, _ = published
  text, ok = cli.verification(NAME, data_dir, "", folder)
  assert ok, text
  assert "every accuracy agrees" in text and "test_flip" in text


def test_verification_reports_a_disagreement(published, data_dir, tmp_path):
  folder = str(tmp_path)
  for ext in (".npz", ".json"):
    shutil.copy(os.path.join(published[0], NAME + ext), folder)
  path = os.path.join(folder, NAME + ".json")
  card = json.loads(open(path).read())
  card["accuracy"]["test"]["accuracy"] += 0.05
  with open(path, "w") as f:
    json.dump(card, f)
  text, ok = cli.verification(NAME, data_dir, "", folder)
  assert not ok and "<- differs" in text
  assert cli.main(["pretrained", f"--verify={NAME}", f"--data_dir={data_dir}",
                   f"--folder={folder}"]) == 1


def test_damaged_or_unknown_models_are_one_clear_error(published, tmp_path,
                                                       capsys):
  with pytest.raises(UserError, match="not a shipped model.*" + NAME):
    pretrained.load("student_z-fer2013", folder=published[0])
  folder = str(tmp_path)
  for ext in (".npz", ".json"):
    shutil.copy(os.path.join(published[0], NAME + ext), folder)
  with open(os.path.join(folder, NAME + ".npz"), "r+b") as f:
    f.seek(100)
    f.write(b"\0" * 16)
  with pytest.raises(UserError, match="checksum"):
    pretrained.load(NAME, folder=folder)
  with open(os.path.join(folder, NAME + ".json"), "w") as f:
    f.write("{")
  assert cli.main(["pretrained", f"--verify={NAME}",
                   f"--folder={folder}"]) == 2
  assert "model card" in capsys.readouterr().err


def test_publishing_again_replaces_both_files_whole(published, baseline_run,
                                                    data_dir):
  folder, card = published
  again = publish.publish(baseline_run[0], NAME, data_dir, "", folder)
  assert again["weights"] == card["weights"]
  assert sorted(os.listdir(folder)) == [NAME + ".json", NAME + ".npz"]
  with pytest.raises(UserError, match="--name"):
    publish.publish(baseline_run[0], "../x", data_dir, "", folder)


def _shift_shipped_bias(folder, offsets):
  """Ships the model in ``folder`` with ``offsets`` more on its last bias,
  recorded as its card's adjustment, as an earlier rule might have left it."""
  path = os.path.join(folder, NAME + ".npz")
  with np.load(path) as f:
    flat = {k: f[k] for k in f.files}
  bias = "params/fc4/bias"
  flat[bias] = (flat[bias].astype(np.float32) + offsets).astype(
      flat[bias].dtype)
  np.savez_compressed(path, **flat)
  card_path = os.path.join(folder, NAME + ".json")
  card = json.loads(open(card_path).read())
  card["weights"]["sha256"] = shipped.file_sha256(path)
  card["weights"]["bytes"] = os.path.getsize(path)
  card["training"]["logit_adjustment"] = {"tau": 9.0,
                                          "offsets": list(map(float, offsets))}
  with open(card_path, "w") as f:
    json.dump(card, f)


def test_readjusting_undoes_the_earlier_offsets_and_rechooses(
    published, data_dir, tmp_path, capsys):
  """A shipped model adjusted by another rule: readjusting it gives what
  publishing its run gives now, and keeps its training provenance."""
  folder, card = published
  for ext in (".npz", ".json"):
    shutil.copy(os.path.join(folder, NAME + ext), tmp_path)
  shifted = np.array([2.0, -1.0, 0.5, 0.0, 1.5, -2.0, 0.25], np.float32)
  _shift_shipped_bias(str(tmp_path), shifted)
  assert cli.main(["pretrained", f"--readjust={NAME}",
                   f"--data_dir={data_dir}", f"--folder={tmp_path}"]) == 0
  out = capsys.readouterr().out
  assert f"readjusted {NAME}: tau 9 -> " in out and "test_flip" in out
  again = shipped.card(NAME, str(tmp_path))
  adjustment = again["training"]["logit_adjustment"]
  assert adjustment["tau"] == card["training"]["logit_adjustment"]["tau"]
  assert adjustment["readjusted"]["date"] == again["published"]
  assert abs(adjustment["readjusted"]["float16_test_accuracy_change"]) < (
      publish.FLOAT16_TOLERANCE)
  # The training record, float16 measurement included, is the run's.
  assert {k: v for k, v in again["training"].items()
          if k != "logit_adjustment"} == {
              k: v for k, v in card["training"].items()
              if k != "logit_adjustment"}
  for split in ("validation", "test"):
    assert again["accuracy"][split]["accuracy"] == pytest.approx(
        card["accuracy"][split]["accuracy"], abs=measure.TOLERANCE)
  faces = np.random.default_rng(1).integers(0, 256, (8, 20, 20, 3), np.uint8)
  np.testing.assert_allclose(
      pretrained.load(NAME, folder=str(tmp_path)).logits(faces),
      pretrained.load(NAME, folder=folder).logits(faces), atol=5e-2)
  text, ok = cli.verification(NAME, data_dir, "", str(tmp_path))
  assert ok, text
  assert cli.main(["pretrained", "--readjust=student_z-fer2013",
                   f"--folder={tmp_path}"]) == 2
  assert cli.main(["pretrained", f"--readjust={NAME}", f"--verify={NAME}",
                   f"--folder={tmp_path}"]) == 2


def test_listing_names_each_model_with_its_accuracy(published, capsys):
  folder, card = published
  assert cli.main(["pretrained", f"--folder={folder}"]) == 0
  out = capsys.readouterr().out
  assert NAME in out and "synthetic_faces" in out
  assert f"{100 * card['accuracy']['test']['accuracy']:.2f}" in out


def test_the_packages_models_load_by_name_without_training_code():
  """Each model that comes with the package loads from its name alone,
  through load_classifier, and classifies faces of its image size."""
  names = shipped.names()
  if not names:
    pytest.skip("no shipped models in this checkout")
  assert shipped.DEFAULT in names
  for name in names:
    model = inference.load_classifier(name)
    card = model.card
    size = card["preprocessing"]["image_size"]
    faces = np.zeros((2, size, size, 3), np.uint8)
    probs = model.probabilities(faces)
    assert probs.shape == (2, 7)
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-5)
    assert card["weights"]["sha256"] == shipped.file_sha256(
        os.path.join(shipped.FOLDER, name + ".npz"))


@pytest.mark.parametrize("dataset,folder", [("fer2013", "fer2013"),
                                            ("raf_db", "rafdb")])
def test_the_packages_models_agree_with_their_cards_on_the_real_data(
    real_data_dir, tmp_path_factory, dataset, folder):
  names = [n for n in shipped.names()
           if shipped.card(n)["dataset"]["name"] == dataset]
  if not names:
    pytest.skip(f"no shipped {dataset} model in this checkout")
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  for name in names:
    text, ok = cli.verification(name, data_dir,
                                str(real_data_dir / folder))
    assert ok, text


def test_measure_compares_every_class():
  stated = {"test": {"accuracy": 0.5, "mean_class_accuracy": 0.4,
                     "per_class_accuracy": {"happy": 0.9, "fear": None}}}
  same = measure.differences(stated, stated)
  assert len(same) == 4 and measure.agree(same)
  moved = {"test": {"accuracy": 0.5, "mean_class_accuracy": 0.4,
                    "per_class_accuracy": {"happy": 0.88, "fear": None}}}
  assert not measure.agree(measure.differences(stated, moved))


def test_card_records_the_training_crops_framing(published):
  crop = published[1]["preprocessing"]["crop"]
  assert set(crop) == {"scale", "shift", "faces", "found"}
  assert 0 < crop["faces"] <= publish.FRAMING_FACES
  assert 0 <= crop["found"] <= 1 and crop["scale"] > 0


def test_tables_put_each_model_beside_the_papers_student(published):
  folder, card = published
  table = tables.shipped_table(folder)
  assert f"`{NAME}`" in table and table.endswith("| - |")
  assert f"{100 * card['accuracy']['test_flip']['accuracy']:.2f}" in table
  assert tables.paper_best("student_b", "raf_db") == ("E4", 82.45)
  assert tables.paper_best("student_c", "fer2013") == ("E6", 58.58)
  assert tables.paper_best("student_c", "raf_db") is None
  assert "65.80" in tables.references_table()


def test_adjustment_is_the_most_accurate_balanced_tau():
  """Logits that favour a frequent class: the chosen tau balances them to
  within MAX_CLASS_GAP, the most accurate such tau of those that cost at
  most MAX_ACCURACY_COST of accuracy; the most balanced tau is not it."""
  rng = np.random.default_rng(0)
  names = [str(i) for i in range(3)]
  labels = rng.choice(3, 3000, p=[0.8, 0.15, 0.05])
  prior = common.class_prior(labels, 3)
  logits = rng.normal(0, 1, (3000, 3)) + np.log(prior)
  logits[np.arange(3000), labels] += 2.0
  choice = adjust.choose(logits, labels, prior, names)
  by_tau = {c["tau"]: c for c in choice.candidates}
  assert set(by_tau) == set(adjust.TAUS) and 0.25 in by_tau
  gap = lambda c: c["accuracy"] - c["mean_class_accuracy"]
  chosen = by_tau[choice.tau]
  assert gap(by_tau[0.0]) > 0.25 and 0 < gap(chosen) <= adjust.MAX_CLASS_GAP
  floor = by_tau[0.0]["accuracy"] - adjust.MAX_ACCURACY_COST
  balanced = [c for c in choice.candidates if c["accuracy"] >= floor and
              gap(c) <= adjust.MAX_CLASS_GAP]
  assert chosen["accuracy"] == max(c["accuracy"] for c in balanced)
  most_balanced = max(balanced, key=lambda c: c["mean_class_accuracy"])
  assert most_balanced["tau"] > choice.tau
  assert choice.as_dict()["tau"] == choice.tau
  variables = {"params": {"fc4": {"bias": np.zeros(3, np.float32),
                                  "kernel": np.ones((2, 3), np.float32)}},
               "batch_stats": {}}
  moved = adjust.apply(variables, np.array([1.0, -1.0, 0.5]))
  np.testing.assert_array_equal(moved["params"]["fc4"]["bias"],
                                [1.0, -1.0, 0.5])
  assert variables["params"]["fc4"]["bias"].sum() == 0  # Not in place.


def test_a_point_of_balance_is_not_bought_with_points_of_accuracy():
  """RAF-DB student B's validation candidates: tau 0.25 adds one point of
  mean class accuracy for 2.5 points of accuracy; tau 0 is kept."""
  candidates = [{"tau": t, "accuracy": a, "mean_class_accuracy": m}
                for t, a, m in ((-0.5, 0.7780, 0.6625), (-0.25, 0.7706, 0.6658),
                                (0.0, 0.7616, 0.6685), (0.25, 0.7363, 0.6788),
                                (0.5, 0.3845, 0.5554))]
  assert adjust.pick(candidates) == 0.0
  candidates[3]["accuracy"] = 0.7530  # Costs 0.86 points: worth it.
  assert adjust.pick(candidates) == 0.25


def test_an_over_balanced_model_is_pulled_back_to_accuracy():
  """FER2013 student B of the balanced recipe, whose class weights make it
  over-predict disgust and fear: its validation candidates. Negative taus
  win 6 points of accuracy; -0.15 is the most accurate within 8 points of
  mean class accuracy (-0.2 is 8.4 points off)."""
  candidates = [{"tau": t, "accuracy": a, "mean_class_accuracy": m}
                for t, a, m in ((-0.3, 0.6280, 0.5323), (-0.25, 0.6269, 0.5384),
                                (-0.2, 0.6247, 0.5406), (-0.15, 0.6174, 0.5401),
                                (-0.1, 0.6041, 0.5467), (-0.05, 0.5843, 0.5640),
                                (0.0, 0.5548, 0.5463), (0.05, 0.5442, 0.5436))]
  assert adjust.pick(candidates) == -0.15
  # Without a balanced candidate the most balanced one is kept, as before.
  for c in candidates:
    c["mean_class_accuracy"] -= 0.2
  assert adjust.pick(candidates) == -0.05


def test_a_degenerate_tau_with_a_small_gap_is_not_chosen():
  """A class the model never gets right: the largest tau brings accuracy
  down to mean class accuracy, which is no reason to ship it."""
  rng = np.random.default_rng(1)
  names = [str(i) for i in range(3)]
  labels = rng.choice(3, 3000, p=[0.6, 0.3, 0.1])
  prior = common.class_prior(labels, 3)
  logits = rng.normal(0, 1, (3000, 3))
  logits[np.arange(3000), labels] += 3.0
  logits[labels == 2] = rng.normal(0, 1, ((labels == 2).sum(), 3))
  logits[labels == 2, 2] -= 20.0  # Hard, not rare: never predicted.
  choice = adjust.choose(logits, labels, prior, names)
  by_tau = {c["tau"]: c for c in choice.candidates}
  degenerate = by_tau[max(adjust.TAUS)]
  assert degenerate["accuracy"] - degenerate["mean_class_accuracy"] < 0.08
  assert choice.tau < 1 and by_tau[choice.tau]["accuracy"] > 0.8
