"""The "anysize" patch head for texture synthesis (INNg paper, sections 3.5 and 4).

The classifier only ever sees fixed-size patches (64x64 in the paper), but the images being
synthesised are full images of any size: the target size plus half a patch of padding on
every side (256x256 -> 320x320 for 64x64 patches), so that pixels near the border of the
target can be covered by patches as well. Each forward pass cuts random, possibly
overlapping, patches out of the full images and classifies them; gradients flow back to
the full image. Following the paper ("updates to the pixel values are made by considering
the average loss of all patches that overlap a given pixel"), a pixel covered by ``k``
patches receives the MEAN of their ``k`` gradients, not the sum, so that the step size of
the image-space optimiser does not depend on how many patches happened to land on a pixel.

Conventions:
  * Images are NHWC arrays (float, in [-1, 1] for the classifier).
  * A patch position is the (row, col) of its top-left corner; valid positions are
    ``0 <= row <= H - ph`` and ``0 <= col <= W - pw``.
  * ``patch_size`` is an int (square patches) or a ``(height, width)`` pair.
  * Patches cut from a batch are ordered image-major: patch ``p`` of image ``n`` is row
    ``n * P + p`` of the output, matching ``logits.reshape(N, P)``.

Everything here is a pure function of its inputs with explicit PRNG keys and no global
state; callers jit/vmap/grad freely (the small private kernels carry their own ``jax.jit``
only so that eager calls compile once per shape; under an outer jit they are inlined).
Sizes (``patch_size``, numbers of patches, image shapes) must be static under
``jax.jit``; positions and keys may be traced.

Typical use for synthesis::

    energy = make_patch_logit_fn(logit_fn, patch_size=64, patches_per_image=10)
    logits = energy(variables, images_320, key)   # (N * 10,), one logit per patch
    images_256 = crop_padding(images_320, 64)     # when synthesis is done
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

PatchSize = Union[int, Sequence[int]]

__all__ = [
  "padded_size",
  "pad_images",
  "crop_padding",
  "random_patch_positions",
  "extract_patches",
  "coverage_counts",
  "extract_patches_averaged",
  "sample_patches",
  "patches_for_size",
  "make_patch_logit_fn",
]


# ----------------------------------------------------------------------------------------
# Argument validation. Shapes and sizes are static Python values even under jit, so all of
# these checks run at trace time and cost nothing in the compiled function.
# ----------------------------------------------------------------------------------------


def _is_int(value) -> bool:
  # bool is an int subclass, but `patch_size=True` is certainly a bug.
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _positive_int(value, name: str) -> int:
  if not _is_int(value):
    raise ValueError(f"{name} must be a positive integer, got {value!r}")
  if value <= 0:
    raise ValueError(f"{name} must be positive, got {value!r}")
  return int(value)


def _as_hw(value, name: str) -> tuple[int, int]:
  """Normalises an int or a (height, width) pair to a tuple of two positive ints."""
  if _is_int(value):
    pair = (value, value)
  else:
    try:
      pair = tuple(value)
    except TypeError:
      raise ValueError(
        f"{name} must be an int or a (height, width) pair, got {value!r}"
      ) from None
    if len(pair) != 2 or not all(_is_int(v) for v in pair):
      raise ValueError(
        f"{name} must be an int or a (height, width) pair of ints, got {value!r}"
      )
  if pair[0] <= 0 or pair[1] <= 0:
    raise ValueError(f"{name} must be positive, got {value!r}")
  return int(pair[0]), int(pair[1])


def _check_nhwc(images, name: str = "images") -> tuple[int, int, int, int]:
  shape = getattr(images, "shape", None)
  if shape is None or len(shape) != 4:
    raise ValueError(f"{name} must be an NHWC array of rank 4, got shape {shape!r}")
  return tuple(int(d) for d in shape)  # type: ignore[return-value]


def _check_fits(image_hw: tuple[int, int], patch_hw: tuple[int, int]) -> None:
  if patch_hw[0] > image_hw[0] or patch_hw[1] > image_hw[1]:
    raise ValueError(
      f"patch_size {patch_hw} is larger than the image (height, width) {image_hw}"
    )


def _prepare_positions(positions, num_images: int) -> jax.Array:
  """Validates (P, 2) shared or (N, P, 2) per-image positions (broadcast in ``_extract``)."""
  positions = jnp.asarray(positions)
  if not jnp.issubdtype(positions.dtype, jnp.integer):
    raise ValueError(f"positions must be an integer array, got dtype {positions.dtype}")
  if positions.ndim == 2 and positions.shape[-1] == 2:
    pass
  elif not (
    positions.ndim == 3 and positions.shape[-1] == 2 and positions.shape[0] == num_images
  ):
    raise ValueError(
      "positions must have shape (num_patches, 2) or (num_images, num_patches, 2) "
      f"with num_images={num_images}, got {positions.shape}"
    )
  if positions.shape[-2] == 0:
    raise ValueError("positions must hold at least one patch, got 0")
  return positions


def _check_in_bounds(positions, image_hw, patch_hw) -> None:
  """Raises on out-of-range corners when positions are concrete (not under jit).

  Under jit the positions are tracers and cannot be inspected; there, out-of-range
  corners are clamped into the valid range (the behaviour of ``lax.dynamic_slice``,
  which ``_clamp`` makes explicit so that coverage counts agree with the slices).
  """
  if isinstance(positions, jax.core.Tracer):
    return
  pos = np.asarray(positions)
  max_row = image_hw[0] - patch_hw[0]
  max_col = image_hw[1] - patch_hw[1]
  bad = (
    (pos[..., 0] < 0)
    | (pos[..., 0] > max_row)
    | (pos[..., 1] < 0)
    | (pos[..., 1] > max_col)
  )
  if bad.any():
    first = pos[np.nonzero(bad)][0].tolist()
    raise ValueError(
      f"positions out of bounds: top-left corner {first} does not fit a patch of "
      f"{patch_hw} in an image of {image_hw} (valid rows 0..{max_row}, "
      f"cols 0..{max_col})"
    )


def _clamp(positions: jax.Array, image_hw, patch_hw) -> jax.Array:
  limit = jnp.asarray(
    [image_hw[0] - patch_hw[0], image_hw[1] - patch_hw[1]], dtype=positions.dtype
  )
  return jnp.clip(positions, 0, limit)


# ----------------------------------------------------------------------------------------
# Padding.
# ----------------------------------------------------------------------------------------


def padded_size(target_hw: PatchSize, patch_size: PatchSize) -> tuple[int, int]:
  """Size of the full image synthesised for a target size: half a patch of padding per side.

  The padding lets patches reach over the border of the target so that every target
  pixel can be covered (in the paper: 256x256 target + 32 per side = 320x320). Coverage
  is still not exactly uniform: a pixel on the target's edge lies in about half as many
  of the possible patch positions as a pixel in the middle (a corner pixel a quarter).

  Args:
    target_hw: target (height, width), or an int for a square target.
    patch_size: patch (height, width), or an int for square patches.

  Returns:
    ``(target_h + 2 * (ph // 2), target_w + 2 * (pw // 2))``.
  """
  th, tw = _as_hw(target_hw, "target_hw")
  ph, pw = _as_hw(patch_size, "patch_size")
  return th + 2 * (ph // 2), tw + 2 * (pw // 2)


def pad_images(images, patch_size: PatchSize, mode: str = "reflect", **pad_kwargs):
  """Pads NHWC images by half a patch per side (the inverse of ``crop_padding``).

  Useful to start synthesis from an existing image (e.g. the content image in style
  transfer) rather than from noise.

  Args:
    images: (N, H, W, C) array.
    patch_size: patch (height, width), or an int.
    mode: ``jnp.pad`` mode; ``"reflect"`` avoids a visible constant frame.
    **pad_kwargs: passed to ``jnp.pad`` (e.g. ``constant_values``).

  Returns:
    (N, H + 2 * (ph // 2), W + 2 * (pw // 2), C) array.
  """
  _check_nhwc(images)
  ph, pw = _as_hw(patch_size, "patch_size")
  pad = ((0, 0), (ph // 2, ph // 2), (pw // 2, pw // 2), (0, 0))
  return jnp.pad(images, pad, mode=mode, **pad_kwargs)


def crop_padding(images, patch_size: PatchSize):
  """Removes the half-patch padding added by ``padded_size`` / ``pad_images``.

  Args:
    images: (N, H, W, C) padded images.
    patch_size: the patch (height, width), or an int, the padding was made for.

  Returns:
    (N, H - 2 * (ph // 2), W - 2 * (pw // 2), C) array: the target region.
  """
  _, h, w, _ = _check_nhwc(images)
  ph, pw = _as_hw(patch_size, "patch_size")
  top, left = ph // 2, pw // 2
  if h <= 2 * top or w <= 2 * left:
    raise ValueError(
      f"images of size {(h, w)} are not larger than the padding "
      f"{(2 * top, 2 * left)} for patch_size {(ph, pw)}"
    )
  # Explicit end indices: `-0` would mean "empty" when the padding is zero.
  return images[:, top : h - top, left : w - left, :]


# ----------------------------------------------------------------------------------------
# Positions and extraction.
# ----------------------------------------------------------------------------------------


def random_patch_positions(
  key: jax.Array,
  image_hw: PatchSize,
  patch_size: PatchSize,
  num_patches: int,
  batch_shape: Sequence[int] = (),
) -> jax.Array:
  """Uniformly random top-left corners of patches that fit inside an image.

  Args:
    key: PRNG key.
    image_hw: image (height, width), or an int.
    patch_size: patch (height, width), or an int.
    num_patches: number of corners per batch element (static).
    batch_shape: leading shape, e.g. ``(N,)`` for independent corners per image.

  Returns:
    int32 array of shape ``batch_shape + (num_patches, 2)`` holding (row, col) with
    ``0 <= row <= H - ph`` and ``0 <= col <= W - pw``, every valid corner equally likely.
  """
  h, w = _as_hw(image_hw, "image_hw")
  ph, pw = _as_hw(patch_size, "patch_size")
  num_patches = _positive_int(num_patches, "num_patches")
  batch_shape = tuple(batch_shape)
  if not all(_is_int(d) and d >= 0 for d in batch_shape):
    raise ValueError(f"batch_shape must be non-negative ints, got {batch_shape!r}")
  _check_fits((h, w), (ph, pw))
  # One randint call for rows and columns (maxval broadcasts over the last axis) keeps
  # the threefry kernel, the slowest part of this head to compile on CPU, to one copy.
  # maxval is exclusive, so +1 makes the last fitting corner reachable.
  maxval = jnp.asarray([h - ph + 1, w - pw + 1], dtype=jnp.int32)
  return jax.random.randint(
    key, batch_shape + (num_patches, 2), 0, maxval, dtype=jnp.int32
  )


# The private kernels below are jitted with static sizes. Eager calls (notebooks, tests)
# then compile one program per shape instead of one per primitive, which on CPU is the
# difference between ~0.1 s and ~1 s per new shape; under a caller's jit they are simply
# inlined, and grad/vmap pass through them. The public wrappers stay un-jitted so that
# their argument checks can raise plain ValueErrors.
_jit_sizes = functools.partial(jax.jit, static_argnames=("ph", "pw"))


@_jit_sizes
def _extract(images: jax.Array, positions: jax.Array, ph: int, pw: int) -> jax.Array:
  """(N,H,W,C), (N,P,2) or (P,2) -> (N*P, ph, pw, C); no validation (callers did it)."""
  n, h, w, c = images.shape
  if positions.ndim == 2:  # shared by all images
    positions = jnp.broadcast_to(positions, (n,) + positions.shape)
  positions = _clamp(positions, (h, w), (ph, pw))

  def one_patch(image, corner):
    return lax.dynamic_slice(image, (corner[0], corner[1], 0), (ph, pw, c))

  # vmap over patches (image shared), then over images: lowers to one gather whose
  # transpose is one scatter-add, instead of a Python loop of P*N slices.
  per_image = jax.vmap(one_patch, in_axes=(None, 0))
  patches = jax.vmap(per_image)(images, positions)  # (N, P, ph, pw, C)
  return patches.reshape((n * positions.shape[1], ph, pw, c))


def _validated_patch_args(images, positions, patch_size: PatchSize):
  """Checks the arguments of the extract functions; returns (images, positions, ph, pw)."""
  images = jnp.asarray(images)
  n, h, w, _ = _check_nhwc(images)
  ph, pw = _as_hw(patch_size, "patch_size")
  _check_fits((h, w), (ph, pw))
  positions = _prepare_positions(positions, n)
  _check_in_bounds(positions, (h, w), (ph, pw))
  return images, positions, ph, pw


def extract_patches(images, positions, patch_size: PatchSize) -> jax.Array:
  """Cuts patches out of a batch of images (plain slicing; gradients are summed).

  Under ``jax.grad`` a pixel covered by k patches receives the SUM of the k patch
  gradients; use ``extract_patches_averaged`` for the paper's mean.

  Args:
    images: (N, H, W, C) array.
    positions: int array of top-left corners, (N, P, 2) per image or (P, 2) shared by
      all images. Checked against the bounds when concrete; under jit (traced) they
      are clamped into the valid range instead, as ``lax.dynamic_slice`` does.
    patch_size: patch (height, width), or an int (static).

  Returns:
    (N * P, ph, pw, C) array; row ``n * P + p`` is patch p of image n.
  """
  return _extract(*_validated_patch_args(images, positions, patch_size))


@functools.partial(jax.jit, static_argnames=("image_hw", "patch_hw"))
def _coverage(positions: jax.Array, image_hw, patch_hw) -> jax.Array:
  """(..., P, 2) corners -> (..., H, W) int32 counts; no validation."""
  (h, w), (ph, pw) = image_hw, patch_hw
  positions = _clamp(positions, (h, w), (ph, pw))
  row0 = positions[..., 0:1]  # (..., P, 1)
  col0 = positions[..., 1:2]
  rows = jnp.arange(h, dtype=positions.dtype)
  cols = jnp.arange(w, dtype=positions.dtype)
  in_rows = (rows >= row0) & (rows < row0 + ph)  # (..., P, H)
  in_cols = (cols >= col0) & (cols < col0 + pw)  # (..., P, W)
  # A patch covers exactly the outer product of its row and column indicators, so the
  # count is a (P)-contraction: O(P*H*W) flops as a matmul, and no (P, H, W) tensor in
  # memory. 0/1 values and integer sums < 2**24 are exact in float32; HIGHEST keeps
  # TPUs/GPUs from using bf16 passes (still exact for 0/1, but be explicit).
  counts = jnp.einsum(
    "...ph,...pw->...hw",
    in_rows.astype(jnp.float32),
    in_cols.astype(jnp.float32),
    precision=lax.Precision.HIGHEST,
  )
  return jnp.rint(counts).astype(jnp.int32)


def coverage_counts(positions, image_hw: PatchSize, patch_size: PatchSize) -> jax.Array:
  """How many patches cover each pixel.

  Args:
    positions: int top-left corners, (P, 2) or (N, P, 2) (any leading batch shape).
    image_hw: image (height, width), or an int.
    patch_size: patch (height, width), or an int.

  Returns:
    int32 counts of shape (H, W) for (P, 2) positions, (N, H, W) for (N, P, 2).
  """
  h, w = _as_hw(image_hw, "image_hw")
  ph, pw = _as_hw(patch_size, "patch_size")
  _check_fits((h, w), (ph, pw))
  positions = jnp.asarray(positions)
  if positions.ndim < 2 or positions.shape[-1] != 2:
    raise ValueError(
      f"positions must have shape (..., num_patches, 2), got {positions.shape}"
    )
  if not jnp.issubdtype(positions.dtype, jnp.integer):
    raise ValueError(f"positions must be an integer array, got dtype {positions.dtype}")
  _check_in_bounds(positions, (h, w), (ph, pw))
  return _coverage(positions, (h, w), (ph, pw))


@_jit_sizes
def _extract_averaged(images: jax.Array, positions: jax.Array, ph: int, pw: int):
  """Like ``_extract`` but each pixel's gradient is divided by its coverage count."""
  if not jnp.issubdtype(images.dtype, jnp.inexact):
    # Integer images have no gradient to average.
    return _extract(images, positions, ph, pw)
  n, h, w, _ = images.shape
  counts = _coverage(positions, (h, w), (ph, pw))  # (H, W) shared or (N, H, W)
  if counts.ndim == 2:
    counts = jnp.broadcast_to(counts, (n, h, w))
  # Uncovered pixels get no cotangent from the scatter-add at all, so dividing them by 1
  # keeps them at exactly zero (and avoids 0/0).
  denom = jnp.maximum(counts, 1).astype(images.dtype)[..., None]
  scaled = images / denom
  # Forward value: images + (scaled - scaled) == images exactly (for finite values).
  # Backward: only the middle term is differentiable, d(images/denom)/d images =
  # 1/denom, and the transpose of a division is a division, so each pixel receives
  # (sum of its k patch gradients) / k: the mean. Chosen over jax.custom_vjp because
  # it is built from ordinary primitives, so it also works under forward mode
  # (jax.jvp, jax.hessian), vmap and higher-order grad without a hand-written rule.
  averaged = lax.stop_gradient(images) + (scaled - lax.stop_gradient(scaled))
  return _extract(averaged, positions, ph, pw)


def extract_patches_averaged(images, positions, patch_size: PatchSize) -> jax.Array:
  """Cuts patches; gradients w.r.t. the images are averaged over overlapping patches.

  The returned values are identical to ``extract_patches``. Under ``jax.grad``, a pixel
  covered by k >= 1 patches receives the MEAN of the k patch gradients (paper 3.5: "the
  average loss of all patches that overlap a given pixel"); a pixel covered by no patch
  receives zero. Coverage is counted per image from the given positions.

  Implemented with the stop-gradient identity
  ``x_avg = stop_gradient(x) + (x / k - stop_gradient(x / k))``: its value is exactly
  ``x`` and its derivative is ``1 / k`` per pixel. Unlike a ``jax.custom_vjp`` this
  needs no hand-written backward rule and stays differentiable in forward mode.

  Args:
    images: (N, H, W, C) float array.
    positions: int top-left corners, (N, P, 2) or (P, 2) shared (see
      ``extract_patches`` for bounds handling).
    patch_size: patch (height, width), or an int (static).

  Returns:
    (N * P, ph, pw, C) array; row ``n * P + p`` is patch p of image n.
  """
  return _extract_averaged(*_validated_patch_args(images, positions, patch_size))


def sample_patches(
  key: jax.Array, images, patch_size: PatchSize, num_patches: int
) -> jax.Array:
  """Random patches from a batch of full images, for classifier training batches.

  Each patch comes from an image drawn uniformly (with replacement) and a uniformly
  random valid position in it. This keeps "the whole space of patches" of the training
  images available (paper 4) instead of a fixed subset chosen in advance.

  Args:
    key: PRNG key.
    images: (N, H, W, C) array (positives, or pseudo-negatives from the pool).
    patch_size: patch (height, width), or an int (static).
    num_patches: number of patches to return (static).

  Returns:
    (num_patches, ph, pw, C) array.
  """
  images = jnp.asarray(images)
  n, h, w, c = _check_nhwc(images)
  ph, pw = _as_hw(patch_size, "patch_size")
  num_patches = _positive_int(num_patches, "num_patches")
  if n == 0:
    raise ValueError("images must hold at least one image, got an empty batch")
  _check_fits((h, w), (ph, pw))
  # (image, row, col) for every patch from one randint call: one threefry kernel (slow
  # to compile on CPU) instead of one per quantity. maxval is exclusive.
  maxval = jnp.asarray([n, h - ph + 1, w - pw + 1], dtype=jnp.int32)
  starts = jax.random.randint(key, (num_patches, 3), 0, maxval, dtype=jnp.int32)

  def one_patch(start):
    # Slice the 4-D batch directly: gathering `images[indices]` first would copy
    # num_patches whole images (1000 x 320x320x3 in the paper's setting).
    start = (start[0], start[1], start[2], jnp.zeros((), jnp.int32))
    return lax.dynamic_slice(images, start, (1, ph, pw, c))[0]

  return jax.vmap(one_patch)(starts)


# ----------------------------------------------------------------------------------------
# The head used for synthesis.
# ----------------------------------------------------------------------------------------


def patches_for_size(
  image_hw: PatchSize,
  patch_size: PatchSize,
  base: int = 10,
  base_hw: PatchSize = (256, 256),
  padded: bool = False,
) -> int:
  """Number of patches per image for synthesis, scaled linearly with the image area.

  The paper uses "typically 10 patches when synthesizing a 256x256 image since this
  matches the average number of patches extracted per image during training". Scaling
  the count with the area keeps the expected number of patches per pixel, and so the
  stochasticity of each update, the same at any size (512x512 -> 40).

  Args:
    image_hw: target (height, width), or an int; with ``padded=True``, the padded
      full-image size, from which the half-patch padding is removed first.
    patch_size: patch (height, width), or an int (used to remove the padding).
    base: patches per image at ``base_hw``.
    base_hw: the target size that gets ``base`` patches (without padding).
    padded: whether ``image_hw`` includes the padding of ``padded_size``.

  Returns:
    ``max(1, round(base * H * W / (base_h * base_w)))``.
  """
  h, w = _as_hw(image_hw, "image_hw")
  ph, pw = _as_hw(patch_size, "patch_size")
  base = _positive_int(base, "base")
  bh, bw = _as_hw(base_hw, "base_hw")
  if padded:
    h, w = h - 2 * (ph // 2), w - 2 * (pw // 2)
    if h <= 0 or w <= 0:
      raise ValueError(
        f"image_hw {image_hw} is not larger than the padding for patch_size {(ph, pw)}"
      )
  # floor(x + 0.5) rather than round(): Python rounds halves to even.
  return max(1, int(math.floor(base * (h * w) / (bh * bw) + 0.5)))


def make_patch_logit_fn(
  logit_fn: Callable[..., jax.Array],
  patch_size: PatchSize = 64,
  patches_per_image: int | None = 10,
  average_overlaps: bool = True,
) -> Callable[..., jax.Array]:
  """Wraps a patch classifier into an energy over full (padded) images.

  The returned ``fn(variables, images, key)`` draws ``patches_per_image`` independent
  random positions per image with
  ``random_patch_positions(key, (H, W), patch_size, P, batch_shape=(N,))``, cuts the
  patches (gradients averaged over overlaps by default) and classifies them with
  ``logit_fn(variables, patches)``. It returns one logit per patch, so an image-space
  sampler that ascends ``sum(logits)`` and early-stops on ``mean(sigmoid(logits))``
  works unchanged; build the sampler with ``needs_key=True`` so that every step draws
  fresh patches (the paper's source of stochasticity in synthesis). The function is
  pure and not jitted; retracing happens per image shape.

  Args:
    logit_fn: ``logit_fn(variables, patches) -> (batch,)`` (or ``(batch, 1)``) logits
      for (batch, ph, pw, C) patches; e.g. a classifier in inference mode, or a cascade.
    patch_size: patch (height, width) the classifier takes, or an int.
    patches_per_image: patches per image per call; ``None`` picks
      ``patches_for_size((H, W), patch_size, padded=True)`` from the image size at trace
      time (10 for 320x320 = 256 + padding, 40 for 576x576 = 512 + padding).
    average_overlaps: divide each pixel's gradient by its coverage count (paper 3.5);
      ``False`` sums the patch gradients instead.

  Returns:
    ``fn(variables, images, key) -> (N * P,)`` logits, row ``n * P + p`` for patch p of
    image n. ``fn.needs_key`` is True.
  """
  if not callable(logit_fn):
    raise ValueError(f"logit_fn must be callable, got {logit_fn!r}")
  ph, pw = _as_hw(patch_size, "patch_size")
  if patches_per_image is not None:
    patches_per_image = _positive_int(patches_per_image, "patches_per_image")
  extract = _extract_averaged if average_overlaps else _extract

  def patch_logit_fn(variables, images, key):
    n, h, w, _ = _check_nhwc(images)
    _check_fits((h, w), (ph, pw))
    num = patches_per_image
    if num is None:
      num = patches_for_size((h, w), (ph, pw), padded=True)
    positions = random_patch_positions(key, (h, w), (ph, pw), num, batch_shape=(n,))
    patches = extract(jnp.asarray(images), positions, ph, pw)
    logits = logit_fn(variables, patches)
    if logits.size != n * num:
      raise ValueError(
        f"logit_fn must return one logit per patch ({n * num} for {n} images x "
        f"{num} patches), got shape {logits.shape}"
      )
    return jnp.reshape(logits, (n * num,))

  # Lets a sampler factory discover that this energy wants a fresh key per step.
  patch_logit_fn.needs_key = True
  return patch_logit_fn
