"""Datasets of positive examples for INNg, held in host memory as uint8 NHWC.

The trainer draws every batch by index from a PRNG key (``images[idx]``), so a
run is deterministic and resumable without any iterator state. This module
therefore does all decoding, cropping and resizing once, up front, and returns
a :class:`Dataset` of ``uint8`` arrays; :func:`to_float` maps them to the
``[-1, 1]`` range the classifier and sampler work in.

Sources (``data_config.source``):

* ``'tfds'``: TensorFlow Datasets. ``svhn_cropped`` (default split
  ``'train+extra'``, as in the paper), ``celeb_a`` (center 64x64 crop of the
  218x178 aligned face, as in the paper, then resized to ``image_size``),
  ``cifar10``, ``mnist`` (28x28 gray, zero-padded to ``image_size`` when that
  is larger, resized when smaller). Other image datasets that tfds knows are
  read generically (center square crop, resize). tfds is used only for
  reading: ``tfds.data_source`` reads ArrayRecord files without TensorFlow;
  datasets prepared as TFRecord fall back to ``tfds.load`` (needs TensorFlow,
  which is then kept off the accelerators). With ``download=True`` (the
  default, as in ``tfds.load``) a missing dataset is downloaded and prepared
  as ArrayRecord; offline, tfds retries for minutes before failing, so set
  ``download=False`` there to get the "how to prepare it" error at once.
* ``'folder'``: every ``.jpg/.jpeg/.png/.bmp/.webp`` file under ``path``
  (recursive, case-insensitive, sorted by relative path). Unreadable files, broken
  and looping symbolic links are skipped with a warning naming them.
* ``'npz'``: a NumPy ``.npz`` with ``x`` (or ``images``: a stack NHWC or NHW of
  at least one image; a single HWC image is refused, not read as strips) and
  optional ``y`` (or ``labels``: one integer per image). Object arrays are never
  unpickled.
* ``'skimage'``: random crops of an image bundled in scikit-image's wheel
  (``brick``, ``gravel``, ``grass`` textures; ``astronaut``, ``coffee``,
  ``chelsea`` photos, ...). Needs no download: the default for tests and demos.

Conventions shared by all sources: output is ``(N, image_size, image_size,
channels)`` ``uint8``; an image whose shorter side is smaller than
``image_size`` is an error unless ``data_config.allow_upscale`` is true
(silently upscaled data would train the model on blur); colour to gray uses
PIL's ITU-R 601-2 luma; gray to colour replicates the channel; transparent
images are composited on white (not alpha-dropped: the colour under fully
transparent pixels is arbitrary, often black or garbage). Images over Pillow's
decompression-bomb limit are refused with :class:`ImageTooLargeError`; the
environment variable ``INNJAX_MAX_IMAGE_PIXELS`` raises the limit (0 lifts it).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import pathlib
import sys
import warnings
import zipfile
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

from absl import logging
import numpy as np
from PIL import Image, ImageOps

from innjax import config_checks
from innjax import errors

__all__ = [
  "Dataset",
  "DatasetNotPreparedError",
  "ImageTooLargeError",
  "FOLDER_EXTENSIONS",
  "SKIMAGE_IMAGES",
  "TFDS_DATASETS",
  "center_crop",
  "fingerprint",
  "load_dataset",
  "load_image",
  "load_image_uint8",
  "resize",
  "to_float",
  "to_uint8",
]

# Extensions the 'folder' source picks up (compared lower-cased).
FOLDER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# Images shipped inside scikit-image's wheel (skimage/data/*.png|jpg), so
# loading them never triggers a pooch download. Textures first.
SKIMAGE_IMAGES = (
  "brick",
  "gravel",
  "grass",  # 512x512 gray textures
  "astronaut",
  "coffee",
  "chelsea",
  "rocket",
  "hubble_deep_field",  # colour
  "camera",
  "coins",
  "moon",
  "text",
  "page",
  "cell",  # gray photos
  "logo",  # RGBA
)


class Dataset(NamedTuple):
  """An in-memory image dataset.

  Attributes:
    images: ``np.uint8`` array of shape ``(N, H, W, C)``.
    labels: ``np.int64`` array of shape ``(N,)``, or ``None`` when the source
      has no labels.
    name: a short human-readable name (tfds name, folder or file stem, or
      ``'skimage_<image>'``).
  """

  images: np.ndarray
  labels: Optional[np.ndarray]
  name: str

  @property
  def num_examples(self) -> int:
    """Number of images N (``len(dataset)`` is the tuple length, 3)."""
    return int(self.images.shape[0])

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """``(H, W, C)`` of one image."""
    return tuple(int(d) for d in self.images.shape[1:])


class DatasetNotPreparedError(errors.DataNotFoundError):
  """A tfds dataset that exists but has not been downloaded/prepared."""


@dataclasses.dataclass(frozen=True)
class _TfdsSpec:
  """How one tfds dataset becomes INNg positives."""

  default_split: str
  center_crop: int = 0  # crop this square from the center first (0 = none)
  pad_small: bool = False  # zero-pad (instead of resize) up to image_size
  note: str = ""


TFDS_DATASETS = {
  "svhn_cropped": _TfdsSpec("train+extra", note="32x32 RGB, labels 0-9"),
  "celeb_a": _TfdsSpec(
    "train",
    center_crop=64,
    note="218x178 aligned faces; center 64x64 crop as in the paper",
  ),
  "cifar10": _TfdsSpec("train", note="32x32 RGB, labels 0-9"),
  "mnist": _TfdsSpec(
    "train",
    pad_small=True,
    note="28x28 gray; zero-padded up to image_size, resized if smaller",
  ),
}

# The values of data.source, data.value_range (npz floats) and data.reader (tfds);
# innjax/config_checks.py checks a config against them.
SOURCES = ("tfds", "folder", "npz", "skimage", "image")
VALUE_RANGES = ("auto", "[0,1]", "[-1,1]")
TFDS_READERS = ("auto", "data_source", "tf")


# ----------------------------------------------------------------------------
# Value-range conversions.


def _is_jax_array(x: Any) -> bool:
  # Checked through sys.modules so that numpy-only callers never pay for the
  # jax import; jax tracers are jax.Array instances, so this works under jit.
  jax = sys.modules.get("jax")
  return jax is not None and isinstance(x, jax.Array)


def to_float(images_uint8: Any) -> Any:
  """Maps uint8 pixels to float32 in ``[-1, 1]`` as ``x / 127.5 - 1``.

  Args:
    images_uint8: integer array (numpy or jax, any shape) with values in
      ``[0, 255]``.

  Returns:
    A float32 array of the same kind (numpy in, numpy out; jax in, jax out)
    and shape. Usable inside ``jax.jit``.
  """
  x = images_uint8 if hasattr(images_uint8, "astype") else np.asarray(images_uint8)
  return x.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def to_uint8(images_float: Any) -> Any:
  """Inverse of :func:`to_float`: ``round((x + 1) * 127.5)``, clipped.

  The mapping is fixed: values outside ``[-1, 1]`` are clipped, never
  rescaled to the image's own min/max (that would hide sampler overshoot and
  make images incomparable). NaN maps to 0.

  Args:
    images_float: float array (numpy or jax, any shape), nominally in
      ``[-1, 1]``.

  Returns:
    A uint8 array of the same kind and shape. ``to_uint8(to_float(x)) == x``
    exactly for every uint8 ``x``.
  """
  if _is_jax_array(images_float):
    import jax.numpy as xp  # pylint: disable=g-import-not-at-top
  else:
    xp = np
    images_float = np.asarray(images_float)
  x = xp.nan_to_num(images_float.astype(xp.float32), nan=-1.0)
  return xp.clip(xp.round((x + 1.0) * 127.5), 0, 255).astype(xp.uint8)


# ----------------------------------------------------------------------------
# Single-image helpers (numpy uint8/float HWC).


def _rgb_to_luma(rgb: np.ndarray) -> np.ndarray:
  """uint8 RGB (..., 3) -> uint8 gray (...), bit-exact with PIL's convert('L')."""
  r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
  # PIL's fixed-point ITU-R 601-2 luma; matching it keeps tfds/npz/skimage
  # images identical to the same pixels loaded through the folder source.
  return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
  """uint8 (..., C+1) with alpha last -> uint8 (..., C), composited on white."""
  color = rgba[..., :-1].astype(np.float32)
  alpha = rgba[..., -1:].astype(np.float32) / 255.0
  out = color * alpha + 255.0 * (1.0 - alpha)
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
  """uint8 HW / HWC (C in 1-4) -> uint8 HWC with ``channels`` channels."""
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels!r}")
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4):
    raise errors.DataError(
      f"expected an HW or HWC image with 1-4 channels, got shape {image.shape}"
    )
  if image.shape[-1] in (2, 4):  # LA / RGBA
    image = _composite_on_white(image)
  if image.shape[-1] == channels:
    return image
  if channels == 3:  # gray -> colour: replicate
    return np.repeat(image, 3, axis=-1)
  return _rgb_to_luma(image)[..., None]


