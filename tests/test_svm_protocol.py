"""Tests for innjax.svm_protocol: the paper's L2-SVM protocol on feature arrays.

The protocol is checked on synthetic features whose answer is known (separable
clusters: near-zero error; labels independent of the features: chance), and the exact
reduction of a wide draw against a direct liblinear fit.
"""

import numpy as np
import pytest

from innjax import svm_protocol


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


_SMALL = dict(
  num_labelled=90, val_size=100, num_draws=4, Cs=(0.01, 1.0), seed=0, select_draws=1
)


def test_separable_clusters_give_near_zero_error():
  tr, ytr = _clusters(600, seed=1)
  te, yte = _clusters(600, seed=2)
  result = svm_protocol.svm_protocol(tr, ytr, te, yte, **_SMALL)
  assert result["test_error_mean"] < 0.05
  assert len(result["test_errors"]) == 4
  assert result["test_error_mean"] == pytest.approx(np.mean(result["test_errors"]))
  # The C reported is the one with the lowest validation error.
  val = {v["C"]: v["error"] for v in result["val_errors"]}
  assert set(val) == {0.01, 1.0} and result["val_error"] == min(val.values())
  assert val[result["C"]] == result["val_error"]
  assert result["feature_dim"] == 20 and result["num_train"] == 600
  # Same seed, same answer; the draws are seeded, not global-state random.
  again = svm_protocol.svm_protocol(tr, ytr, te, yte, **_SMALL)
  assert again["test_errors"] == result["test_errors"]


def test_labels_independent_of_features_give_chance_error():
  tr, ytr = _clusters(600, seed=1, random_labels=True)
  te, yte = _clusters(1500, seed=2, random_labels=True)
  result = svm_protocol.svm_protocol(tr, ytr, te, yte, **_SMALL)
  assert abs(result["test_error_mean"] - 2 / 3) < 0.08


def test_binary_labels_and_a_single_c():
  tr, ytr = _clusters(200, num_classes=2, seed=1)
  te, yte = _clusters(200, num_classes=2, seed=2)
  # A single C needs no validation split.
  result = svm_protocol.svm_protocol(
    tr, ytr, te, yte, num_labelled=50, val_size=0, num_draws=2, Cs=(0.1,), seed=3
  )
  assert result["test_error_mean"] < 0.05 and result["val_error"] is None
  assert result["C"] == 0.1 and result["select_draws"] == 0


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(train_labels=None), "labelled dataset"),
    (
      dict(num_labelled=95, val_size=10),
      r"100 examples, but val_size \(10\) \+ num_labelled \(95\)",
    ),
    (dict(train_labels=np.zeros(99)), r"must have shape \(100,\)"),
    (dict(test_feats=np.zeros((10, 3))), "5 dimensions but test_feats have 3"),
    (dict(Cs=()), "Cs must be"),
    (dict(Cs=(1.0, -1.0)), "Cs must be"),
    (dict(val_size=0), "val_size=0 leaves no validation"),
    (dict(num_draws=0), "num_draws"),
    (dict(train_labels=np.ones(100)), "single class"),
  ],
)
def test_refuses_bad_inputs(kwargs, message):
  rng = np.random.default_rng(0)
  args = dict(
    train_feats=rng.normal(size=(100, 5)),
    train_labels=np.arange(100) % 2,
    test_feats=rng.normal(size=(10, 5)),
    test_labels=np.arange(10) % 2,
    num_labelled=20,
    val_size=20,
    num_draws=1,
    Cs=(0.1, 1.0),
  )
  args.update(kwargs)
  with pytest.raises(ValueError, match=message):
    svm_protocol.svm_protocol(**args)


@pytest.mark.parametrize("num_classes", [2, 4])
def test_reduced_svm_matches_direct_linearsvc(num_classes):
  from sklearn.svm import LinearSVC  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  x = rng.normal(size=(60, 300)) + rng.normal(size=(60, 1))
  y = rng.integers(0, num_classes, 60)
  draw = svm_protocol._prepare_draw(x)
  assert draw.design.shape == (60, 60)  # 300 features reduced to 60 examples
  (coef, intercept, classes), converged = svm_protocol._fit_svm(
    draw, y, C=0.05, max_iter=100000, tol=1e-10, seed=0
  )
  direct = LinearSVC(
    C=0.05, loss="squared_hinge", dual=True, tol=1e-10, max_iter=100000
  ).fit((x - draw.mean) / draw.scale, y)
  assert converged
  np.testing.assert_allclose(coef, direct.coef_, atol=1e-7)
  np.testing.assert_allclose(intercept, direct.intercept_, atol=1e-7)
  np.testing.assert_array_equal(classes, direct.classes_)


def test_paired_gain_known_answer():
  baseline = {"test_errors": [0.3, 0.4, 0.5]}
  features = {"test_errors": [0.2, 0.4, 0.45]}
  gain = svm_protocol.paired_gain(baseline, features)
  assert gain["gain_mean"] == pytest.approx(0.05)
  assert gain["gain_stderr"] == pytest.approx(0.05 / np.sqrt(3))
  assert gain["wins"] == 2 and gain["draws"] == 3
  with pytest.raises(ValueError, match="Unpaired"):
    svm_protocol.paired_gain(baseline, {"test_errors": [0.1, 0.2]})


def test_grid_edge():
  assert svm_protocol.grid_edge((1e-3, 1e-5, 1e-4), 1e-5) == "smallest"
  assert svm_protocol.grid_edge((1e-5, 1e-4, 1e-3), 1e-3) == "largest"
  assert svm_protocol.grid_edge((1e-5, 1e-4, 1e-3), 1e-4) is None
  assert svm_protocol.grid_edge((1e-4,), 1e-4) is None  # a single C is no choice
