"""Training-free baselines, and a check that samples are not copies.

For textures, `random_phase_noise` (Galerne, Gousseau and Morel, 2011) keeps the
exemplar's power spectrum exactly and randomises its phase: any learned texture model
should beat it.

For whole images, a learned generator should be compared with what a few lines of
statistics already give. For a set of aligned images (faces, digits) that is a
Gaussian: the training mean plus the covariance of the top-k principal components,
sampled. Its samples are
smooth averages, so it matches the low frequencies well and the details not at all.

`nearest_neighbours` answers the other question a reader asks of good samples: are
they new images, or training images given back? Each sample's distance to its nearest
training image is compared with the typical distance between two training images.

Everything runs on the host with NumPy; randomness comes from an explicit seed or
`numpy.random.Generator`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from innjax import errors
from innjax import metrics


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
    raise ValueError(
      f"{name} must be NHWC images, at least 2 of them; got shape {x.shape}."
    )
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


def sample_pca_gaussian(
  model: PCAGaussian, num: int, rng: Any = 0, clip: tuple | None = (-1.0, 1.0)
) -> np.ndarray:
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
  s = (
    _flat(samples, "samples")
    if np.asarray(samples).shape[0] > 1
    else np.asarray(samples, np.float64).reshape(1, -1)
  )
  t = _flat(train, "train")
  if s.shape[1] != t.shape[1]:
    raise errors.DataError(
      f"samples and train images differ in shape: {np.asarray(samples).shape[1:]} "
      f"and {np.asarray(train).shape[1:]}."
    )
  best = np.full(s.shape[0], np.inf)
  index = np.zeros(s.shape[0], np.int64)
  own = np.full(t.shape[0], np.inf)
  for start in range(0, t.shape[0], chunk):
    block = t[start : start + chunk]
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
  return NearestNeighbours(
    distances=np.sqrt(best), indices=index, typical=float(np.median(np.sqrt(own)))
  )


def _periodic_component(u: np.ndarray) -> np.ndarray:
  """Moisan's periodic component of an (H, W, C) image.

  Subtracts the smooth image whose Laplacian equals the jumps across the
  wrap-around boundary.  Without this, the FFT sees those jumps as strong
  horizontal/vertical edges and random-phase noise shows a cross of
  artefacts (Galerne et al. 2011, Sec. 4).
  """
  h, w, _ = u.shape
  v = np.zeros_like(u)
  v[0] += u[-1] - u[0]
  v[-1] += u[0] - u[-1]
  v[:, 0] += u[:, -1] - u[:, 0]
  v[:, -1] += u[:, 0] - u[:, -1]
  q = np.arange(h)[:, None]
  r = np.arange(w)[None, :]
  denom = 2.0 * np.cos(2.0 * np.pi * q / h) + 2.0 * np.cos(2.0 * np.pi * r / w) - 4.0
  denom[0, 0] = 1.0  # the smooth part has zero mean; avoid 0/0
  s_hat = np.fft.fft2(v, axes=(0, 1)) / denom[:, :, None]
  s_hat[0, 0] = 0.0
  return u - np.real(np.fft.ifft2(s_hat, axes=(0, 1)))


def _taper(n: int, width: int) -> np.ndarray:
  """1 in the middle, raised-cosine ramps of ``width`` samples at both ends."""
  t = np.ones(n)
  if width > 0:
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)
    t[:width] = ramp
    t[-width:] = np.minimum(t[-width:], ramp[::-1])
  return t


def random_phase_noise(
  exemplar: Any,
  shape: Sequence[int],
  rng: Any = 0,
  num_samples: int | None = None,
  periodic: bool = True,
) -> np.ndarray:
  """Random-phase-noise texture (Galerne, Gousseau and Morel, 2011).

  Keeps the Fourier amplitude of the mean-subtracted exemplar and adds one
  uniformly random phase field (odd-symmetric, taken from the FFT of real
  white noise) to the phase of every channel.  Sharing the random phase
  keeps the phase differences between channels and hence the exemplar's
  colour correlations.  The per-channel mean is added back and values are
  clipped to [-1, 1].

  Sizes: the synthesis canvas is ``max(shape, exemplar size)`` per axis
  and the result is cropped to ``shape``.  When the canvas equals the
  exemplar size the amplitude spectrum is reproduced exactly (before
  clipping).  When it is larger, the exemplar is used as a "spot": it is
  multiplied by a raised-cosine taper (width ``min(16, side // 8)`` pixels,
  only along enlarged axes, to avoid a new discontinuity), zero-padded to
  the canvas size and its DC removed -- zero-padding in space is a
  band-limited (sinc) interpolation of the spectrum onto the finer
  frequency grid, i.e. a resize of the amplitude spectrum -- and rescaled so
  each channel keeps the exemplar's variance.

  Args:
    exemplar: single HWC image in [-1, 1].
    shape: output spatial size ``(height, width)``.
    rng: ``numpy.random.Generator``, integer seed, ``None`` or JAX key.
    num_samples: ``None`` returns one HWC image; an integer returns an NHWC
      batch of independent samples.
    periodic: use Moisan's periodic component of the exemplar (recommended;
      removes the cross artefact caused by the wrap-around boundary).

  Returns:
    float64 array of shape ``(height, width, C)`` or
    ``(num_samples, height, width, C)``, values in [-1, 1].

  Raises:
    ValueError: exemplar not a single non-empty HWC image, or ``shape`` /
      ``num_samples`` not positive integers.
  """
  if np.ndim(exemplar) != 3:
    raise ValueError(
      f"exemplar must be a single HWC image (rank 3), got shape {np.shape(exemplar)}"
    )
  u = metrics.as_images(exemplar, "exemplar")[0]
  if len(tuple(shape)) != 2:
    raise ValueError(f"shape must be (height, width), got {shape!r}")
  out_h, out_w = (metrics.positive_int(s, "shape entries") for s in shape)
  count = 1 if num_samples is None else metrics.positive_int(num_samples, "num_samples")
  gen = metrics.as_rng(rng)

  h, w, c = u.shape
  if periodic and h > 1 and w > 1:
    u = _periodic_component(u)
  mean = u.mean(axis=(0, 1))
  v = u - mean
  target_var = np.mean(v**2, axis=(0, 1))  # per channel

  ch, cw = max(out_h, h), max(out_w, w)
  if (ch, cw) != (h, w):
    ty = _taper(h, min(16, h // 8)) if ch > h else np.ones(h)
    tx = _taper(w, min(16, w // 8)) if cw > w else np.ones(w)
    spot = np.zeros((ch, cw, c))
    spot[:h, :w] = v * np.outer(ty, tx)[:, :, None]
  else:
    spot = v
  spot_hat = np.fft.fft2(spot, axes=(0, 1))
  spot_hat[0, 0] = 0.0
  # Parseval: the output's mean square is sum|F|^2 / (HW)^2 for any phase.
  energy = np.sum(np.abs(spot_hat) ** 2, axis=(0, 1)) / (ch * cw) ** 2
  scale = np.sqrt(
    np.where(energy > 0, target_var / np.where(energy > 0, energy, 1.0), 0.0)
  )
  spot_hat *= scale

  samples = []
  for _ in range(count):
    # The phase of real white noise is uniform and odd-symmetric, so the
    # product below stays Hermitian and the inverse FFT is real.
    phase = np.angle(np.fft.fft2(gen.standard_normal((ch, cw))))
    out = np.real(np.fft.ifft2(spot_hat * np.exp(1j * phase)[:, :, None], axes=(0, 1)))
    samples.append(np.clip(out[:out_h, :out_w] + mean, -1.0, 1.0))
  return samples[0] if num_samples is None else np.stack(samples)
