"""Tests for innjax.evaluate: the L2-SVM protocol, feature extraction, evaluate().

The protocol is checked on synthetic features whose answer is known (separable
clusters: near-zero error; random labels: chance). The end-to-end test trains the tiny
config on a labelled stripes dataset written to tmp_path and runs `evaluate` on it. The
supervised metric net (the Frechet/KID feature space) must learn the stripes' labels.
"""

import json
import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import tiny  # pylint: disable=g-import-not-at-top
from innjax import data as data_lib
from innjax import evaluate
from innjax import models
from innjax import train


def _clusters(n, num_classes=3, dim=20, seed=0, random_labels=False):
  """Two far-apart Gaussian clusters per class: a linear SVM separates them."""
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(123).normal(0, 10, (num_classes, 2, dim))
  labels = rng.integers(0, num_classes, n)
  which = rng.integers(0, 2, n)
  feats = centres[labels, which] + rng.normal(0, 1, (n, dim))
  if random_labels:
    labels = rng.integers(0, num_classes, n)  # independent of the features
  return feats.astype(np.float32), labels


_SMALL = dict(num_labelled=90, val_size=100, num_draws=4, Cs=(0.01, 1.0), seed=0,
              select_draws=1)


def test_svm_protocol_separates_clusters():
  tr, ytr = _clusters(600, seed=1)
  te, yte = _clusters(600, seed=2)
  result = evaluate.svm_protocol(tr, ytr, te, yte, **_SMALL)
  assert result["test_error_mean"] < 0.05
  assert len(result["test_errors"]) == 4 and result["C"] in (0.01, 1.0)
  assert result["feature_dim"] == 20 and result["num_train"] == 600
  # Same seed, same answer; the draws are seeded, not global-state random.
  again = evaluate.svm_protocol(tr, ytr, te, yte, **_SMALL)
  assert again["test_errors"] == result["test_errors"]


def test_svm_protocol_random_labels_is_chance():
  tr, ytr = _clusters(600, seed=1, random_labels=True)
  te, yte = _clusters(1500, seed=2, random_labels=True)
  result = evaluate.svm_protocol(tr, ytr, te, yte, **_SMALL)
  assert abs(result["test_error_mean"] - 2 / 3) < 0.08


def test_svm_protocol_binary_and_single_c():
  tr, ytr = _clusters(200, num_classes=2, seed=1)
  te, yte = _clusters(200, num_classes=2, seed=2)
  # A single C needs no validation split.
  result = evaluate.svm_protocol(tr, ytr, te, yte, num_labelled=50, val_size=0,
                                 num_draws=2, Cs=(0.1,), seed=3)
  assert result["test_error_mean"] < 0.05 and result["val_error"] is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(train_labels=None), "labelled dataset"),
    (dict(num_labelled=95, val_size=10),
     r"100 examples, but val_size \(10\) \+ num_labelled \(95\)"),
    (dict(train_labels=np.zeros(99)), r"must have shape \(100,\)"),
    (dict(test_feats=np.zeros((10, 3))), "5 dimensions but test_feats have 3"),
    (dict(Cs=()), "Cs must be"),
    (dict(Cs=(1.0, -1.0)), "Cs must be"),
    (dict(val_size=0), "val_size=0 leaves no validation"),
    (dict(num_draws=0), "num_draws"),
    (dict(train_labels=np.ones(100)), "single class"),
])
def test_svm_protocol_errors(kwargs, message):
  rng = np.random.default_rng(0)
  args = dict(train_feats=rng.normal(size=(100, 5)), train_labels=np.arange(100) % 2,
              test_feats=rng.normal(size=(10, 5)), test_labels=np.arange(10) % 2,
              num_labelled=20, val_size=20, num_draws=1, Cs=(0.1, 1.0))
  args.update(kwargs)
  with pytest.raises(ValueError, match=message):
    evaluate.svm_protocol(**args)


