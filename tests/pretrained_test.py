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


def test_adjustment_is_chosen_on_validation_mean_class_accuracy():
  """Logits that favour a frequent class: the chosen tau balances them, and
  has the highest mean class accuracy of the candidates that cost at most
  MAX_ACCURACY_COST of accuracy."""
  rng = np.random.default_rng(0)
  names = [str(i) for i in range(3)]
  labels = rng.choice(3, 3000, p=[0.8, 0.15, 0.05])
  prior = common.class_prior(labels, 3)
  logits = rng.normal(0, 1, (3000, 3)) + np.log(prior)
  logits[np.arange(3000), labels] += 2.0
  choice = adjust.choose(logits, labels, prior, names)
  by_tau = {c["tau"]: c for c in choice.candidates}
  assert set(by_tau) == set(adjust.TAUS)
  gap = lambda c: c["accuracy"] - c["mean_class_accuracy"]
  chosen = by_tau[choice.tau]
  floor = by_tau[0.0]["accuracy"] - adjust.MAX_ACCURACY_COST
  eligible = [c for c in choice.candidates if c["accuracy"] >= floor]
  assert choice.tau > 0 and gap(chosen) < gap(by_tau[0.0]) - 0.02
  assert chosen in eligible and chosen["mean_class_accuracy"] == max(
      c["mean_class_accuracy"] for c in eligible)
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