def center_crop(
  image: np.ndarray, size: Union[int, Sequence[int], None] = None
) -> np.ndarray:
  """Crops the central ``size`` region of an HW or HWC image.

  Args:
    image: array of shape ``(H, W)`` or ``(H, W, C)``.
    size: ``int`` for a square, ``(h, w)``, or ``None`` for the largest
      central square (side ``min(H, W)``).

  Returns:
    The crop (a view). When the excess is odd the extra pixel is dropped at
    the bottom/right, like ``PIL.ImageOps.fit`` and tf.image.

  Raises:
    ValueError: if the crop is larger than the image.
  """
  h, w = image.shape[:2]
  if size is None:
    ch = cw = min(h, w)
  elif isinstance(size, (int, np.integer)):
    ch = cw = int(size)
  else:
    ch, cw = (int(s) for s in size)
  if ch > h or cw > w:
    raise ValueError(f"center crop {ch}x{cw} is larger than the image {h}x{w}")
  top, left = (h - ch) // 2, (w - cw) // 2
  return image[top : top + ch, left : left + cw]


def resize(
  image: np.ndarray, hw: Union[int, Sequence[int]], *, resample: Optional[int] = None
) -> np.ndarray:
  """Resizes one image with PIL (antialiased), keeping dtype and layout.

  Args:
    image: ``(H, W)`` or ``(H, W, C)`` array (numpy, or anything
      ``np.asarray`` accepts such as a jax array); ``uint8`` or floating.
    hw: output size, ``int`` (square) or ``(height, width)``.
    resample: a ``PIL.Image.Resampling`` filter; default LANCZOS when
      shrinking (antialiasing), BICUBIC when enlarging.

  Returns:
    The resized image, same dtype and number of dimensions. Float images are
    resized per channel in 32-bit float and clipped to the input's own
    ``[min, max]``, so LANCZOS/BICUBIC ringing cannot leave ``[-1, 1]``.
  """
  image = np.asarray(image)
  oh, ow = (
    (int(hw), int(hw)) if isinstance(hw, (int, np.integer)) else (int(hw[0]), int(hw[1]))
  )
  h, w = image.shape[:2]
  if (h, w) == (oh, ow):
    return image
  if resample is None:
    resample = Image.Resampling.LANCZOS if oh * ow < h * w else Image.Resampling.BICUBIC
  squeeze = image.ndim == 2
  img3 = image[..., None] if squeeze else image
  if img3.dtype == np.uint8 and img3.shape[-1] in (1, 3):
    mode = "L" if img3.shape[-1] == 1 else "RGB"
    pil = Image.fromarray(img3[..., 0] if mode == "L" else img3, mode=mode)
    out = np.asarray(pil.resize((ow, oh), resample=resample))
    out = out.reshape(oh, ow, img3.shape[-1])
  elif img3.dtype == np.uint8:  # e.g. RGBA: resize channels independently
    out = np.stack(
      [
        np.asarray(
          Image.fromarray(np.ascontiguousarray(img3[..., c]), mode="L").resize(
            (ow, oh), resample=resample
          )
        )
        for c in range(img3.shape[-1])
      ],
      -1,
    )
  elif np.issubdtype(img3.dtype, np.floating):
    chans = [
      np.asarray(
        Image.fromarray(
          np.ascontiguousarray(img3[..., c], dtype=np.float32), mode="F"
        ).resize((ow, oh), resample=resample)
      )
      for c in range(img3.shape[-1])
    ]
    out = np.clip(np.stack(chans, -1), img3.min(), img3.max()).astype(image.dtype)
  else:
    raise ValueError(f"resize supports uint8 and float images, got dtype {image.dtype}")
  return out[..., 0] if squeeze else out


