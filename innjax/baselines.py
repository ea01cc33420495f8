"""Training-free baselines for whole-image models, and a check that samples are not copies.

A learned generator should be compared with what a few lines of statistics already
give. For a set of aligned images (faces, digits) that is a Gaussian: the training
mean plus the covariance of the top-k principal components, sampled. Its samples are
smooth averages, so it matches the low frequencies well and the details not at all.

`nearest_neighbours` answers the other question a reader asks of good samples: are
they new images, or training images given back? Each sample's distance to its nearest
training image is compared with the typical distance between two training images.

Everything runs on the host with NumPy; randomness comes from an explicit seed or
`numpy.random.Generator`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from innjax import errors


class PCAGaussian(NamedTuple):
  """A Gaussian fitted to images: mean + top-k principal directions.

  Attributes:
    mean: (H, W, C) mean image.
    components: (k, H*W*C) orthonormal principal directions.
    stddevs: (k,) standard deviations along them.
  """
  mean: np.ndarray
  components: np.ndarray
  stddevs: np.ndarray


def _flat(images: Any, name: str) -> np.ndarray:
  x = np.asarray(images, np.float64)
  if x.ndim != 4 or x.shape[0] < 2:
    raise ValueError(f"{name} must be NHWC images, at least 2 of them; got shape "
                     f"{x.shape}.")
  if not np.all(np.isfinite(x)):
    raise errors.DataError(f"{name} contains NaN or infinite values.")
  return x.reshape(x.shape[0], -1)


def fit_pca_gaussian(images: Any, k: int = 64) -> PCAGaussian:
  """Fits the mean and the top-`k` principal components of `images` (N, H, W, C).

  Args:
    images: the training images, e.g. in [-1, 1].
    k: principal components kept (at most N - 1).

  Returns:
    A `PCAGaussian`.
  """
  x = _flat(images, "images")
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k must be a positive integer, got {k!r}.")
  k = min(int(k), x.shape[0] - 1)
  mean = x.mean(axis=0)
  # SVD of the centred data: rows of vt are the principal directions, s**2 / (n - 1)
  # the variances along them.
  _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
  stddevs = s[:k] / np.sqrt(x.shape[0] - 1)
  shape = np.asarray(images).shape[1:]
  return PCAGaussian(mean=mean.reshape(shape), components=vt[:k], stddevs=stddevs)


def sample_pca_gaussian(model: PCAGaussian, num: int, rng: Any = 0,
                        clip: tuple | None = (-1.0, 1.0)) -> np.ndarray:
  """`num` images mean + sum_i z_i * stddev_i * component_i, z ~ N(0, 1).

  Args:
    model: from `fit_pca_gaussian`.
    num: how many images.
    rng: seed or `numpy.random.Generator`.
    clip: the data range to clip to, or None.

  Returns:
    float32 images (num, H, W, C).
  """
  gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
  z = gen.standard_normal((int(num), model.stddevs.shape[0]))
  x = model.mean.reshape(1, -1) + (z * model.stddevs) @ model.components
  if clip is not None:
    x = np.clip(x, clip[0], clip[1])
  return x.reshape(int(num), *model.mean.shape).astype(np.float32)


class NearestNeighbours(NamedTuple):
  """Each sample's nearest training image.

  Attributes:
    distances: (num_samples,) L2 distance to the nearest training image.
    indices: (num_samples,) its index in the training set.
    typical: median L2 distance from a training image to its nearest other
      training image: a sample much closer than this to a training image is
      likely a copy of it.
  """
  distances: np.ndarray
  indices: np.ndarray
  typical: float


def _pairwise_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
  return np.maximum(sq, 0.0)


def nearest_neighbours(samples: Any, train: Any, chunk: int = 512) -> NearestNeighbours:
  """Finds each sample's nearest training image in pixel space.

  Args:
    samples: (N, H, W, C) images.
    train: (M, H, W, C) training images of the same shape, M >= 2.
    chunk: training images compared at once (bounds the memory).

  Returns:
    A `NearestNeighbours`.
  """
  s = _flat(samples, "samples") if np.asarray(samples).shape[0] > 1 else \
      np.asarray(samples, np.float64).reshape(1, -1)
  t = _flat(train, "train")
  if s.shape[1] != t.shape[1]:
    raise errors.DataError(
        f"samples and train images differ in shape: {np.asarray(samples).shape[1:]} "
        f"and {np.asarray(train).shape[1:]}.")
  best = np.full(s.shape[0], np.inf)
  index = np.zeros(s.shape[0], np.int64)
  own = np.full(t.shape[0], np.inf)
  for start in range(0, t.shape[0], chunk):
    block = t[start:start + chunk]
    d = _pairwise_sq(s, block)
    arg = d.argmin(axis=1)
    closer = d[np.arange(s.shape[0]), arg] < best
    best = np.where(closer, d[np.arange(s.shape[0]), arg], best)
    index = np.where(closer, start + arg, index)
    # Training images against each other, excluding each image itself.
    dt = _pairwise_sq(t, block)
    rows = np.arange(start, start + block.shape[0])
    dt[rows, np.arange(block.shape[0])] = np.inf
    own = np.minimum(own, dt.min(axis=1))
  return NearestNeighbours(distances=np.sqrt(best), indices=index,
                           typical=float(np.median(np.sqrt(own))))
