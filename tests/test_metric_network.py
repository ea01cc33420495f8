"""Tests for innjax.metric_network: the supervised net behind Frechet/KID.

The net must learn the labels of horizontal vs vertical stripes, and a Frechet
distance in its feature space must see a contrast change that the real-vs-real floor
does not show.
"""

import jax
import numpy as np
import pytest

from innjax import evaluate
from innjax import metric_network
from innjax import metrics
import labelled_stripes


def test_metric_net_learns_labels_and_frechet_sees_a_shift():
  x_train, y_train = labelled_stripes.stripes(200, 0)
  x_test, y_test = labelled_stripes.stripes(200, 1)
  net, params, info = metric_network.train_metric_net(
    x_train,
    y_train,
    features=(8, 16),
    steps=40,
    batch_size=32,
    learning_rate=3e-3,
    key=jax.random.key(0),
    conv_impl="xla",
    chunk_steps=20,
  )
  assert info["steps"] == 40 and info["num_classes"] == 2
  fn = metric_network.make_metric_feature_fn(net)
  out = evaluate.extract_features(fn, params, x_test, batch_size=64)
  assert out.shape == (200, 16 + 2)
  # Horizontal vs vertical stripes: a correct net separates them on held-out images.
  accuracy = np.mean(np.argmax(out[:, 16:], axis=1) == y_test)
  assert accuracy > 0.95, accuracy
  feats = out[:, :16]
  assert metrics.frechet_distance(feats, feats) < 1e-6
  floor = metrics.frechet_distance(feats[:100], feats[100:])
  # The same images at a third of the contrast: a shift the feature space must see.
  faded = (128 + (x_test.astype(np.float32) - 128) / 3).astype(np.uint8)
  shifted = metrics.frechet_distance(
    feats[:100], evaluate.extract_features(fn, params, faded, batch_size=64)[100:, :16]
  )
  assert shifted > 10 * floor, (shifted, floor)


def test_metric_net_refuses_a_single_class():
  x_train, _ = labelled_stripes.stripes(20, 0)
  with pytest.raises(ValueError, match="two or more classes"):
    metric_network.train_metric_net(x_train, np.zeros(20), steps=1, key=jax.random.key(0))