def _fit(
  image: np.ndarray, image_size: int, allow_upscale: bool, where: str, crop_size: int = 0
) -> np.ndarray:
  """Center square crop (``crop_size``, 0 = the largest) + resize to ``image_size``.

  Refuses silent upscaling. ``crop_size`` takes the paper's tight face crop (the
  central 64x64 of a half-resolution aligned CelebA face) before resizing.
  """
  h, w = image.shape[:2]
  if crop_size and min(h, w) < crop_size:
    raise errors.DataError(
      f"{where}: image is {h}x{w} (HxW), smaller than data.crop_size={crop_size}; "
      "use a smaller crop_size (0 = the largest central square)"
    )
  side = crop_size or min(h, w)
  if side < image_size and not allow_upscale:
    raise errors.DataError(
      f"{where}: image is {h}x{w} (HxW), smaller than image_size={image_size}; "
      "use a smaller image_size, drop the image, or set data_config.allow_upscale=True"
    )
  return resize(center_crop(image, crop_size or None), image_size)


def _pad_or_fit(
  image: np.ndarray, image_size: int, allow_upscale: bool, where: str
) -> np.ndarray:
  """Zero-pad a small image (e.g. MNIST 28 -> 32) to the center, or fit it."""
  h, w = image.shape[:2]
  if h > image_size or w > image_size:
    return _fit(image, image_size, allow_upscale, where)
  # Padding keeps the digit's pixels exact (the LeNet/DCGAN convention for
  # MNIST at 32x32) instead of blurring them by an upscale.
  top, left = (image_size - h) // 2, (image_size - w) // 2
  out = np.zeros((image_size, image_size) + image.shape[2:], image.dtype)
  out[top : top + h, left : left + w] = image
  return out


# ----------------------------------------------------------------------------
# Reading image files.


def _pil_to_uint8(pil: Image.Image, channels: int) -> np.ndarray:
  """Decoded PIL image of any mode -> uint8 HWC with ``channels`` channels."""
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels!r}")
  mode = pil.mode
  if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
    # 16-bit gray (PNG/TIFF). Scale to 8 bit (65535 -> 255) rather than
    # clip: PIL's own convert('L') clips, turning most 16-bit images white.
    # 'I' (32-bit) is what some decoders return for 16-bit data, so it is
    # treated as 16-bit too.
    arr = np.asarray(pil, dtype=np.float64)
    gray = np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8)
    return _convert_channels(gray, channels)
  if mode == "F":
    raise errors.DataError(
      "32-bit float images are not supported (ambiguous value range)"
    )
  # Palette / LA / RGBA / PA with transparency: composite on white.
  if mode == "P" and "transparency" in pil.info:
    pil = pil.convert("RGBA")
  elif mode == "PA":
    pil = pil.convert("RGBA")
  if pil.mode in ("RGBA", "LA", "RGBa", "La"):
    if pil.mode in ("RGBa", "La"):  # premultiplied: undo first
      pil = pil.convert("RGBA" if pil.mode == "RGBa" else "LA")
    return _convert_channels(np.asarray(pil), channels)
  if pil.mode not in ("L", "RGB"):
    # '1', 'P' (opaque), 'CMYK', 'YCbCr', 'LAB', 'HSV', 'RGBX', ...
    pil = pil.convert("L" if pil.mode == "1" else "RGB")
  return _convert_channels(np.asarray(pil), channels)


# The environment variable that sets the largest image, in pixels, that is decoded.
MAX_PIXELS_ENV = "INNJAX_MAX_IMAGE_PIXELS"


class ImageTooLargeError(errors.DataError):
  """An image with more pixels than Pillow's decompression-bomb limit."""


def _apply_pixel_limit() -> None:
  """Sets Pillow's limit from ``$INNJAX_MAX_IMAGE_PIXELS`` when it is set (0 = none).

  Pillow refuses images over twice ``Image.MAX_IMAGE_PIXELS`` (89.5 Mpx) with an
  error and warns over it; a trusted larger image needs the limit raised.
  """
  value = os.environ.get(MAX_PIXELS_ENV, "").strip()
  if not value:
    return
  try:
    limit = int(value)
  except ValueError:
    raise errors.ConfigError(
      f"{MAX_PIXELS_ENV}={value!r} must be a whole number of pixels (0 = no limit)"
    ) from None
  Image.MAX_IMAGE_PIXELS = limit if limit > 0 else None


def _read_uint8(path: Union[str, os.PathLike], channels: int) -> np.ndarray:
  """Decode one file fully; errors are OSError/ValueError from PIL or ours."""
  _apply_pixel_limit()
  try:
    with Image.open(path) as pil:
      pil.load()  # decode now so truncated data raises here, not later
      # Honour camera EXIF orientation so photos are upright.
      pil = ImageOps.exif_transpose(pil)
      return _pil_to_uint8(pil, channels)
  except Image.DecompressionBombError as err:
    raise ImageTooLargeError(
      f"image {str(path)!r} is too large to decode: {err} Pillow refuses images "
      "this large as a guard against decompression bombs; if you trust the file, "
      f"set the environment variable {MAX_PIXELS_ENV} to at least its number of "
      f"pixels (0 = no limit), e.g. `{MAX_PIXELS_ENV}=0 python main.py ...`, or "
      "shrink the image"
    ) from None


