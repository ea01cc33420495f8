"""Tests for innjax.baselines: the PCA Gaussian and nearest neighbours, known answers."""

import numpy as np
import pytest

from innjax import baselines


def test_pca_gaussian_recovers_a_known_low_rank_gaussian():
  rng = np.random.default_rng(0)
  directions = np.linalg.qr(rng.standard_normal((48, 2)))[0].T  # 2 orthonormal rows
  stds = np.array([0.3, 0.1])
  mean = rng.uniform(-0.2, 0.2, 48)
  x = mean + (rng.standard_normal((5000, 2)) * stds) @ directions
  model = baselines.fit_pca_gaussian(x.reshape(-1, 4, 4, 3), k=2)
  np.testing.assert_allclose(model.mean.ravel(), mean, atol=0.01)
  np.testing.assert_allclose(model.stddevs, stds, rtol=0.05)
  # The fitted directions span the true ones (up to sign).
  np.testing.assert_allclose(
    np.abs(model.components @ directions.T), np.eye(2), atol=0.02
  )
  samples = baselines.sample_pca_gaussian(model, 4000, rng=1, clip=None)
  assert samples.shape == (4000, 4, 4, 3)
  np.testing.assert_allclose(
    samples.reshape(4000, -1).std(0), x.std(0), rtol=0.1, atol=0.005
  )


def test_pca_gaussian_samples_stay_in_range():
  x = np.random.default_rng(0).uniform(-1, 1, (50, 4, 4, 1))
  model = baselines.fit_pca_gaussian(x, 10)
  unclipped = baselines.sample_pca_gaussian(model, 100, clip=None)
  assert np.abs(unclipped).max() > 1  # so the clip below has something to do
  samples = baselines.sample_pca_gaussian(model, 100)
  assert samples.min() >= -1 and samples.max() <= 1


def test_nearest_neighbours_finds_copies_and_measures_typical_distance():
  train = np.zeros((4, 2, 2, 1))
  train[1] += 1.0  # distance between any two training images: 0, 2, 2, ... (L2 over 4 px)
  train[2] -= 1.0
  train[3] += 3.0
  samples = np.stack([train[2] + 0.1, train[3]])
  nn = baselines.nearest_neighbours(samples, train, chunk=2)
  np.testing.assert_array_equal(nn.indices, [2, 3])
  np.testing.assert_allclose(nn.distances, [0.2, 0.0], atol=1e-6)
  # Nearest other training image: 0 -> 1 or 2 (2.0), 1 -> 0 (2.0), 2 -> 0 (2.0),
  # 3 -> 1 (4.0): the median is 2.0.
  assert nn.typical == pytest.approx(2.0)


def test_bad_inputs_get_messages():
  with pytest.raises(ValueError, match="differ in shape"):
    baselines.nearest_neighbours(np.zeros((2, 2, 2, 1)), np.zeros((3, 3, 3, 1)))
  with pytest.raises(ValueError, match="NHWC"):
    baselines.fit_pca_gaussian(np.zeros((5, 4)))
