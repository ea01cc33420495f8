"""Image output: PNG grids with a fixed value mapping, and the run's metric writer."""

from __future__ import annotations

import functools
import math

import jax
import numpy as np
from PIL import Image

from innjax import data as data_lib
from innjax import outputs


def make_grid(images, ncol: int | None = None, pad: int = 2) -> np.ndarray:
  """Tiles (N, H, W, C) images in [-1, 1] into one uint8 (rows, cols, C) array.

  The mapping [-1, 1] -> [0, 255] is fixed (values outside are clipped), never
  rescaled per grid, so grids from different stages are comparable.

  Args:
    images: (N, H, W, C) floats in [-1, 1], C in {1, 3}.
    ncol: images per row (default: a near-square grid).
    pad: pixels of white between images.

  Returns:
    uint8 array of shape (rows, cols, C).
  """
  images = np.asarray(jax.device_get(images))
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] == 0:
    raise ValueError(
      f"make_grid expects a non-empty (N, H, W, 1 or 3) batch, got {images.shape}."
    )
  n, h, w, c = images.shape
  ncol = ncol or int(math.ceil(math.sqrt(n)))
  nrow = int(math.ceil(n / ncol))
  grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
  tiles = np.asarray(data_lib.to_uint8(images))
  for i in range(n):
    r, col = divmod(i, ncol)
    y, x = pad + r * (h + pad), pad + col * (w + pad)
    grid[y : y + h, x : x + w] = tiles[i]
  return grid


def write_png(array: np.ndarray, f) -> None:
  """Encodes a uint8 (H, W, C) array as PNG into the open binary file `f`."""
  if array.shape[-1] == 1:
    array = array[..., 0]
  Image.fromarray(array).save(f, format="PNG")


def save_png(array: np.ndarray, path: str) -> str:
  """Writes a uint8 (H, W, C) array as PNG, creating folders; returns the path.

  The file is complete or absent, never half-written (innjax/outputs.py); an existing
  file of that name is replaced.
  """
  return outputs.write_file(path, functools.partial(write_png, array))


def save_grid(images, path: str, ncol: int | None = None) -> str:
  """Saves (N, H, W, C) images in [-1, 1] as one PNG grid; returns the path."""
  return save_png(make_grid(images, ncol), path)


def make_writer(workdir: str):
  """TensorBoard events in `workdir` on process 0 (innjax/summaries.py, no TensorFlow);
  the other processes of a multi-host run write none."""
  from innjax import summaries  # pylint: disable=g-import-not-at-top

  if jax.process_index() > 0:
    return summaries.NullWriter()
  return summaries.EventWriter(workdir)