def load_image_uint8(path: Union[str, os.PathLike], channels: int = 3) -> np.ndarray:
  """Loads one image file as uint8 HWC (texture exemplars, style, content).

  Args:
    path: any image file Pillow can read (PNG, JPEG, BMP, WebP, TIFF, ...).
    channels: 3 (RGB) or 1 (gray, ITU-R 601-2 luma). Transparency is
      composited on white; 16-bit images are scaled to 8 bit.

  Returns:
    ``np.uint8`` array of shape ``(H, W, channels)``.

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: the file is not a readable image (unsupported format,
      corrupt or truncated), or ``channels`` is not 1 or 3.
  """
  path = pathlib.Path(path)
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels!r}")
  if not path.is_file():
    raise errors.DataNotFoundError(f"image file not found: {str(path)!r}")
  try:
    return _read_uint8(path, channels)
  except ImageTooLargeError:
    raise
  except Image.UnidentifiedImageError as err:
    raise errors.DataError(
      f"{str(path)!r} is not an image format Pillow can read "
      f"(supported: PNG, JPEG, BMP, WebP, TIFF, ...)"
    ) from err
  except (OSError, SyntaxError, ValueError) as err:
    # PIL reports truncation/corruption as OSError or SyntaxError.
    raise errors.DataError(
      f"cannot decode image {str(path)!r} (corrupt or truncated?): {err}"
    ) from err


def load_image(path: Union[str, os.PathLike], channels: int = 3) -> np.ndarray:
  """Loads one image file as float32 HWC in ``[-1, 1]``.

  Args:
    path: image file, see :func:`load_image_uint8`.
    channels: 3 (RGB) or 1 (gray).

  Returns:
    ``np.float32`` array of shape ``(H, W, channels)`` equal to
    ``to_float(load_image_uint8(path, channels))``.

  Raises:
    FileNotFoundError, ValueError: as :func:`load_image_uint8`.
  """
  return to_float(load_image_uint8(path, channels))


def fingerprint(
  num_images: int, take: Callable[[np.ndarray], np.ndarray], samples: int = 64
) -> dict:
  """A fingerprint of a dataset's content, stored with checkpoints to notice new data.

  It depends on the pixels and the order of the images, not on where they were
  read from, so a dataset that moved keeps its fingerprint.

  Args:
    num_images: the number of images N.
    take: maps an int array of indices in [0, N) to those images (uint8 NHWC), e.g.
      ``lambda idx: images[idx]``; a multi-host run gathers them from every host.
    samples: how many images, evenly spaced over the dataset, go into the hash.

  Returns:
    ``{'num_images', 'image_shape', 'dtype', 'sha256'}``: the hash (16 hex digits)
    covers the shape, the dtype and the sampled images.
  """
  indices = np.unique(
    np.linspace(0, max(num_images - 1, 0), min(samples, num_images))
    .round()
    .astype(np.int32)
  )
  picked = np.ascontiguousarray(take(indices))
  digest = hashlib.sha256(
    repr((num_images, picked.shape[1:], str(picked.dtype))).encode()
  )
  digest.update(indices.tobytes())
  digest.update(picked.tobytes())
  return {
    "num_images": int(num_images),
    "image_shape": [int(d) for d in picked.shape[1:]],
    "dtype": str(picked.dtype),
    "sha256": digest.hexdigest()[:16],
  }


def fingerprint_change(saved: dict, current: dict) -> Optional[str]:
  """How the dataset of fingerprint `current` differs from that of `saved`, or None."""
  if saved.get("sha256") == current.get("sha256"):
    return None

  def describe(fp: dict) -> str:
    shape = "x".join(str(d) for d in fp.get("image_shape", ()))
    return f"{fp.get('num_images')} {fp.get('dtype')} images of {shape}"

  if describe(saved) != describe(current):
    return f"{describe(saved)} then, {describe(current)} now"
  return f"{describe(current)} as before, but other pixels or another order"


# ----------------------------------------------------------------------------
# Config handling and sharding.


def _get(cfg: Any, key: str, default: Any) -> Any:
  """``cfg.get(key, default)`` that also maps ``None`` to the default."""
  value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
  return default if value is None else value


def _shard_range(n: int, process_index: int, process_count: int) -> tuple[int, int]:
  """Contiguous [start, end) of ``n`` items for one process (as tfds.even_splits)."""
  if not 0 <= process_index < process_count:
    raise ValueError(
      f"process_index={process_index} not in [0, process_count={process_count})"
    )
  return (n * process_index) // process_count, (n * (process_index + 1)) // process_count


def _resolve_path(cfg: Any, split: Optional[str], source: str) -> pathlib.Path:
  """``path`` with an optional ``{split}`` placeholder filled in."""
  path = str(_get(cfg, "path", ""))  # load_dataset has checked that it is given
  config_split = _get(cfg, "split", "") or "train"
  if "{split}" in path:
    return pathlib.Path(path.format(split=split or config_split)).expanduser()
  if split not in (None, "train", config_split):
    # Returning the training images for an evaluation split would give
    # silently optimistic numbers; make the caller say where 'test' lives.
    raise errors.ConfigError(
      f"source {source!r} at {path!r} has a single split, but split={split!r} was requested; "
      "put a '{split}' placeholder in data_config.path (e.g. 'data/{split}.npz') "
      "to provide one file or folder per split"
    )
  return pathlib.Path(path).expanduser()


# ----------------------------------------------------------------------------
# Sources.


