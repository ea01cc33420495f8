"""Sample-quality statistics for generated images that need no pretrained network.

INNg (Lazarow, Jin and Tu, ICCV 2017) is evaluated mostly on textures and
small image sets, where Inception-based scores are either unavailable
offline or meaningless (one exemplar texture, a handful of synthesised
samples).  This module therefore provides statistics that compare *image
statistics directly*:

* :func:`swd` -- the multi-scale sliced Wasserstein distance of Progressive
  GAN (Karras et al., 2018): 7x7 neighbourhoods sampled from every level of a
  Laplacian pyramid, compared with random 1-D projections.  Level 0 is the
  finest (full-resolution band-pass) level, the last level is the low-pass
  residual.  Building blocks: :func:`laplacian_pyramid`,
  :func:`patch_descriptors`, :func:`sliced_wasserstein`.
* :func:`radial_power_spectrum` / :func:`spectrum_distance` -- radially
  averaged log power spectra (second-order statistics), comparable across
  image sizes because frequency is measured in cycles/pixel.
* :func:`histogram_distance` -- first-order (marginal colour) statistics, the
  per-channel 1-D Wasserstein distance.
* :func:`gram_distance` -- Gram matrices of random ReLU filter banks at several
  sizes (Ustyuzhaninov et al., 2017): the texture statistics of Gatys et al.
  without a pretrained network. Unlike the spectrum, they see edges, blobs and
  their arrangement up to the largest filter.
* :func:`frechet_distance` / :func:`kernel_distance` -- the FID and KID
  formulas applied to feature matrices you supply (e.g. the patch
  descriptors above, or features of any network you have at hand).

Conventions: images are floating-point arrays in ``[-1, 1]`` laid out NHWC;
functions that say so also take a single HWC image.  Values outside
``[-1, 1]`` are accepted (generated samples overshoot) except where a
function documents clipping.  Everything runs on the host with NumPy: the
statistics are cheap, are evaluated rarely, and host code keeps them free
of device-memory and compilation costs.  No function touches NumPy's
global random state: randomness comes from an explicit ``rng`` argument,
which may be a :class:`numpy.random.Generator`, an integer seed, ``None``
(fresh OS entropy) or a JAX PRNG key.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np

from innjax import errors

__all__ = [
  "KIDResult",
  "laplacian_pyramid",
  "patch_descriptors",
  "sliced_wasserstein",
  "swd",
  "radial_power_spectrum",
  "spectrum_distance",
  "histogram_distance",
  "gram_distance",
  "frechet_distance",
  "frechet_distance_from_stats",
  "kernel_distance",
]

# 5-tap binomial filter used by cv2.pyrDown and by Progressive GAN's
# ``sliced_wasserstein.py`` (there as its 5x5 outer product).  It is
# separable, so we apply it as two 1-D passes.
_BINOMIAL_5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0

# Progressive GAN stops the pyramid once the coarsest level reaches 16 px and
# samples 128 neighbourhoods per image per level; we keep those defaults.
_MIN_LEVEL_RESOLUTION = 16
_PATCHES_PER_IMAGE = 128
# ... but a texture is often a single image, and 128 samples give a noisy
# estimate, so a set never gets fewer descriptors than this per level.
_MIN_PATCHES_PER_LEVEL = 4096


# ---------------------------------------------------------------------------
# Input validation helpers
# ---------------------------------------------------------------------------


def as_rng(rng: Any) -> np.random.Generator:
  """Turns a Generator / int seed / None / JAX key into a Generator."""
  if isinstance(rng, np.random.Generator):
    return rng
  if rng is None or isinstance(rng, (numbers.Integral, np.random.SeedSequence)):
    return np.random.default_rng(rng)
  # Anything else is presumably a JAX PRNG key.  New-style typed keys cannot
  # be converted with np.asarray, so their raw uint32 words are extracted
  # with jax.random.key_data (jax imported lazily: plain NumPy callers do
  # not pay its import time).
  try:
    import jax

    if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
      rng = jax.random.key_data(rng)
  except (ImportError, AttributeError):
    pass
  words = np.asarray(rng)
  if words.size == 0 or not np.issubdtype(words.dtype, np.integer):
    raise ValueError(
      "rng must be a numpy.random.Generator, an integer seed, None or a "
      f"JAX PRNG key; got {type(rng).__name__} with dtype {words.dtype}"
    )
  return np.random.default_rng(words.astype(np.uint64).ravel())


def as_images(x: Any, name: str, allow_single: bool = True) -> np.ndarray:
  """Validates an NHWC batch (or a single HWC image) and returns NHWC float64."""
  arr = np.asarray(x)
  if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
    raise ValueError(f"{name} must be a real-valued array, got dtype {arr.dtype}")
  if arr.ndim == 3 and allow_single:
    arr = arr[None]
  if arr.ndim != 4:
    expected = "4 (NHWC) or 3 (a single HWC image)" if allow_single else "4 (NHWC)"
    raise ValueError(
      f"{name} must have rank {expected}, got rank {arr.ndim} with shape {arr.shape}"
    )
  if arr.size == 0:
    raise ValueError(f"{name} is empty (shape {arr.shape})")
  arr = arr.astype(np.float64, copy=False)
  if not np.all(np.isfinite(arr)):
    # NaNs usually mean a diverged sampler; a silent NaN distance would
    # hide that, so fail loudly instead.
    raise errors.DataError(f"{name} contains NaN or infinite values")
  return arr


def _check_same_channels(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
  if a.shape[-1] != b.shape[-1]:
    raise ValueError(
      f"{name_a} and {name_b} must have the same number of channels, "
      f"got {a.shape[-1]} and {b.shape[-1]}"
    )


def _as_features(
  x: Any, name: str, min_rows: int = 1, dtype: Any = np.float64
) -> np.ndarray:
  arr = np.asarray(x)
  if arr.ndim != 2:
    raise ValueError(
      f"{name} must be a 2-D (num_samples, num_features) array, got shape {arr.shape}"
    )
  if arr.shape[0] < min_rows or arr.shape[1] == 0:
    raise ValueError(
      f"{name} needs at least {min_rows} row(s) and 1 feature column, got shape {arr.shape}"
    )
  arr = arr.astype(dtype, copy=False)
  if not np.all(np.isfinite(arr)):
    raise errors.DataError(f"{name} contains NaN or infinite values")
  return arr


def positive_int(value: Any, name: str) -> int:
  """`value` as an int, refusing anything but a positive integer (bools included)."""
  if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{name} must be a positive integer, got {value!r}")
  return int(value)


# ---------------------------------------------------------------------------
# Laplacian pyramid
# ---------------------------------------------------------------------------


def _blur_axis(x: np.ndarray, axis: int, taps: np.ndarray) -> np.ndarray:
  """Correlates ``x`` with a symmetric 5-tap filter along ``axis``.

  Boundaries use mirror padding without edge duplication (``d c b | a b c d``,
  NumPy's ``reflect``), which is scipy.ndimage's ``mirror`` mode used by
  Progressive GAN, so constant images stay exactly constant.
  """
  pad = [(0, 0)] * x.ndim
  pad[axis] = (2, 2)
  xp = np.pad(x, pad, mode="reflect")
  n = x.shape[axis]
  out = np.zeros_like(x)
  for k, w in enumerate(taps):
    out += w * np.take(xp, np.arange(k, k + n), axis=axis)
  return out


def _pyr_down(x: np.ndarray) -> np.ndarray:
  """Blurs an NHWC batch with the binomial filter and keeps every other pixel."""
  y = _blur_axis(_blur_axis(x, 1, _BINOMIAL_5), 2, _BINOMIAL_5)
  return y[:, ::2, ::2, :]


def _pyr_up(x: np.ndarray, height: int, width: int) -> np.ndarray:
  """Zero-inserts to twice the size, blurs with 4x the filter, crops to (height, width).

  The factor 4 (2 per axis) compensates for the inserted zeros, so this is
  cv2.pyrUp.  Odd target sizes are handled by cropping the extra row/column.
  """
  n, h, w, c = x.shape
  up = np.zeros((n, 2 * h, 2 * w, c), dtype=x.dtype)
  up[:, ::2, ::2, :] = x
  up = _blur_axis(_blur_axis(up, 1, 2.0 * _BINOMIAL_5), 2, 2.0 * _BINOMIAL_5)
  return up[:, :height, :width, :]


def laplacian_pyramid(image: Any, levels: int) -> list[np.ndarray]:
  """Laplacian pyramid as in Progressive GAN's sliced-Wasserstein metric.

  Each Gaussian level is the previous one blurred with the separable 5-tap
  binomial filter ``[1, 4, 6, 4, 1] / 16`` and subsampled by 2 (sizes round
  up, so odd sizes are fine).  Band ``l`` is Gaussian level ``l`` minus the
  upsampled Gaussian level ``l + 1``; the last entry is the low-pass residual
  itself.  Summing the upsampled bands reconstructs the input exactly.

  Args:
    image: NHWC batch or a single HWC image (float, nominally in [-1, 1]).
    levels: number of pyramid levels (>= 1). ``levels == 1`` returns the
      image unchanged.

  Returns:
    List of ``levels`` float64 arrays, finest first, with the same rank as
    ``image``; level ``l`` has spatial size ``ceil(H / 2**l) x ceil(W / 2**l)``.

  Raises:
    ValueError: wrong rank, empty or non-finite input, or ``levels < 1``.
  """
  single = np.ndim(image) == 3
  x = as_images(image, "image")
  levels = positive_int(levels, "levels")
  pyramid = [x.copy()]
  for _ in range(1, levels):
    coarse = _pyr_down(pyramid[-1])
    prev = pyramid[-1]
    pyramid[-1] = prev - _pyr_up(coarse, prev.shape[1], prev.shape[2])
    pyramid.append(coarse)
  return [p[0] for p in pyramid] if single else pyramid


def _level_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
  sizes = [(height, width)]
  for _ in range(1, levels):
    h, w = sizes[-1]
    sizes.append(((h + 1) // 2, (w + 1) // 2))
  return sizes


def _default_levels(height: int, width: int, patch: int) -> int:
  """Progressive-GAN level count: halve while the coarsest side stays >= 16 px.

  Images smaller than 16 px (but at least one patch) get a single level.
  """
  levels = 1
  h, w = height, width
  while True:
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    if min(h2, w2) < max(_MIN_LEVEL_RESOLUTION, patch):
      return levels
    levels += 1
    h, w = h2, w2


# ---------------------------------------------------------------------------
# Patch descriptors and sliced Wasserstein distance
# ---------------------------------------------------------------------------


def _normalize_descriptors(
  desc: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None
) -> np.ndarray:
  """Per-channel standardisation of (n, patch, patch, C) descriptors.

  Statistics are taken over the descriptor set, patch pixels included
  (Progressive GAN's ``finalize_descriptors``): it removes the overall
  contrast of each band so that every pyramid level contributes on a
  comparable scale.
  """
  if mean is None:
    mean = desc.mean(axis=(0, 1, 2), keepdims=True)
  if std is None:
    std = desc.std(axis=(0, 1, 2), keepdims=True)
  # A flat channel (e.g. a constant image) has std 0: leave it centred
  # rather than dividing by zero.
  std = np.where(std > 1e-12, std, 1.0)
  return (desc - mean) / std


def _sample_patches(
  level: np.ndarray, n: int, patch: int, rng: np.random.Generator
) -> np.ndarray:
  """Draws ``n`` patch x patch neighbourhoods (n, p, p, C) at uniform positions.

  Images are visited round-robin so every image of the set contributes
  (almost) the same number of neighbourhoods.
  """
  num, h, w, _ = level.shape
  img = np.arange(n) % num
  y0 = rng.integers(0, h - patch + 1, size=n)
  x0 = rng.integers(0, w - patch + 1, size=n)
  offs = np.arange(patch)
  ys = (y0[:, None] + offs[None, :])[:, :, None]
  xs = (x0[:, None] + offs[None, :])[:, None, :]
  return level[img[:, None, None], ys, xs, :]


def _raw_descriptors(
  images: np.ndarray, levels: int, patch: int, n: int, rng: np.random.Generator, name: str
) -> list[np.ndarray]:
  _, height, width, _ = images.shape
  for lvl, (h, w) in enumerate(_level_sizes(height, width, levels)):
    if h < patch or w < patch:
      raise errors.DataError(
        f"{name} ({height}x{width}): pyramid level {lvl} is {h}x{w}, smaller than the "
        f"{patch}x{patch} patch; use fewer levels, a smaller patch or larger images"
      )
  # float32 halves memory and gather time for large sets (1e5+
  # descriptors) and is ample precision for SWD.
  pyramid = [level.astype(np.float32) for level in laplacian_pyramid(images, levels)]
  return [_sample_patches(level, n, patch, rng) for level in pyramid]


def patch_descriptors(
  images: Any,
  levels: int | None = None,
  patch: int = 7,
  patches_per_level: int | None = None,
  rng: Any = 0,
  normalize: bool = True,
) -> list[np.ndarray]:
  """Multi-scale neighbourhood descriptors (Progressive GAN's SWD features).

  Builds a :func:`laplacian_pyramid` of ``images`` and, on every level,
  samples ``patches_per_level`` neighbourhoods of ``patch x patch`` pixels
  at uniformly random positions (images taken round-robin), optionally
  standardising each channel over the whole descriptor set of that level.

  Args:
    images: NHWC batch or a single HWC image.
    levels: pyramid levels. ``None``: halve while the coarsest level is at
      least ``max(16, patch)`` pixels (Progressive GAN's rule).
    patch: neighbourhood side length (Progressive GAN uses 7).
    patches_per_level: descriptors per level for the whole set. ``None``:
      ``max(128 * num_images, 4096)`` -- Progressive GAN's 128 per image, but
      enough for a stable estimate when the set is a single texture.
    rng: ``numpy.random.Generator``, integer seed, ``None`` or JAX key for
      the patch positions. A Generator is advanced, so successive calls
      with the same Generator draw different positions.
    normalize: subtract the per-channel mean and divide by the per-channel
      standard deviation of each level's descriptor set.

  Returns:
    List (one entry per level, finest first) of float32 arrays of shape
    ``(patches_per_level, patch * patch * C)``.

  Raises:
    ValueError: wrong rank, empty or non-finite images, bad ``levels`` /
      ``patch`` / ``patches_per_level``, or a pyramid level smaller than
      the patch.
  """
  x = as_images(images, "images")
  patch = positive_int(patch, "patch")
  _, height, width, _ = x.shape
  if height < patch or width < patch:
    raise errors.DataError(
      f"images ({height}x{width}) are smaller than the {patch}x{patch} patch"
    )
  levels = (
    _default_levels(height, width, patch)
    if levels is None
    else positive_int(levels, "levels")
  )
  if patches_per_level is None:
    patches_per_level = max(_PATCHES_PER_IMAGE * x.shape[0], _MIN_PATCHES_PER_LEVEL)
  n = positive_int(patches_per_level, "patches_per_level")
  gen = as_rng(rng)
  raw = _raw_descriptors(x, levels, patch, n, gen, "images")
  if normalize:
    raw = [_normalize_descriptors(d) for d in raw]
  return [d.reshape(d.shape[0], -1) for d in raw]


def _sorted_quantiles(sorted_rows: np.ndarray, m: int) -> np.ndarray:
  """Empirical quantile function of each row, evaluated at (i + 0.5) / m.

  With ``m`` equal to the number of columns this returns the sorted values
  themselves, so equal-size sets reduce to Progressive GAN's plain
  sort-and-subtract; unequal sizes are compared quantile to quantile by
  linear interpolation, which is the 1-D Wasserstein-1 coupling.
  """
  n = sorted_rows.shape[1]
  if n == m:
    return sorted_rows
  pos = np.clip((np.arange(m) + 0.5) * (n / m) - 0.5, 0.0, n - 1)
  lo = np.floor(pos).astype(np.int64)
  hi = np.minimum(lo + 1, n - 1)
  frac = (pos - lo).astype(sorted_rows.dtype)
  return sorted_rows[:, lo] * (1 - frac) + sorted_rows[:, hi] * frac


def sliced_wasserstein(a: Any, b: Any, num_projections: int = 512, rng: Any = 0) -> float:
  """Sliced Wasserstein-1 distance between two point sets.

  Both sets are projected onto ``num_projections`` random unit directions;
  for each direction the 1-D Wasserstein-1 distance is the mean absolute
  difference of the sorted projections (of their quantile functions on a
  common grid when the set sizes differ).  The result is averaged over
  directions.  Projections are computed in float32, as in Progressive GAN,
  which reports this value multiplied by 1e3.

  Args:
    a: ``(n_a, d)`` array.
    b: ``(n_b, d)`` array; ``n_b`` may differ from ``n_a``.
    num_projections: number of random directions (Progressive GAN: 4 x 128).
    rng: ``numpy.random.Generator``, integer seed, ``None`` or JAX key.

  Returns:
    The distance as a Python float (0 for identical sets).

  Raises:
    ValueError: inputs not 2-D, empty, non-finite, or with different ``d``.
  """
  a = _as_features(a, "a", dtype=np.float32)
  b = _as_features(b, "b", dtype=np.float32)
  if a.shape[1] != b.shape[1]:
    raise ValueError(
      f"a and b must have the same feature dimension, got {a.shape[1]} and {b.shape[1]}"
    )
  num_projections = positive_int(num_projections, "num_projections")
  gen = as_rng(rng)
  dirs = gen.standard_normal((num_projections, a.shape[1]))
  dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
  # float32 (as in Progressive GAN) halves the cost of the projections and
  # sorts, which dominate the run time; its precision is ample for a
  # distance averaged over thousands of samples.
  dirs = dirs.astype(np.float32)
  a32 = np.ascontiguousarray(a.T)
  b32 = np.ascontiguousarray(b.T)
  m = max(a.shape[0], b.shape[0])
  total = 0.0
  # Chunks of 128 directions bound the memory of the (chunk, n) projections;
  # rows are projections so the sort runs along contiguous memory.
  for start in range(0, num_projections, 128):
    d = dirs[start : start + 128]
    pa = _sorted_quantiles(np.sort(d @ a32, axis=1), m)
    pb = _sorted_quantiles(np.sort(d @ b32, axis=1), m)
    total += float(np.abs(pa - pb).astype(np.float64).mean(axis=1).sum())
  return float(total / num_projections)


def swd(
  images_a: Any,
  images_b: Any,
  levels: int | None = None,
  patch: int = 7,
  patches_per_level: int | None = None,
  num_projections: int = 512,
  rng: Any = 0,
  normalize: str = "separate",
) -> dict:
  """Multi-scale sliced Wasserstein distance (Progressive GAN) between two image sets.

  For each Laplacian-pyramid level, draws ``patches_per_level`` random
  ``patch x patch`` neighbourhoods from each set and computes
  :func:`sliced_wasserstein` between the two descriptor sets.  Either set
  can be a single image, e.g. a synthesised texture against its exemplar;
  the sets may differ in size and image count (but not channel count).

  Args:
    images_a: NHWC batch or single HWC image (e.g. the reference / exemplar).
    images_b: NHWC batch or single HWC image (e.g. the samples).
    levels: pyramid levels; ``None`` picks the Progressive-GAN rule
      (coarsest level >= 16 px) for the smaller of the two sets.
    patch: neighbourhood size.
    patches_per_level: descriptors per level and per set; ``None``:
      ``max(128 * num_images, 4096)`` computed on the larger set.
    num_projections: random directions per level.
    rng: ``numpy.random.Generator``, integer seed, ``None`` or JAX key.
      One generator drives all sampling, so the two sets use different
      patch positions even when they are the same images.
    normalize: ``"separate"`` standardises each set with its own per-channel
      statistics (Progressive GAN; insensitive to global contrast/colour
      offsets, which :func:`histogram_distance` measures), ``"reference"``
      uses ``images_a``'s statistics for both (also penalises contrast
      changes), ``"none"`` uses raw pyramid values.

  Note that the estimate has a sampling floor of roughly
  ``1 / sqrt(patches_per_level)`` (two independent samples of the *same*
  distribution are not at distance 0), so compare values only between runs
  with identical settings.

  Returns:
    ``{0: d_0, 1: d_1, ..., 'mean': mean over levels}`` with level 0 the
    finest band and the last level the low-pass residual; all Python floats.

  Raises:
    ValueError: wrong rank, empty or non-finite images, different channel
      counts, an invalid ``normalize`` mode, or a level smaller than the patch.
  """
  a = as_images(images_a, "images_a")
  b = as_images(images_b, "images_b")
  _check_same_channels(a, b, "images_a", "images_b")
  if normalize not in ("separate", "reference", "none"):
    raise ValueError(
      f"normalize must be 'separate', 'reference' or 'none', got {normalize!r}"
    )
  patch = positive_int(patch, "patch")
  for name, x in (("images_a", a), ("images_b", b)):
    if x.shape[1] < patch or x.shape[2] < patch:
      raise errors.DataError(
        f"{name} ({x.shape[1]}x{x.shape[2]}) is smaller than the {patch}x{patch} patch"
      )
  if levels is None:
    levels = min(
      _default_levels(a.shape[1], a.shape[2], patch),
      _default_levels(b.shape[1], b.shape[2], patch),
    )
  levels = positive_int(levels, "levels")
  if patches_per_level is None:
    patches_per_level = max(
      _PATCHES_PER_IMAGE * max(a.shape[0], b.shape[0]), _MIN_PATCHES_PER_LEVEL
    )
  n = positive_int(patches_per_level, "patches_per_level")
  gen = as_rng(rng)

  desc_a = _raw_descriptors(a, levels, patch, n, gen, "images_a")
  desc_b = _raw_descriptors(b, levels, patch, n, gen, "images_b")
  result: dict = {}
  for lvl, (da, db) in enumerate(zip(desc_a, desc_b)):
    if normalize == "separate":
      da, db = _normalize_descriptors(da), _normalize_descriptors(db)
    elif normalize == "reference":
      mean = da.mean(axis=(0, 1, 2), keepdims=True)
      std = da.std(axis=(0, 1, 2), keepdims=True)
      da, db = (
        _normalize_descriptors(da, mean, std),
        _normalize_descriptors(db, mean, std),
      )
    result[lvl] = sliced_wasserstein(
      da.reshape(n, -1), db.reshape(n, -1), num_projections, gen
    )
  result["mean"] = float(np.mean([result[lvl] for lvl in range(levels)]))
  return result


# ---------------------------------------------------------------------------
# Power spectra
# ---------------------------------------------------------------------------


def _hann2d(height: int, width: int) -> np.ndarray:
  # Periodic Hann (denominator N, not N - 1) so a 1-pixel image is not zeroed.
  wy = 0.5 - 0.5 * np.cos(2.0 * np.pi * (np.arange(height) + 0.5) / height)
  wx = 0.5 - 0.5 * np.cos(2.0 * np.pi * (np.arange(width) + 0.5) / width)
  return np.outer(wy, wx)


def radial_power_spectrum(
  image: Any,
  num_bins: int = 64,
  window: str | None = None,
  eps: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
  """Radially averaged log10 power spectrum of each channel.

  The per-channel mean is removed and the power ``|FFT|^2 / (H * W)`` is
  used: with this normalisation white noise of variance ``s^2`` has a flat
  spectrum at ``s^2`` whatever the image size.  Power is averaged over
  annuli of width ``1 / min(H, W)`` cycles/pixel (every annulus then holds
  at least one frequency), frequencies beyond 0.5 cycles/pixel (the corners)
  are dropped, and the log profile is linearly interpolated onto the common
  grid ``linspace(0.5 / num_bins, 0.5, num_bins)``, so spectra of images of
  different sizes are directly comparable.  For a batch the power spectra
  are averaged over images before taking the log.

  Args:
    image: single HWC image or NHWC batch.
    num_bins: points of the common frequency grid.
    window: ``None`` (periodic FFT; the boundary discontinuity adds a
      little power along the axes) or ``"hann"`` (apodise first; power is
      rescaled by the window's mean square).
    eps: added to the power before the log.  The default sits near the
      power of 8-bit quantisation noise for images in [-1, 1]
      (``(2/255)^2 / 12 ~ 5e-6``), so bands far below displayable precision
      (which carry huge but meaningless log differences) do not dominate
      :func:`spectrum_distance`.

  Returns:
    ``(freqs, log_power)``: ``freqs`` of shape ``(num_bins,)`` in
    cycles/pixel and ``log_power`` of shape ``(num_bins, C)``.

  Raises:
    ValueError: wrong rank, empty or non-finite input, images smaller than
      2x2, or an unknown window.
  """
  x = as_images(image, "image")
  num_bins = positive_int(num_bins, "num_bins")
  n, h, w, c = x.shape
  if h < 2 or w < 2:
    raise ValueError(f"image must be at least 2x2 to have a spectrum, got {h}x{w}")
  if window not in (None, "hann"):
    raise ValueError(f"window must be None or 'hann', got {window!r}")
  x = x - x.mean(axis=(1, 2), keepdims=True)
  if window == "hann":
    win = _hann2d(h, w)
    x = x * win[None, :, :, None] / np.sqrt(np.mean(win**2))
  power = (np.abs(np.fft.fft2(x, axes=(1, 2))) ** 2).mean(axis=0) / (h * w)  # (h, w, c)

  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.fftfreq(w)[None, :]
  radius = np.sqrt(fy**2 + fx**2)
  dr = 1.0 / min(h, w)
  kmax = min(h, w) // 2  # annulus index of 0.5 cycles/pixel
  k = np.rint(radius / dr).astype(np.int64).ravel()
  keep = (k >= 1) & (k <= kmax)  # drop DC (mean removed) and the corners
  counts = np.bincount(k[keep], minlength=kmax + 1)[1:]
  profile = np.stack(
    [
      np.bincount(k[keep], weights=power[..., ch].ravel()[keep], minlength=kmax + 1)[1:]
      / counts
      for ch in range(c)
    ],
    axis=1,
  )
  log_profile = np.log10(profile + eps)
  natural = np.arange(1, kmax + 1) * dr
  freqs = np.linspace(0.5 / num_bins, 0.5, num_bins)
  # np.interp holds the end values outside the natural range, i.e. below the
  # lowest frequency a small image can represent.
  log_power = np.stack(
    [np.interp(freqs, natural, log_profile[:, ch]) for ch in range(c)], axis=1
  )
  return freqs, log_power


def spectrum_distance(
  a: Any,
  b: Any,
  num_bins: int = 64,
  metric: str = "l1",
  window: str | None = None,
  eps: float = 1e-6,
) -> float:
  """Distance between radially averaged log power spectra.

  Both inputs go through :func:`radial_power_spectrum` on the same
  normalised frequency grid, so they may have different sizes and image
  counts.

  Args:
    a: single HWC image or NHWC batch.
    b: single HWC image or NHWC batch with the same channel count.
    num_bins: points of the common frequency grid.
    metric: ``"l1"``: mean absolute difference of the log10 spectra (in
      decades, averaged over frequencies and channels); ``"l2"``: root mean
      squared difference.
    window: passed to :func:`radial_power_spectrum`.
    eps: power floor, passed to :func:`radial_power_spectrum`.

  Returns:
    The distance as a Python float (0 for identical spectra).

  Raises:
    ValueError: wrong ranks, empty inputs, different channel counts, an
      unknown metric or images smaller than 2x2.
  """
  xa = as_images(a, "a")
  xb = as_images(b, "b")
  _check_same_channels(xa, xb, "a", "b")
  if metric not in ("l1", "l2"):
    raise ValueError(f"metric must be 'l1' or 'l2', got {metric!r}")
  _, sa = radial_power_spectrum(xa, num_bins=num_bins, window=window, eps=eps)
  _, sb = radial_power_spectrum(xb, num_bins=num_bins, window=window, eps=eps)
  diff = sa - sb
  if metric == "l1":
    return float(np.mean(np.abs(diff)))
  return float(np.sqrt(np.mean(diff**2)))


# ---------------------------------------------------------------------------
# Colour histograms
# ---------------------------------------------------------------------------


def _wasserstein_1d_exact(u: np.ndarray, v: np.ndarray) -> float:
  """W1 between two empirical 1-D distributions: integral of |F_u - F_v|."""
  u = np.sort(u)
  v = np.sort(v)
  allv = np.concatenate([u, v])
  allv.sort()
  deltas = np.diff(allv)
  cdf_u = np.searchsorted(u, allv[:-1], side="right") / u.size
  cdf_v = np.searchsorted(v, allv[:-1], side="right") / v.size
  return float(np.sum(np.abs(cdf_u - cdf_v) * deltas))


def histogram_distance(
  a: Any,
  b: Any,
  bins: int | None = 256,
  value_range: tuple[float, float] = (-1.0, 1.0),
) -> float:
  """Per-channel 1-D Wasserstein-1 distance between pixel-value distributions.

  Compares marginal colour statistics only (no spatial structure), averaged
  over channels.  For a pure shift ``b = a + delta`` (without clipping) the
  value is ``|delta|``, so it is in the units of the image values.

  Args:
    a: single HWC image or NHWC batch.
    b: single HWC image or NHWC batch with the same channel count; sizes
      and image counts may differ.
    bins: number of histogram bins over ``value_range`` (values outside are
      clipped into the end bins; the result is then exact up to one bin
      width). ``None``: exact W1 from the sorted values, no clipping.
    value_range: ``(low, high)`` of the histogram.

  Returns:
    The distance as a Python float (0 for identical value distributions).

  Raises:
    ValueError: wrong ranks, empty inputs, different channel counts, or an
      invalid ``bins`` / ``value_range``.
  """
  xa = as_images(a, "a")
  xb = as_images(b, "b")
  _check_same_channels(xa, xb, "a", "b")
  c = xa.shape[-1]
  va = xa.reshape(-1, c)
  vb = xb.reshape(-1, c)
  if bins is None:
    return float(
      np.mean([_wasserstein_1d_exact(va[:, ch], vb[:, ch]) for ch in range(c)])
    )
  bins = positive_int(bins, "bins")
  lo, hi = (float(v) for v in value_range)
  if not hi > lo:
    raise ValueError(f"value_range must satisfy low < high, got {value_range!r}")
  width = (hi - lo) / bins
  dists = []
  for ch in range(c):
    ha, _ = np.histogram(np.clip(va[:, ch], lo, hi), bins=bins, range=(lo, hi))
    hb, _ = np.histogram(np.clip(vb[:, ch], lo, hi), bins=bins, range=(lo, hi))
    # W1 in 1-D is the L1 distance between the cumulative distributions.
    cdf_a = np.cumsum(ha) / va.shape[0]
    cdf_b = np.cumsum(hb) / vb.shape[0]
    dists.append(np.sum(np.abs(cdf_a - cdf_b)) * width)
  return float(np.mean(dists))


# ---------------------------------------------------------------------------
# Gram matrices of random filter banks
# ---------------------------------------------------------------------------


def _random_relu_features(
  x: np.ndarray, filters: np.ndarray, size: int, stride: int
) -> np.ndarray:
  """ReLU responses (num positions, F) of `size` x `size` filters, every `stride` px."""
  windows = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(1, 2))
  windows = windows[:, ::stride, ::stride]  # (N, h, w, C, size, size)
  n, h, w = windows.shape[:3]
  patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * h * w, -1)
  return np.maximum(patches @ filters, 0.0)


def gram_distance(
  reference: Any,
  images: Any,
  sizes: tuple = (3, 7, 15),
  num_filters: int = 128,
  stride: int = 2,
  rng: Any = 0,
) -> dict:
  """Relative distance between Gram matrices of random ReLU filter banks.

  Texture statistics in the style of Gatys et al. (2015) with random instead of
  trained filters, which Ustyuzhaninov et al. (ICLR 2017) showed describe natural
  textures well: for each filter size, `num_filters` random filters (fixed by `rng`)
  are applied to both sets, rectified, and the Gram matrix of their responses
  (F x F, averaged over positions and images) is compared. Random-phase noise keeps
  an image's spectrum, which fixes the Gram matrix of linear filters, but not that of
  rectified ones: edges, blobs and how they line up change it.

  Both sets are first standardised with `reference`'s per-channel mean and std (as
  `swd(normalize="reference")`), so lost contrast or a colour cast count.

  Args:
    reference: NHWC (or HWC) images, e.g. crops of the exemplar.
    images: NHWC (or HWC) images with the same channels, at least as large as the
      largest filter.
    sizes: filter sides; the largest bounds the structure measured.
    num_filters: filters per size.
    stride: positions sampled every `stride` pixels (the Gram matrix is an average).
    rng: seed, generator or JAX key for the filters.

  Returns:
    {size: ||G_images - G_reference||_F / ||G_reference||_F for each size, "mean":
    their mean}; 0 for identical sets.

  Raises:
    ValueError: wrong ranks, different channels, or bad sizes; DataError (a
      ValueError) for images smaller than a filter, as `swd` for its patches.
  """
  xa = as_images(reference, "reference").astype(np.float64)
  xb = as_images(images, "images").astype(np.float64)
  _check_same_channels(xa, xb, "reference", "images")
  sizes = tuple(positive_int(k, "sizes") for k in sizes)
  num_filters = positive_int(num_filters, "num_filters")
  stride = positive_int(stride, "stride")
  if not sizes:
    raise ValueError("sizes must name at least one filter size.")
  smallest = min(min(xa.shape[1:3]), min(xb.shape[1:3]))
  if max(sizes) > smallest:
    raise errors.DataError(
      f"The largest filter ({max(sizes)} px) does not fit images of {smallest} px; "
      "use smaller sizes or larger images."
    )
  mean = xa.mean(axis=(0, 1, 2), keepdims=True)
  std = xa.std(axis=(0, 1, 2), keepdims=True)
  xa, xb = (_normalize_descriptors(x, mean, std) for x in (xa, xb))
  gen = as_rng(rng)
  channels = xa.shape[-1]
  out = {}
  for size in sizes:
    fan_in = size * size * channels
    filters = gen.standard_normal((fan_in, num_filters)) / np.sqrt(fan_in)
    grams = []
    for x in (xa, xb):
      # One image at a time keeps the filter windows' memory to one image's worth.
      total, count = np.zeros((num_filters, num_filters)), 0
      for image in x:
        f = _random_relu_features(image[None], filters, size, stride)
        total += f.T @ f
        count += f.shape[0]
      grams.append(total / count)
    ref_norm = np.linalg.norm(grams[0])
    out[size] = float(np.linalg.norm(grams[1] - grams[0]) / max(ref_norm, 1e-12))
  out["mean"] = float(np.mean([out[k] for k in sizes]))
  return out


# ---------------------------------------------------------------------------
# Frechet and kernel distances on feature matrices
# ---------------------------------------------------------------------------


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
  vals, vecs = np.linalg.eigh(m)
  return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance_from_stats(
  mu_a: Any, sigma_a: Any, mu_b: Any, sigma_b: Any
) -> float:
  """Frechet distance between the Gaussians N(mu_a, sigma_a) and N(mu_b, sigma_b).

  ``|mu_a - mu_b|^2 + tr(sigma_a + sigma_b - 2 (sigma_a sigma_b)^(1/2))``.
  The trace of the matrix square root is computed as the sum of the square
  roots of the eigenvalues of the symmetric PSD matrix
  ``sigma_a^(1/2) sigma_b sigma_a^(1/2)`` (same eigenvalues as
  ``sigma_a sigma_b``), so no complex values or ill-conditioned
  ``sqrtm`` iterations arise; round-off negatives are clipped to zero.

  Args:
    mu_a, mu_b: mean vectors of shape ``(d,)``.
    sigma_a, sigma_b: covariance matrices of shape ``(d, d)`` (symmetrised
      internally).

  Returns:
    The (non-negative) distance as a Python float.

  Raises:
    ValueError: inconsistent or wrong shapes, or non-finite values.
  """
  mu_a = np.asarray(mu_a, dtype=np.float64)
  mu_b = np.asarray(mu_b, dtype=np.float64)
  sigma_a = np.asarray(sigma_a, dtype=np.float64)
  sigma_b = np.asarray(sigma_b, dtype=np.float64)
  if mu_a.ndim != 1 or mu_a.size == 0 or mu_a.shape != mu_b.shape:
    raise ValueError(
      f"means must be non-empty 1-D arrays of equal length, got {mu_a.shape} and {mu_b.shape}"
    )
  d = mu_a.shape[0]
  if sigma_a.shape != (d, d) or sigma_b.shape != (d, d):
    raise ValueError(
      f"covariances must have shape ({d}, {d}), got {sigma_a.shape} and {sigma_b.shape}"
    )
  for arr in (mu_a, mu_b, sigma_a, sigma_b):
    if not np.all(np.isfinite(arr)):
      raise errors.DataError("statistics contain NaN or infinite values")
  sigma_a = 0.5 * (sigma_a + sigma_a.T)
  sigma_b = 0.5 * (sigma_b + sigma_b.T)
  root_a = _psd_sqrt(sigma_a)
  inner = root_a @ sigma_b @ root_a
  eig = np.linalg.eigvalsh(0.5 * (inner + inner.T))
  tr_covmean = np.sum(np.sqrt(np.clip(eig, 0.0, None)))
  diff = mu_a - mu_b
  value = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * tr_covmean
  return float(max(value, 0.0))


def frechet_distance(feats_a: Any, feats_b: Any) -> float:
  """Frechet (FID-formula) distance between Gaussians fitted to two feature sets.

  Fits mean and unbiased covariance to each set and applies
  :func:`frechet_distance_from_stats`.  With Inception features this is
  FID; here any features work (e.g. :func:`patch_descriptors`).  Note the
  estimate is biased upward for small sample counts.

  Args:
    feats_a: ``(n_a, d)`` array, ``n_a >= 2``.
    feats_b: ``(n_b, d)`` array, ``n_b >= 2``.

  Returns:
    The distance as a Python float (about 0 for identical distributions).

  Raises:
    ValueError: not 2-D, fewer than 2 rows, different ``d``, or non-finite.
  """
  a = _as_features(feats_a, "feats_a", min_rows=2)
  b = _as_features(feats_b, "feats_b", min_rows=2)
  if a.shape[1] != b.shape[1]:
    raise ValueError(
      f"feats_a and feats_b must have the same feature dimension, got {a.shape[1]} and {b.shape[1]}"
    )
  return frechet_distance_from_stats(
    a.mean(axis=0),
    np.atleast_2d(np.cov(a, rowvar=False)),
    b.mean(axis=0),
    np.atleast_2d(np.cov(b, rowvar=False)),
  )


class KIDResult(NamedTuple):
  """Kernel distance estimate: mean and standard deviation over subsets."""

  mean: float
  std: float


def kernel_distance(
  feats_a: Any,
  feats_b: Any,
  num_subsets: int = 100,
  subset_size: int = 1000,
  rng: Any = 0,
) -> KIDResult:
  """Kernel (KID-formula) distance: unbiased MMD^2 with a cubic polynomial kernel.

  ``k(x, y) = (x . y / d + 1)^3`` (Binkowski et al., 2018).  For each of
  ``num_subsets`` subsets, ``m = min(subset_size, n_a, n_b)`` rows are drawn
  without replacement from each set and the unbiased estimator
  ``mean_{i!=j} k(a_i, a_j) + mean_{i!=j} k(b_i, b_j) - 2 mean_{i,j} k(a_i, b_j)``
  is evaluated.  Being unbiased it can be slightly negative when the two
  distributions agree.

  Args:
    feats_a: ``(n_a, d)`` array, ``n_a >= 2``.
    feats_b: ``(n_b, d)`` array, ``n_b >= 2``.
    num_subsets: number of random subsets to average.
    subset_size: maximum rows per subset.
    rng: ``numpy.random.Generator``, integer seed, ``None`` or JAX key.

  Returns:
    ``KIDResult(mean, std)`` (a named tuple of Python floats) over subsets.

  Raises:
    ValueError: not 2-D, fewer than 2 rows, different ``d``, non-finite
      values, or non-positive ``num_subsets`` / ``subset_size < 2``.
  """
  a = _as_features(feats_a, "feats_a", min_rows=2)
  b = _as_features(feats_b, "feats_b", min_rows=2)
  if a.shape[1] != b.shape[1]:
    raise ValueError(
      f"feats_a and feats_b must have the same feature dimension, got {a.shape[1]} and {b.shape[1]}"
    )
  num_subsets = positive_int(num_subsets, "num_subsets")
  subset_size = positive_int(subset_size, "subset_size")
  if subset_size < 2:
    raise ValueError("subset_size must be at least 2 for the unbiased estimator")
  gen = as_rng(rng)
  d = a.shape[1]
  m = min(subset_size, a.shape[0], b.shape[0])
  values = np.empty(num_subsets)
  for i in range(num_subsets):
    x = a[gen.choice(a.shape[0], m, replace=False)]
    y = b[gen.choice(b.shape[0], m, replace=False)]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    # Dropping the diagonal (k(x_i, x_i)) is what makes the estimate unbiased.
    values[i] = (
      (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
      + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
      - 2.0 * kxy.mean()
    )
  return KIDResult(float(values.mean()), float(values.std()))
