"""What the classifier sees and what the sampler ascends: whole images or patches.

Two geometries share the rest of the code:

* whole images (`config.patch.size == 0`): the classifier takes the full
  `data.image_size` image, and pseudo-negatives have that size (SVHN, faces);
* the anysize patch head (`config.patch.size > 0`, paper 3.5): the classifier takes
  `patch.size` patches. Positives are one or a few exemplar images of
  `data.image_size`; pseudo-negatives are full images of the target size plus half a
  patch of padding per side, so that every pixel of the target is equally likely to be
  in a patch. Training batches cut one random patch from each drawn image; synthesis cuts
  several random patches per image at every step and averages the gradients of
  overlapping patches (innjax/patches.py), so any image size can be synthesised.

Everything here is a pure function of the config; nothing holds state.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from innjax import models
from innjax import patches

# The paper's synthesis density: 10 patches of 64x64 per 256x256 image, i.e. an image
# `PAPER_IMAGE_TO_PATCH` patch-widths wide gets `PAPER_PATCHES` patches.
PAPER_PATCHES = 10
PAPER_IMAGE_TO_PATCH = 4


def patch_size(config) -> int:
  """The classifier's patch side, or 0 when it classifies whole images."""
  return int(config.patch.size) if "patch" in config else 0


def model_input_shape(config) -> tuple[int, int, int]:
  """(H, W, C) of what the classifier takes: a patch or the whole image."""
  side = patch_size(config) or int(config.data.image_size)
  return (side, side, int(config.data.channels))


def target_hw(config, size: Sequence[int] | int | None = None) -> tuple[int, int]:
  """The (height, width) of the images to synthesise, before any padding.

  Args:
    config: the run's config.
    size: an int, an (h, w) pair, or None / 0 / (0, 0) for `data.image_size`.
  """
  default = int(config.data.image_size)
  if size is None:
    return default, default
  if isinstance(size, int):
    size = (size, size)
  size = tuple(int(s) for s in size)
  if len(size) == 1:
    size = size * 2
  if len(size) != 2:
    raise ValueError(f"An image size is (height, width) or one int, got {size!r}.")
  if size == (0, 0):
    return default, default
  if min(size) <= 0:
    raise ValueError(f"Image sizes must be positive, got {size!r}.")
  return size


def negative_shape(config, size=None) -> tuple[int, int, int]:
  """(H, W, C) of a pseudo-negative: the target, padded by half a patch per side."""
  hw = target_hw(config, size)
  side = patch_size(config)
  if side:
    hw = patches.padded_size(hw, side)
  elif hw != target_hw(config):
    raise ValueError(
        f"A whole-image model only synthesises its training size {target_hw(config)}, "
        f"not {hw}; sizes other than the training size need the patch head "
        "(config.patch.size > 0, e.g. configs/texture.py).")
  return (*hw, int(config.data.channels))


def crop_to_target(config, x: jax.Array) -> jax.Array:
  """Removes the patch-head padding from synthesised images (no-op for whole images)."""
  side = patch_size(config)
  return patches.crop_padding(x, side) if side else x


def patches_per_image(config, full_hw: tuple[int, int]) -> int:
  """Patches cut from a padded image at each synthesis step.

  `patch.patches_per_image > 0` fixes it; 0 keeps the paper's density (10 patches of
  64x64 on a 256x256 target) for any patch and image size, so the expected number of
  patches over a pixel, and hence the noise of each update, does not change with size.
  """
  fixed = int(config.patch.patches_per_image)
  if fixed > 0:
    return fixed
  side = patch_size(config)
  base = PAPER_IMAGE_TO_PATCH * side
  return patches.patches_for_size(full_hw, side, base=PAPER_PATCHES,
                                  base_hw=(base, base), padded=True)


def make_energy(config, model: models.Classifier,
                full_hw: tuple[int, int] | None = None) -> Callable:
  """The per-stage logit function the sampler ascends.

  Args:
    config: the run's config.
    model: the classifier.
    full_hw: (padded) size of the images being synthesised; the patch head picks its
      number of patches per image from it (default: the training negatives' size).

  Returns:
    `fn(variables, x) -> logits` for whole images, or `fn(variables, x, key) ->`
    one logit per patch (with `fn.needs_key`) for the patch head.
  """
  logit_fn = models.make_logit_fn(model)
  side = patch_size(config)
  if not side:
    return logit_fn
  full_hw = full_hw or negative_shape(config)[:2]
  return patches.make_patch_logit_fn(
      logit_fn, patch_size=side,
      patches_per_image=patches_per_image(config, full_hw),
      average_overlaps=bool(config.patch.average_overlaps))


def classifier_inputs(config, images: jax.Array, key: jax.Array) -> jax.Array:
  """What the classifier trains on from a batch of images: one random patch each.

  Whole-image models take the images as they are. Under the patch head, every image
  gives one uniformly placed patch, so a batch of 50 positives and 50 pool negatives
  is 100 patches, each from its own draw (paper 4: patches of the full images).
  """
  side = patch_size(config)
  if not side:
    return images
  positions = patches.random_patch_positions(
      key, images.shape[1:3], side, 1, batch_shape=(images.shape[0],))
  return patches.extract_patches(images, positions, side)