def _load_folder(
  cfg: Any, split: Optional[str], process_index: int, process_count: int
) -> Dataset:
  folder = _resolve_path(cfg, split, "folder")
  image_size, channels = int(cfg.image_size), int(_get(cfg, "channels", 3))
  allow_upscale = bool(_get(cfg, "allow_upscale", False))
  max_examples = int(_get(cfg, "max_examples", 0))
  crop_size = int(_get(cfg, "crop_size", 0))
  looked_for = f"{'/'.join(FOLDER_EXTENSIONS)} files (recursive, any case)"
  if not folder.is_dir():
    raise errors.DataNotFoundError(
      f"image folder {str(folder)!r} does not exist or is not a directory "
      f"(looked for {looked_for})"
    )
  # Sorted relative POSIX paths: the same order on every OS and filesystem,
  # so indices (and hence PRNG-drawn batches) are reproducible.
  candidates = sorted(
    (p for p in folder.rglob("*") if p.suffix.lower() in FOLDER_EXTENSIONS),
    key=lambda p: p.relative_to(folder).as_posix(),
  )
  files = [p for p in candidates if p.is_file()]
  for path in candidates:
    if path.is_symlink() and not path.is_file():  # is_file() is False for these
      _warn_skipped(
        path, "a symbolic link whose target is missing or loops back on itself"
      )
  if not files:
    raise errors.DataError(f"image folder {str(folder)!r} contains no {looked_for}")
  start, end = _shard_range(len(files), process_index, process_count)
  files = files[start:end]
  if max_examples > 0:
    # Corrupt files are skipped below, so this can return slightly fewer
    # than max_examples; taking a prefix keeps it cheap and deterministic.
    files = files[:max_examples]

  def read(path: pathlib.Path) -> Union[np.ndarray, str]:
    try:
      image = _read_uint8(path, channels)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
      return f"{type(err).__name__}: {err}"  # reported by the caller
    return _fit(image, image_size, allow_upscale, f"image file {str(path)!r}", crop_size)

  # PIL decoders release the GIL, so threads give a real speed-up; map()
  # keeps file order. Warnings are issued from this thread afterwards
  # because warning capture is not thread-safe.
  workers = max(1, min(8, os.cpu_count() or 1))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    results = list(pool.map(read, files))
  images = []
  for path, result in zip(files, results):
    if isinstance(result, str):
      _warn_skipped(path, result)
    else:
      images.append(result)
  if not images:
    raise errors.DataError(
      f"image folder {str(folder)!r}: none of the {len(files)} {looked_for} "
      "could be decoded (see the warnings)"
    )
  return Dataset(np.stack(images), None, folder.name or str(folder))


def _warn_skipped(path: pathlib.Path, why: str) -> None:
  """Says (as a warning and in the log) that a file of an image folder is skipped."""
  warnings.warn(f"skipping unreadable image {str(path)!r} ({why})", stacklevel=4)
  logging.warning("skipping unreadable image %s (%s)", path, why)


def _npz_to_uint8(x: np.ndarray, value_range: str, where: str) -> np.ndarray:
  """uint8/uint16/int/float pixel array -> uint8, per the documented rules."""
  if x.dtype == np.uint8:
    return x
  if x.dtype == np.uint16:
    return np.clip(np.round(x / 257.0), 0, 255).astype(np.uint8)
  if x.dtype == np.bool_:
    return x.astype(np.uint8) * np.uint8(255)
  if np.issubdtype(x.dtype, np.integer):
    if x.size and (x.min() < 0 or x.max() > 255):
      raise errors.DataError(
        f"{where}: integer images must lie in [0, 255], got [{x.min()}, {x.max()}]"
      )
    return x.astype(np.uint8)
  if not np.issubdtype(x.dtype, np.floating):
    raise errors.DataError(f"{where}: unsupported image dtype {x.dtype}")
  lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
  if not np.isfinite([lo, hi]).all():
    raise errors.DataError(f"{where}: images contain NaN or inf")
  if value_range == "auto":
    # Any negative value means [-1, 1]; otherwise [0, 1]. (A [-1, 1]
    # array without a single negative pixel is implausible; override with
    # value_range='[-1,1]' if you have one.)
    value_range = "[-1,1]" if lo < 0 else "[0,1]"
  tol = 1e-6
  if value_range == "[0,1]":
    if lo < -tol or hi > 1 + tol:
      raise errors.DataError(f"{where}: float images outside [0, 1]: [{lo}, {hi}]")
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
  if value_range == "[-1,1]":
    if lo < -1 - tol or hi > 1 + tol:
      raise errors.DataError(
        f"{where}: float images outside [-1, 1]: [{lo}, {hi}] "
        "(0-255 floats are not accepted: store uint8)"
      )
    return to_uint8(x)
  raise ValueError(
    f"value_range must be 'auto', '[0,1]' or '[-1,1]', got {value_range!r}"
  )


def _read_npz(path: pathlib.Path, where: str) -> tuple:
  """(images key, images, labels key, labels or None) of an .npz, errors naming the file."""
  save_hint = "save the images with np.savez(path, x=images_uint8_nhwc, y=labels)"
  try:
    npz = np.load(path, allow_pickle=False)
  except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
    # numpy takes any file that is neither a zip nor an .npy for a pickle and says
    # only "allow_pickle", which never loads here (pickles run code).
    raise errors.DataError(
      f"{where} is not a NumPy .npz archive ({type(err).__name__}); {save_hint}"
    ) from None
  if not isinstance(npz, np.lib.npyio.NpzFile):
    raise errors.DataError(
      f"{where} holds a single .npy array, not an .npz archive; {save_hint}"
    )
  with npz:
    keys = list(npz.keys())
    x_key = next((k for k in ("x", "images") if k in npz), None)
    if x_key is None:
      raise errors.DataError(f"{where} has no 'x' or 'images' array (keys: {keys})")
    y_key = next((k for k in ("y", "labels") if k in npz), None)
    arrays = []
    for key in (x_key, y_key):
      try:
        arrays.append(npz[key] if key is not None else None)
      except ValueError as err:  # object arrays: pickled Python objects
        raise errors.DataError(
          f"{where}: '{key}' is an object array (pickled Python "
          f"objects), which is not loaded because unpickling can run "
          f"code; {save_hint} with numeric arrays"
        ) from err
  return x_key, arrays[0], y_key, arrays[1]


