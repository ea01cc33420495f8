"""Tests for innjax.evaluate: feature extraction, config handling, evaluate().

The end-to-end tests train the tiny config once per module on a labelled stripes
dataset written to a temporary folder, run `evaluate` on it once, and read that one
report. The SVM protocol and the metric net have their own test files.
"""

import json

import jax
import numpy as np
from PIL import Image
import pytest

from configs import default
from configs import tiny
from innjax import data as data_lib
from innjax import evaluate
from innjax import images as images_lib
from innjax import models
from innjax import train
import labelled_stripes


def test_extract_features_matches_unbatched():
  model = models.Classifier(features=(4, 8), channels=1, conv_impl="xla")
  variables = models.init_variables(model, jax.random.key(0), (8, 8, 1))
  images = np.random.default_rng(0).integers(0, 256, (7, 8, 8, 1), dtype=np.uint8)
  blocks = jax.jit(lambda v, x: model.apply(v, x, return_features=True)[1])(
    variables, data_lib.to_float(images)
  )
  flat = np.concatenate([np.asarray(b).reshape(7, -1) for b in blocks], axis=1)
  # 7 images in batches of 3: the last batch is padded and must be cut off again.
  feats = evaluate.extract_features(
    models.make_feature_fn(model, (-2, -1), append_pooled=True),
    variables,
    images,
    batch_size=3,
  )
  assert feats.shape == (7, 4 * 4 * 4 + 2 * 2 * 8 + 8) and feats.dtype == np.float32
  # The chosen blocks flattened, then the last block averaged over space.
  np.testing.assert_allclose(feats[:, : flat.shape[1]], flat, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    feats[:, flat.shape[1] :], np.mean(blocks[-1], axis=(1, 2)), rtol=1e-5, atol=1e-6
  )
  fn = models.make_feature_fn(model, (-2, -1))
  with pytest.raises(ValueError, match="uint8"):
    evaluate.extract_features(fn, variables, images.astype(np.float32), 3)
  with pytest.raises(ValueError, match="batch_size"):
    evaluate.extract_features(fn, variables, images, 0)


def test_resolve_layers_and_select_slot_errors():
  assert evaluate.resolve_layers((-2, -1), 2) == (-2, -1)
  with pytest.raises(ValueError, match="has 2 conv layers"):
    evaluate.resolve_layers((-3, -2, -1), 2)
  with pytest.raises(ValueError, match="twice"):
    evaluate.resolve_layers((0, -2), 2)
  assert evaluate.select_slot(np.array([True, True, False]), -1) == 1
  with pytest.raises(ValueError, match="out of range"):
    evaluate.select_slot(np.array([True, False]), 1)
  with pytest.raises(ValueError, match="no trained stage"):
    evaluate.select_slot(np.array([False, False]), -1)


def test_evaluate_config_defaults_and_unknown_keys():
  config = tiny.get_config()
  del config["evaluate"]
  # A config without the block evaluates with configs/default.py's.
  assert evaluate._evaluate_config(config).to_dict() == (
    default.evaluate_config().to_dict()
  )
  config = tiny.get_config()
  config.evaluate.num_draw = 5  # misspelt
  with pytest.raises(ValueError, match="Unknown config.evaluate keys"):
    evaluate._evaluate_config(config)
  config = tiny.get_config()
  config.evaluate.num_draws = 0
  with pytest.raises(ValueError, match="num_draws must be >= 1"):
    evaluate._evaluate_config(config)
  config.evaluate.num_draws = 3
  config.evaluate.metric_net_learning_rate = 0.0
  with pytest.raises(ValueError, match="metric_net_learning_rate"):
    evaluate._evaluate_config(config)
  config.evaluate.metric_net_steps = 0  # the net is skipped: its settings do not matter
  evaluate._evaluate_config(config)


@pytest.fixture(scope="module")
def stripes_run(tmp_path_factory):
  """The tiny config trained on labelled stripes: (config, workdir)."""
  tmp = tmp_path_factory.mktemp("stripes")
  for split, n, seed in (("train", 240, 0), ("test", 120, 1)):
    x, y = labelled_stripes.stripes(n, seed)
    np.savez(tmp / f"{split}.npz", x=x, y=y)
  config = tiny.get_config()
  config.checkpoint.async_save = False
  config.model.conv_impl = "xla"  # compiles several times faster on CPU than im2col
  config.num_stages = 2
  config.pool.capacity = 32
  config.data.source = "npz"
  config.data.path = str(tmp / "train.npz")
  config.evaluate.layers = (-2, -1)  # the tiny classifier has two conv layers
  config.evaluate.test_path = str(tmp / "test.npz")
  config.evaluate.num_labelled = 40
  config.evaluate.val_size = 60
  config.evaluate.num_draws = 3
  config.evaluate.select_draws = 1
  config.evaluate.Cs = (0.01, 1.0)
  config.evaluate.batch_size = 64
  config.evaluate.num_samples = 16
  config.evaluate.metric_net_steps = 40
  config.evaluate.metric_net_features = (8, 16)
  config.evaluate.metric_net_batch_size = 32
  config.evaluate.metric_net_learning_rate = 3e-3
  workdir = tmp / "run"
  train.train_and_evaluate(config, str(workdir))
  return config, workdir


