"""What the classifier sees and what the sampler ascends: whole images or patches.

Two geometries share the rest of the code:

* whole images (`Geometry.patch_size == 0`): the classifier takes the full
  `image_size` image, and pseudo-negatives have that size (SVHN, faces);
* the anysize patch head (`patch_size > 0`, paper 3.5): the classifier takes
  `patch_size` patches. Positives are one or a few exemplar images of `image_size`;
  pseudo-negatives are full images of the target size plus half a patch of padding per
  side, so that every pixel of the target is equally likely to be in a patch. Training
  batches cut one random patch from each drawn image; synthesis cuts several random
  patches per image at every step and averages the gradients of overlapping patches
  (innjax/patches.py), so any image size can be synthesised.

Everything here is a pure function of a `Geometry` of plain numbers; the run's config
is mapped onto one by `innjax.synthesis.geometry(config)`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax

from innjax import models
from innjax import patches

# The paper's synthesis density: 10 patches of 64x64 per 256x256 image, i.e. an image
# `PAPER_IMAGE_TO_PATCH` patch-widths wide gets `PAPER_PATCHES` patches.
PAPER_PATCHES = 10
PAPER_IMAGE_TO_PATCH = 4


@dataclasses.dataclass(frozen=True)
class Geometry:
  """The sizes that decide what the classifier takes and what synthesis makes.

  Attributes:
    image_size: side of the (square) training images.
    channels: 1 or 3.
    patch_size: side of the classifier's patches; 0 when it classifies whole images.
    patches_per_image: patches cut from each image at every synthesis step; 0 keeps
      the paper's density for any size (`patches_per_step`).
    average_overlaps: divide each pixel's synthesis gradient by how many patches
      cover it (paper 3.5); False sums them.
  """

  image_size: int
  channels: int
  patch_size: int = 0
  patches_per_image: int = 0
  average_overlaps: bool = True


def model_input_shape(geometry: Geometry) -> tuple[int, int, int]:
  """(H, W, C) of what the classifier takes: a patch or the whole image."""
  side = geometry.patch_size or geometry.image_size
  return (side, side, geometry.channels)


def target_hw(
  geometry: Geometry, size: Sequence[int] | int | None = None
) -> tuple[int, int]:
  """The (height, width) of the images to synthesise, before any padding.

  Args:
    geometry: the model's geometry.
    size: an int, an (h, w) pair, or None / 0 / (0, 0) for the training size.
  """
  default = geometry.image_size
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


def negative_shape(geometry: Geometry, size=None) -> tuple[int, int, int]:
  """(H, W, C) of a pseudo-negative: the target, padded by half a patch per side."""
  hw = target_hw(geometry, size)
  side = geometry.patch_size
  if side:
    hw = patches.padded_size(hw, side)
  elif hw != target_hw(geometry):
    raise ValueError(
      f"A whole-image model only synthesises its training size "
      f"{target_hw(geometry)}, not {hw}; sizes other than the training size need "
      "the patch head (config.patch.size > 0, e.g. configs/texture.py)."
    )
  return (*hw, geometry.channels)


def crop_to_target(geometry: Geometry, x: jax.Array) -> jax.Array:
  """Removes the patch-head padding from synthesised images (no-op for whole images)."""
  side = geometry.patch_size
  return patches.crop_padding(x, side) if side else x


def patches_per_step(geometry: Geometry, full_hw: tuple[int, int]) -> int:
  """Patches cut from a padded image of `full_hw` at each synthesis step.

  `geometry.patches_per_image > 0` fixes it; 0 keeps the paper's density (10 patches
  of 64x64 on a 256x256 target) for any patch and image size, so the expected number
  of patches over a pixel, and hence the noise of each update, does not change with
  size.
  """
  if geometry.patches_per_image > 0:
    return geometry.patches_per_image
  side = geometry.patch_size
  base = PAPER_IMAGE_TO_PATCH * side
  return patches.patches_for_size(
    full_hw, side, base=PAPER_PATCHES, base_hw=(base, base), padded=True
  )


def make_stage_logit_fn(
  model: models.Classifier, geometry: Geometry, full_hw: tuple[int, int] | None = None
) -> Callable:
  """The logit function of one cascade stage on whole (padded) images: what the
  sampler ascends.

  Args:
    model: the classifier.
    geometry: whole images or the patch head.
    full_hw: (padded) size of the images being synthesised; the patch head picks its
      number of patches per image from it (default: the training negatives' size).

  Returns:
    `models.make_logit_fn(model)`, `fn(variables, x) -> logits`, for whole images;
    for the patch head `fn(variables, x, key) ->` one logit per random patch, which
    needs a PRNG key at every step (`fn.needs_key`).
  """
  logit_fn = models.make_logit_fn(model)
  side = geometry.patch_size
  if not side:
    return logit_fn
  full_hw = full_hw or negative_shape(geometry)[:2]
  return patches.make_patch_logit_fn(
    logit_fn,
    patch_size=side,
    patches_per_image=patches_per_step(geometry, full_hw),
    average_overlaps=geometry.average_overlaps,
  )


def classifier_inputs(geometry: Geometry, images: jax.Array, key: jax.Array) -> jax.Array:
  """What the classifier trains on from a batch of images: one random patch each.

  Whole-image models take the images as they are. Under the patch head, every image
  gives one uniformly placed patch, so a batch of 50 positives and 50 pool negatives
  is 100 patches, each from its own draw (paper 4: patches of the full images).
  """
  side = geometry.patch_size
  if not side:
    return images
  positions = patches.random_patch_positions(
    key, images.shape[1:3], side, 1, batch_shape=(images.shape[0],)
  )
  return patches.extract_patches(images, positions, side)


def make_energy(
  config, model: models.Classifier, full_hw: tuple[int, int] | None = None
) -> Callable:
  """The old name of `make_stage_logit_fn`, which takes the run's config.

  Kept for code written against earlier releases: it returns a logit function, not an
  energy. New code: `make_stage_logit_fn(model, synthesis.geometry(config), full_hw)`.
  """
  # Imported here: synthesis imports this module.
  from innjax import synthesis  # pylint: disable=g-import-not-at-top

  return make_stage_logit_fn(model, synthesis.geometry(config), full_hw)