def _npz_images_nhwc(x: np.ndarray, x_key: str, where: str) -> np.ndarray:
  """An .npz's image array as NHWC, refusing shapes that would be misread."""
  if x.ndim == 3 and x.shape[-1] <= 4:
    # (64, 64, 3) is one HWC image: read as NHW gray it would be 64 strips of 64x3.
    raise errors.DataError(
      f"{where}: '{x_key}' has shape {x.shape}, one HWC image rather than a stack "
      f"of images; save it with a leading image axis (np.savez(path, {x_key}="
      f"image[None]), shape {(1,) + x.shape}), or use it as a texture exemplar with "
      "data.source='image' and data.image=<an image file>"
    )
  if x.ndim == 3:  # NHW gray
    x = x[..., None]
  if x.ndim != 4 or x.shape[-1] not in (1, 2, 3, 4):
    raise errors.DataError(
      f"{where}: '{x_key}' must be NHWC (C in 1-4) or NHW, got shape {x.shape}"
      + (
        "; it looks NCHW, transpose to NHWC"
        if x.ndim == 4 and x.shape[1] in (1, 3)
        else ""
      )
    )
  if x.shape[0] == 0:
    raise errors.DataError(f"{where}: '{x_key}' holds no images (shape {x.shape})")
  return x


def _npz_labels(y: np.ndarray, y_key: str, num_images: int, where: str) -> np.ndarray:
  """An .npz's labels as int64 (N,): one class per image."""
  if y.ndim == 2 and y.shape[1] == 1:
    y = y[:, 0]
  if y.ndim != 1:
    raise errors.DataError(
      f"{where}: '{y_key}' has shape {y.shape}; labels are one integer class per "
      f"image, shape ({num_images},)"
      + (f" (one-hot labels: save {y_key}.argmax(axis=1))" if y.ndim == 2 else "")
    )
  if y.shape[0] != num_images:
    raise errors.DataError(f"{where}: {len(y)} labels for {num_images} images")
  return y.astype(np.int64)


def _load_npz(
  cfg: Any, split: Optional[str], process_index: int, process_count: int
) -> Dataset:
  path = _resolve_path(cfg, split, "npz")
  image_size, channels = int(cfg.image_size), int(_get(cfg, "channels", 3))
  allow_upscale = bool(_get(cfg, "allow_upscale", False))
  max_examples = int(_get(cfg, "max_examples", 0))
  if not path.is_file():
    raise errors.DataNotFoundError(f"npz file {str(path)!r} not found")
  where = f"npz file {str(path)!r}"
  x_key, x, y_key, y = _read_npz(path, where)
  x = _npz_images_nhwc(x, x_key, where)
  if y is not None:
    y = _npz_labels(y, y_key, x.shape[0], where)
  start, end = _shard_range(x.shape[0], process_index, process_count)
  if max_examples > 0:
    end = min(end, start + max_examples)
  x = _npz_to_uint8(x[start:end], str(_get(cfg, "value_range", "auto")), where)
  y = y[start:end] if y is not None else None
  images = np.empty((x.shape[0], image_size, image_size, channels), np.uint8)
  for i in range(x.shape[0]):
    images[i] = _fit(
      _convert_channels(x[i], channels),
      image_size,
      allow_upscale,
      f"{where}, image {start + i}",
    )
  return Dataset(images, y, path.stem)


def _load_skimage(
  cfg: Any, split: Optional[str], process_index: int, process_count: int
) -> Dataset:
  import skimage.data  # pylint: disable=g-import-not-at-top  (optional dependency)

  name = str(_get(cfg, "name", "brick"))
  image_size, channels = int(cfg.image_size), int(_get(cfg, "channels", 3))
  num_crops = int(_get(cfg, "num_crops", 1000))
  crop_scale = float(_get(cfg, "crop_scale", 1.0))
  seed = int(_get(cfg, "seed", 0))
  max_examples = int(_get(cfg, "max_examples", 0))
  if split not in (None, "train", _get(cfg, "split", "train")):
    raise errors.ConfigError(f"source 'skimage' has a single split; got split={split!r}")
  image = np.asarray(getattr(skimage.data, name)())
  image = (
    (image.astype(np.uint8) * 255) if image.dtype == np.bool_ else image.astype(np.uint8)
  )
  image = _convert_channels(image, channels)
  h, w = image.shape[:2]
  sh, sw = max(1, round(h * crop_scale)), max(1, round(w * crop_scale))
  # Downscale first so that an image_size crop covers a larger part of the
  # scene (e.g. several bricks at 0.25), as a texture patch should.
  image = resize(image, (sh, sw))
  if min(sh, sw) < image_size:
    raise errors.ConfigError(
      f"skimage {name!r} downscaled by crop_scale={crop_scale} is {sh}x{sw}, "
      f"smaller than image_size={image_size}; raise crop_scale"
    )
  rng = np.random.default_rng(seed)  # crops depend on the seed only
  tops = rng.integers(0, sh - image_size + 1, size=num_crops)
  lefts = rng.integers(0, sw - image_size + 1, size=num_crops)
  start, end = _shard_range(num_crops, process_index, process_count)
  if max_examples > 0:
    end = min(end, start + max_examples)
  crops = np.stack(
    [
      image[t : t + image_size, l : l + image_size]
      for t, l in zip(tops[start:end], lefts[start:end])
    ]
  )
  return Dataset(crops, None, f"skimage_{name}")


def load_named_image(spec: str, channels: int = 3) -> np.ndarray:
  """Loads an image given as a file path or as the name of a bundled scikit-image image.

  Texture exemplars, style images and content images are all given this way, so
  ``brick`` or ``astronaut`` work offline with nothing to download.

  Args:
    spec: a path to an image file, or one of ``SKIMAGE_IMAGES`` (e.g. 'brick').
    channels: 1 or 3.

  Returns:
    ``np.uint8`` array of shape ``(H, W, channels)``.
  """
  spec = str(spec)
  if not spec:
    raise errors.ConfigError(
      "no image given: pass a file path or one of the bundled "
      f"scikit-image images ({', '.join(SKIMAGE_IMAGES)})"
    )
  if spec in SKIMAGE_IMAGES and not os.path.exists(spec):
    import skimage.data  # pylint: disable=g-import-not-at-top  (optional dependency)

    image = np.asarray(getattr(skimage.data, spec)())
    image = (
      (image.astype(np.uint8) * 255)
      if image.dtype == np.bool_
      else image.astype(np.uint8)
    )
    return _convert_channels(image, channels)
  if not os.path.exists(spec):
    raise errors.DataNotFoundError(
      f"image {spec!r} not found: give an existing file or one of the bundled "
      f"scikit-image images ({', '.join(SKIMAGE_IMAGES)})"
    )
  return load_image_uint8(spec, channels)