def test_extract_features_matches_unbatched():
  model = models.Classifier(features=(4, 8), channels=1, conv_impl="xla")
  variables = models.init_variables(model, jax.random.key(0), (8, 8, 1))
  images = np.random.default_rng(0).integers(0, 256, (7, 8, 8, 1), dtype=np.uint8)
  blocks = jax.jit(lambda v, x: model.apply(v, x, return_features=True)[1])(
      variables, data_lib.to_float(images))
  flat = np.concatenate([np.asarray(b).reshape(7, -1) for b in blocks], axis=1)
  # 7 images in batches of 3: the last batch is padded and must be cut off again.
  feats = evaluate.extract_features(
      evaluate.make_evaluation_feature_fn(model, (-2, -1)), variables, images,
      batch_size=3)
  assert feats.shape == (7, 4 * 4 * 4 + 2 * 2 * 8 + 8) and feats.dtype == np.float32
  # The first D columns are what models.make_feature_fn gives, then the pooled block.
  np.testing.assert_allclose(feats[:, :flat.shape[1]], flat, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(feats[:, flat.shape[1]:], np.mean(blocks[-1], axis=(1, 2)),
                             rtol=1e-5, atol=1e-6)
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


def _stripes(n, seed):
  """16x16 gray: horizontal (label 0) or vertical (label 1) stripes of period 4, noisy."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n)
  profile = np.where(np.arange(16) % 4 < 2, 200.0, 55.0)
  horizontal = np.broadcast_to(profile[:, None], (16, 16))
  images = np.where(labels[:, None, None] == 0, horizontal, horizontal.T)
  images = images + rng.normal(0, 25, images.shape)
  return np.clip(images, 0, 255).astype(np.uint8)[..., None], labels


def test_metric_net_learns_labels_and_frechet_sees_a_shift():
  x_train, y_train = _stripes(200, 0)
  x_test, y_test = _stripes(200, 1)
  net, params, info = evaluate.train_metric_net(
      x_train, y_train, features=(8, 16), steps=40, batch_size=32,
      learning_rate=3e-3, key=jax.random.key(0), conv_impl="xla", chunk_steps=20)
  assert info["steps"] == 40 and info["num_classes"] == 2
  fn = evaluate.make_metric_feature_fn(net)
  out = evaluate.extract_features(fn, params, x_test, batch_size=64)
  assert out.shape == (200, 16 + 2)
  # Horizontal vs vertical stripes: a correct net separates them on held-out images.
  accuracy = np.mean(np.argmax(out[:, 16:], axis=1) == y_test)
  assert accuracy > 0.95, accuracy
  feats = out[:, :16]
  assert evaluate.metrics.frechet_distance(feats, feats) < 1e-6
  floor = evaluate.metrics.frechet_distance(feats[:100], feats[100:])
  # The same images at a third of the contrast: a shift the feature space must see.
  faded = (128 + (x_test.astype(np.float32) - 128) / 3).astype(np.uint8)
  shifted = evaluate.metrics.frechet_distance(
      feats[:100], evaluate.extract_features(fn, params, faded, batch_size=64)[100:, :16])
  assert shifted > 10 * floor, (shifted, floor)
  with pytest.raises(ValueError, match="two or more classes"):
    evaluate.train_metric_net(x_train, np.zeros(200), steps=1, key=jax.random.key(0))


@pytest.fixture(scope="module")
def stripes_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("stripes")
  for split, n, seed in (("train", 240, 0), ("test", 120, 1)):
    x, y = _stripes(n, seed)
    np.savez(tmp / f"{split}.npz", x=x, y=y)
  config = tiny.get_config()
  config.checkpoint.async_save = False
  config.model.conv_impl = "xla"  # compiles several times faster on CPU than im2col
  config.num_stages = 2
  config.pool.capacity = 32
  config.data.source = "npz"
  config.data.path = str(tmp / "train.npz")
  config.evaluate = evaluate.default_evaluate_config()
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


def test_evaluate_end_to_end(stripes_run):
  config, workdir = stripes_run
  results = evaluate.evaluate(config, str(workdir))
  saved = json.loads((workdir / "evaluation.json").read_text())
  assert set(saved["svm"]) == {"inng", "random", "pixels"}
  assert saved["model"]["layers"] == [-2, -1] and saved["model"]["slot"] == 1
  assert saved["svm"]["inng"]["feature_dim"] == 8 * 8 * 8 + 4 * 4 * 16
  assert saved["svm"]["pixels"]["feature_dim"] == 256
  # Fixed-phase stripes: their class means differ, so raw pixels are linearly separable.
  assert results["svm"]["pixels"]["test_error_mean"] < 0.05
  for name in ("inng", "random"):
    assert 0.0 <= results["svm"][name]["test_error_mean"] <= 1.0
  q = saved["quality"]
  assert q["num_images"] == 16
  for space in ("metric_net_features", "trained_features", "random_features"):
    assert np.isfinite(q[space]["frechet"]["generated"])
    assert q[space]["frechet"]["real_floor"] >= 0.0
    assert np.isfinite(q[space]["kid"]["generated"])
  # The supervised metric net learned the stripes' labels: its feature space is meaningful.
  assert q["metric_net"]["test_accuracy"] > 0.9
  assert q["metric_net_features"]["dim"] == 16 and q["metric_net"]["steps"] == 40
  assert np.isfinite(q["swd"]["generated"]) and np.isfinite(q["swd"]["real_floor"])
  md = (workdir / "evaluation.md").read_text()
  for row in ("| INNg classifier", "| Random classifier", "| Raw pixels", "SWD",
              "| Frechet, supervised net features (dim 16)", "| KID, supervised net",
              "test accuracy is"):
    assert row in md
  assert (workdir / "evaluation_samples.png").stat().st_size > 0


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
  np.savez(unlabelled, x=_stripes(10, 0)[0])
  bad = config.copy_and_resolve_references()
  bad.evaluate.test_path = str(unlabelled)
  with pytest.raises(ValueError, match="no labels"):
    evaluate.evaluate(bad, str(workdir))


@pytest.mark.parametrize("num_classes", [2, 4])
def test_reduced_svm_matches_direct_linearsvc(num_classes):
  from sklearn.svm import LinearSVC  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = rng.normal(size=(60, 300)) + rng.normal(size=(60, 1))
  y = rng.integers(0, num_classes, 60)
  draw = evaluate._prepare_draw(x)
  assert draw.design.shape == (60, 60)  # 300 features reduced to 60 examples
  (coef, intercept, classes), converged = evaluate._fit_svm(
      draw, y, C=0.05, max_iter=100000, tol=1e-10, seed=0)
  direct = LinearSVC(C=0.05, loss="squared_hinge", dual=True, tol=1e-10,
                     max_iter=100000).fit((x - draw.mean) / draw.scale, y)
  assert converged
  np.testing.assert_allclose(coef, direct.coef_, atol=1e-7)
  np.testing.assert_allclose(intercept, direct.intercept_, atol=1e-7)
  np.testing.assert_array_equal(classes, direct.classes_)


def test_evaluate_config_defaults_and_unknown_keys():
  config = tiny.get_config()
  if "evaluate" in config:
    del config["evaluate"]
  # A config without the block evaluates with the defaults.
  assert evaluate._evaluate_config(config).to_dict() == (
      evaluate.default_evaluate_config().to_dict())
  config.evaluate = evaluate.default_evaluate_config()
  config.evaluate.num_draw = 5  # misspelt
  with pytest.raises(ValueError, match="Unknown config.evaluate keys"):
    evaluate._evaluate_config(config)
  config = tiny.get_config()
  config.evaluate = evaluate.default_evaluate_config()
  config.evaluate.num_draws = 0
  with pytest.raises(ValueError, match="num_draws must be >= 1"):
    evaluate._evaluate_config(config)
  config.evaluate.num_draws = 3
  config.evaluate.metric_net_learning_rate = 0.0
  with pytest.raises(ValueError, match="metric_net_learning_rate"):
    evaluate._evaluate_config(config)
  config.evaluate.metric_net_steps = 0  # the net is skipped: its settings do not matter
  evaluate._evaluate_config(config)


def test_default_config_block_matches_defaults():
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  if "evaluate" not in config:
    pytest.skip("configs/default.py has no `evaluate` block yet")
  assert config.evaluate.to_dict() == evaluate.default_evaluate_config().to_dict()


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
  assert np.isfinite(saved["quality"]["swd"]["generated"])