@pytest.fixture(scope="module")
def stripes_report(stripes_run):
  """`evaluate` run once on the stripes run: (returned results, evaluation.json)."""
  config, workdir = stripes_run
  results = evaluate.evaluate(config, str(workdir))
  saved = json.loads((workdir / "evaluation.json").read_text())
  return results, saved


def test_evaluate_svm_results(stripes_run, stripes_report):
  config, _ = stripes_run
  results, saved = stripes_report
  assert list(saved["svm"]) == ["inng", "random", "pixels"]
  assert saved["model"]["layers"] == [-2, -1] and saved["model"]["slot"] == 1
  assert saved["svm"]["inng"]["feature_dim"] == 8 * 8 * 8 + 4 * 4 * 16
  assert saved["svm"]["random"]["feature_dim"] == 8 * 8 * 8 + 4 * 4 * 16
  assert saved["svm"]["pixels"]["feature_dim"] == 256
  for name, result in results["svm"].items():
    # Fixed-phase stripes: their class means differ, so raw pixels are linearly
    # separable, and so are the conv features of a trained or random classifier
    # (strided convolutions keep the orientation).
    assert result["test_error_mean"] < 0.05, name
    assert len(result["test_errors"]) == config.evaluate.num_draws
    assert result["C"] in config.evaluate.Cs
    assert result["num_train"] == 240 and result["num_test"] == 120
  assert saved["svm"] == json.loads(json.dumps(results["svm"]))


def test_evaluate_sample_quality(stripes_report):
  _, saved = stripes_report
  q = saved["quality"]
  assert q["num_images"] == 16
  for space in ("metric_net_features", "trained_features", "random_features"):
    assert np.isfinite(q[space]["kid"]["generated"])
    assert np.isfinite(q[space]["kid"]["real_floor"])
  # Samples of a two-stage tiny model are further from the test images than one half
  # of the test set is from the other.
  for space in ("metric_net_features", "trained_features"):
    assert q[space]["frechet"]["generated"] > q[space]["frechet"]["real_floor"], space
  # The supervised metric net learned the stripes' labels: its space is meaningful.
  assert q["metric_net"]["test_accuracy"] > 0.9
  assert q["metric_net_features"]["dim"] == 16 and q["metric_net"]["steps"] == 40
  assert q["trained_features"]["dim"] == 16  # the classifier's last block, pooled
  assert np.isfinite(q["swd"]["generated"]) and np.isfinite(q["swd"]["real_floor"])


def test_evaluate_writes_the_report_and_a_sample_grid(stripes_run, stripes_report):
  _, workdir = stripes_run
  results, _ = stripes_report
  md = (workdir / "evaluation.md").read_text()
  assert md == evaluate.to_markdown(results)
  for row in (
    "| INNg classifier",
    "| Random classifier",
    "| Raw pixels",
    "SWD",
    "| Frechet, supervised net features (dim 16)",
    "| KID, supervised net",
    "test accuracy is",
    "| INNg vs random classifier |",
  ):
    assert row in md
  # A grid of two values: whichever C is chosen ends it, and the report says so.
  assert results["svm"]["pixels"]["C_at_grid_edge"] in ("smallest", "largest")
  assert "a better C may lie beyond it" in md
  # The grid holds the 16 generated 16x16 gray images.
  with Image.open(workdir / "evaluation_samples.png") as grid:
    expected = images_lib.make_grid(np.zeros((16, 16, 16, 1), np.float32))
    assert grid.size == (expected.shape[1], expected.shape[0]) and grid.mode == "L"