def _load_exemplar(
  cfg: Any, split: Optional[str], process_index: int, process_count: int
) -> Dataset:
  """One texture/style exemplar (``cfg.image``), center-cropped and resized to image_size.

  Every host loads the same image: the patch head cuts its training patches from it.
  """
  del split, process_index, process_count  # one image, shared by every host
  spec = str(_get(cfg, "image", ""))
  image_size, channels = int(cfg.image_size), int(_get(cfg, "channels", 3))
  image = load_named_image(spec, channels)
  image = _fit(
    image, image_size, bool(_get(cfg, "allow_upscale", False)), f"image {spec!r}"
  )
  return Dataset(image[None], None, pathlib.Path(spec).stem)


# ----------------------------------------------------------------------------
# TensorFlow Datasets.


def _hide_accelerators_from_tf() -> None:
  """Keeps TensorFlow (if it is loaded) off GPUs/TPUs, which belong to JAX.

  TensorFlow is only imported by tfds' ``tfds.load`` path; the
  ``tfds.data_source`` path never imports it, so nothing is done (and no
  multi-second import paid) unless it is already loaded or about to be.
  """
  tf = sys.modules.get("tensorflow")
  if tf is None:
    return
  for kind in ("GPU", "TPU"):
    try:
      tf.config.set_visible_devices([], kind)
    except (
      RuntimeError,
      ValueError,
    ) as err:  # devices already initialised / unknown kind
      logging.debug("could not hide %s from TensorFlow: %s", kind, err)


def _tfds_unknown(name: str) -> errors.ConfigError:
  supported = "\n".join(f"  {k}: {s.note}" for k, s in TFDS_DATASETS.items())
  return errors.ConfigError(
    f"tfds does not know a dataset named {name!r}. Supported datasets:\n{supported}\n"
    "Other image datasets that tfds knows are read generically (center square crop, resize); "
    "see tfds.list_builders() for the names. For your own images use "
    "data_config.source='folder' or 'npz'; for an offline default use source='skimage'."
  )


def _not_prepared(
  name: str, split: Any, data_dir: Optional[str], err: BaseException
) -> DatasetNotPreparedError:
  where = (
    repr(data_dir)
    if data_dir
    else "the default tfds data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
  )
  return DatasetNotPreparedError(
    f"tfds dataset {name!r} (split {split}) is not downloaded/prepared in {where}. "
    f"Prepare it once on a machine with internet access, e.g. "
    f"`tfds build {name} --file_format=array_record --data_dir=DIR` "
    "(array_record is read without TensorFlow), or run once with data_config.download=True; "
    "then point data_config.data_dir (or $TFDS_DATA_DIR) at DIR. "
    f"Underlying error: {type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"
  )


def _tfds_process(
  spec: Optional[_TfdsSpec], image_size: int, channels: int, allow_upscale: bool
) -> Callable[[np.ndarray, str], np.ndarray]:
  """Per-image transform for a tfds dataset: channels, crop, pad/resize."""

  def process(image: np.ndarray, where: str) -> np.ndarray:
    image = _convert_channels(np.asarray(image, dtype=np.uint8), channels)
    if spec is not None and spec.center_crop:
      image = center_crop(image, min(spec.center_crop, *image.shape[:2]))
    if spec is not None and spec.pad_small:
      return _pad_or_fit(image, image_size, allow_upscale, where)
    return _fit(image, image_size, allow_upscale, where)

  return process


def _read_data_source(source: Any, n: int, process: Callable, name: str):
  """Reads the first ``n`` records of a ``tfds.data_source`` in chunks."""
  images, labels = None, None
  chunk, batched = 1024, hasattr(source, "__getitems__")
  for start in range(0, n, chunk):
    keys = list(range(start, min(n, start + chunk)))
    records = None
    if batched:
      try:
        records = source.__getitems__(keys)  # one bulk ArrayRecord read
      except TypeError:
        # tfds 4.9.10's mock_data patches __getitems__ with a broken
        # signature; per-record reads are equivalent, just slower.
        batched = False
    if records is None:
      records = [source[k] for k in keys]
    for k, ex in zip(keys, records):
      if images is None:
        first = process(ex["image"], f"{name}[0]")
        images = np.empty((n,) + first.shape, np.uint8)
        labels = np.empty((n,), np.int64) if "label" in ex else None
      images[k] = process(ex["image"], f"{name}[{k}]")
      if labels is not None:
        labels[k] = ex["label"]
  return images, labels


def _read_tf_dataset(ds: Any, process: Callable, name: str, tfds: Any):
  """Reads a ``tf.data.Dataset`` of tfds examples (the TFRecord fallback)."""
  keep = [k for k in ("image", "label") if k in ds.element_spec]
  ds = ds.map(lambda ex: {k: ex[k] for k in keep})
  batched = ds.element_spec["image"].shape.is_fully_defined()
  if batched:  # fixed-size images: batch to cut per-example Python overhead
    ds = ds.batch(1024)
  images, labels, i = [], [], 0
  for ex in tfds.as_numpy(ds):
    batch = ex["image"] if batched else ex["image"][None]
    for image in batch:
      images.append(process(image, f"{name}[{i}]"))
      i += 1
    if "label" in ex:
      labels.extend(np.atleast_1d(ex["label"]).tolist())
  if not images:
    return None, None
  return np.stack(images), (np.asarray(labels, np.int64) if "label" in keep else None)