def test_evaluate_errors(stripes_run, tmp_path):
  config, workdir = stripes_run
  with pytest.raises(FileNotFoundError, match="No checkpoint"):
    evaluate.evaluate(config, str(tmp_path / "empty"))
  bad = config.copy_and_resolve_references()
  bad.evaluate.layers = (-3, -2, -1)
  with pytest.raises(ValueError, match="has 2 conv layers"):
    evaluate.evaluate(bad, str(workdir))
  if "patch" in config:
    bad = config.copy_and_resolve_references()
    bad.patch.size = 8
    with pytest.raises(ValueError, match="whole-image classifier"):
      evaluate.evaluate(bad, str(workdir))
  bad = config.copy_and_resolve_references()
  bad.evaluate.stage = 5
  with pytest.raises(ValueError, match="out of range"):
    evaluate.evaluate(bad, str(workdir))
  bad = config.copy_and_resolve_references()
  bad.evaluate.val_size = 1000
  with pytest.raises(ValueError, match="val_size"):
    evaluate.evaluate(bad, str(workdir))
  unlabelled = tmp_path / "unlabelled.npz"
  np.savez(unlabelled, x=labelled_stripes.stripes(10, 0)[0])
  bad = config.copy_and_resolve_references()
  bad.evaluate.test_path = str(unlabelled)
  with pytest.raises(ValueError, match="no labels"):
    evaluate.evaluate(bad, str(workdir))


def test_evaluate_a_config_without_the_evaluate_block(stripes_run):
  """A config saved before the block existed evaluates with the defaults."""
  config, workdir = stripes_run
  old = config.copy_and_resolve_references()
  del old["evaluate"]
  # The default layers (-3, -2, -1) reach the layer check, which the two-layer tiny
  # classifier fails: the defaults were applied and the config checks passed.
  with pytest.raises(ValueError, match=r"layers=\(-3, -2, -1\) names layers \[-3\]"):
    evaluate.evaluate(old, str(workdir))


def test_evaluate_on_a_winn_workdir(stripes_run, tmp_path):
  """The feature protocol reads a WINN critic (LayerNorm, swish, mean pooling) too."""
  from configs import family  # pylint: disable=g-import-not-at-top

  base, _ = stripes_run
  config = family.winn_critic(base.copy_and_resolve_references())
  config.train.learning_rate = 1e-3
  config.num_stages = 2
  config.evaluate.metric_net_steps = 0
  config.evaluate.num_samples = 8
  workdir = tmp_path / "winn"
  train.train_and_evaluate(config, str(workdir))
  results = evaluate.evaluate(config, str(workdir))
  saved = json.loads((workdir / "evaluation.json").read_text())
  assert saved["svm"]["inng"]["feature_dim"] == 8 * 8 * 8 + 4 * 4 * 16
  assert results["svm"]["pixels"]["test_error_mean"] < 0.05
  assert results["svm"]["inng"]["test_error_mean"] < 0.05
  assert "metric_net_features" not in saved["quality"]  # metric_net_steps = 0
  assert np.isfinite(saved["quality"]["swd"]["generated"])


def test_evaluate_every_stages(stripes_run, tmp_path):
  """evaluate.every_stages: one row per k-th classifier, paired with the baselines."""
  base, workdir = stripes_run
  config = base.copy_and_resolve_references()
  config.evaluate.num_samples = 0
  config.evaluate.every_stages = 1
  results = evaluate.evaluate(config, str(workdir), output_dir=str(tmp_path / "all"))
  curve = results["stage_curve"]
  assert [row["classifier"] for row in curve] == [1, 2]
  assert [row["slot"] for row in curve] == [0, 1]
  # The last row is the evaluated classifier (stage -1): the same SVMs.
  assert curve[1]["test_error_mean"] == results["svm"]["inng"]["test_error_mean"]
  assert curve[1]["gain_vs_random"] == results["svm_paired"]["inng_vs_random"]
  # The first row equals a separate evaluation of classifier 1.
  config.evaluate.every_stages = 0
  config.evaluate.stage = 0
  first = evaluate.evaluate(config, str(workdir), output_dir=str(tmp_path / "first"))
  assert curve[0]["test_error_mean"] == first["svm"]["inng"]["test_error_mean"]
  assert curve[0]["C"] == first["svm"]["inng"]["C"]
  report = (tmp_path / "all" / "evaluation.md").read_text()
  assert "## Features of the classifiers in training order" in report
  assert "INNg vs random classifier" in report
  assert first["stage_curve"] is None
  assert "training order" not in (tmp_path / "first" / "evaluation.md").read_text()
  # Every 5th of 2 classifiers: the last only.
  config.evaluate.stage = -1
  config.evaluate.every_stages = 5
  last = evaluate.evaluate(config, str(workdir), output_dir=str(tmp_path / "last"))
  assert [row["classifier"] for row in last["stage_curve"]] == [2]
  config.evaluate.every_stages = -1
  with pytest.raises(ValueError, match="every_stages must be >= 0"):
    evaluate.evaluate(config, str(workdir), output_dir=str(tmp_path / "bad"))