def _load_tfds(
  cfg: Any, split: Optional[str], process_index: int, process_count: int
) -> Dataset:
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as err:
    raise errors.MissingDependencyError(
      "data_config.source='tfds' needs tensorflow-datasets "
      "(pip install tensorflow-datasets importlib_resources)"
    ) from err
  name = str(_get(cfg, "name", ""))
  base = name.split(":")[0].split("/")[0]
  spec = TFDS_DATASETS.get(base)
  data_dir = _get(cfg, "data_dir", None) or None
  download = bool(_get(cfg, "download", True))
  reader = str(_get(cfg, "reader", "auto"))
  image_size, channels = int(cfg.image_size), int(_get(cfg, "channels", 3))
  allow_upscale = bool(_get(cfg, "allow_upscale", False))
  max_examples = int(_get(cfg, "max_examples", 0))
  split = split or _get(cfg, "split", "") or (spec.default_split if spec else "train")

  try:  # validates the name without touching the data
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise _tfds_unknown(name) from None
  if "image" not in builder.info.features:
    raise errors.ConfigError(
      f'tfds dataset {name!r} has no "image" feature; cannot use it as images'
    )
  if spec is None:
    logging.warning(
      "tfds dataset %r is not one of %s; reading it generically "
      "(center square crop, resize to %d)",
      name,
      sorted(TFDS_DATASETS),
      image_size,
    )

  read_split: Any = split
  if process_count > 1:  # each host reads only its own contiguous slice
    _shard_range(0, process_index, process_count)  # validates the indices
    read_split = tfds.even_splits(split, n=process_count)[process_index]
  process = _tfds_process(spec, image_size, channels, allow_upscale)
  label = f"{name}[{split}]"
  _hide_accelerators_from_tf()

  images = labels = None
  done = False
  if reader in ("auto", "data_source"):
    try:
      source = tfds.data_source(
        name, split=read_split, data_dir=data_dir, download=download
      )
    except Exception as err:  # pylint: disable=broad-except
      # Typical: not prepared (offline download failure), or prepared as
      # TFRecord, which data_source cannot read -> tfds.load below.
      if not _is_prepared(tfds, name, data_dir):
        raise _not_prepared(name, split, data_dir, err) from err
      if reader == "data_source":
        raise
      logging.info(
        "tfds.data_source(%r) failed (%s); falling back to tfds.load", name, err
      )
    else:
      n = len(source) if max_examples <= 0 else min(len(source), max_examples)
      images, labels = _read_data_source(source, n, process, label)
      done = True
  if not done:
    try:
      import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError as err:
      raise errors.MissingDependencyError(
        f"tfds dataset {name!r} is stored as TFRecord, which needs TensorFlow to read "
        "(pip install tensorflow-cpu), or re-prepare it with "
        f"`tfds build {name} --file_format=array_record`"
      ) from err
    _hide_accelerators_from_tf()
    try:
      ds = tfds.load(
        name, split=read_split, data_dir=data_dir, download=download, shuffle_files=False
      )
    except Exception as err:  # pylint: disable=broad-except
      if not _is_prepared(tfds, name, data_dir):
        raise _not_prepared(name, split, data_dir, err) from err
      raise
    if max_examples > 0:
      ds = ds.take(max_examples)
    images, labels = _read_tf_dataset(ds, process, label, tfds)
  if images is None or images.shape[0] == 0:
    raise errors.DataError(f"tfds dataset {name!r} split {read_split} is empty")
  return Dataset(images, labels, base)


def _is_prepared(tfds: Any, name: str, data_dir: Optional[str]) -> bool:
  try:
    return bool(tfds.builder(name, data_dir=data_dir).is_prepared())
  except Exception:  # pylint: disable=broad-except
    return False


# ----------------------------------------------------------------------------
# Entry point.

_LOADERS = {
  "tfds": _load_tfds,
  "folder": _load_folder,
  "npz": _load_npz,
  "skimage": _load_skimage,
  "image": _load_exemplar,
}


def load_dataset(
  data_config: Any,
  split: Optional[str] = None,
  *,
  process_index: int = 0,
  process_count: int = 1,
) -> Dataset:
  """Loads a whole dataset split (this process's share) into host memory.

  Args:
    data_config: ``ml_collections.ConfigDict`` (or dict). Keys: ``source``
      ('tfds' | 'folder' | 'npz' | 'skimage' | 'image'); ``name`` (tfds
      dataset or skimage image); ``image`` (source 'image': one exemplar, a file
      path or a bundled skimage name, center-cropped and resized to image_size); ``split`` (tfds split; default per dataset, e.g.
      'train+extra' for svhn_cropped); ``data_dir`` (tfds data_dir or None);
      ``path`` (folder or .npz; may contain '{split}'); ``image_size`` (square
      output side); ``channels`` (1 or 3); ``max_examples`` (0 = all);
      ``num_crops``, ``crop_scale`` (skimage); ``seed``. ``max_examples``
      caps this process's share (after the multi-host split). Optional:
      ``allow_upscale`` (False), ``download`` (tfds, True), ``reader``
      (tfds: 'auto' | 'data_source' | 'tf'), ``value_range`` (npz floats:
      'auto' | '[0,1]' | '[-1,1]').
    split: overrides ``data_config.split`` (evaluation asks for 'test').
    process_index: this host's index, for multi-host runs.
    process_count: number of hosts; each reads a contiguous
      ``1/process_count`` slice (``tfds.even_splits`` for tfds).

  Returns:
    A :class:`Dataset` with ``images`` uint8 ``(N, image_size, image_size,
    channels)`` and ``labels`` int64 ``(N,)`` or None.

  Raises:
    ConfigError: unknown source, dataset name or option (innjax.config_checks).
    DataNotFoundError: a missing file or folder, or a tfds dataset that is not
      downloaded (DatasetNotPreparedError).
    DataError: an empty folder, images smaller than ``image_size``, bad npz contents.
    (All three are ValueErrors; DataNotFoundError is also a FileNotFoundError.)
  """
  config_checks.check_data_config(data_config)
  source = str(_get(data_config, "source", ""))
  dataset = _LOADERS[source](data_config, split, process_index, process_count)
  if dataset.num_examples == 0:
    # Training would fail much later, inside a jitted gather, with no hint.
    raise errors.DataError(
      f"data source {source!r} ({dataset.name}) gave no images for "
      f"process {process_index} of {process_count}; check data.path, "
      "data.max_examples and the split"
    )
  logging.info(
    "loaded %s (%s, split=%s): images %s, labels %s",
    dataset.name,
    source,
    split or _get(data_config, "split", None),
    dataset.images.shape,
    None if dataset.labels is None else dataset.labels.shape,
  )
  return dataset
