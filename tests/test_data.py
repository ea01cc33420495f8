"""Tests for innjax.data: every source, the value-range mapping and single images.

tfds datasets are read through the real tfds code path under
``tfds.testing.mock_data`` (no download); folder/npz tests write real PNG,
JPEG, BMP and WebP files into ``tmp_path``; the skimage source uses images
bundled in scikit-image's wheel. Tests on the real images in
``../shared/data`` skip when that folder is absent.
"""

import io
import pathlib
import warnings

import ml_collections
import numpy as np
import pytest
from PIL import Image

from innjax import data as D

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_config(**overrides):
  """A data config with every documented key, overridden per test."""
  cfg = dict(
    source="tfds",
    name="svhn_cropped",
    split="",
    data_dir="",
    path="",
    image_size=32,
    channels=3,
    max_examples=0,
    num_crops=16,
    crop_scale=0.25,
    seed=0,
  )
  cfg.update(overrides)
  return ml_collections.ConfigDict(cfg)


@pytest.fixture(name="tfds")
def fixture_tfds():
  return pytest.importorskip(
    "tensorflow_datasets",
    reason="tensorflow-datasets is not importable; tfds tests need it",
  )


def spy_data_source(monkeypatch, tfds):
  """Wraps the real tfds.data_source to record the split it was asked for."""
  calls = []
  real = tfds.data_source

  def spy(name, *args, **kwargs):
    calls.append((name, kwargs.get("split")))
    return real(name, *args, **kwargs)

  monkeypatch.setattr(tfds, "data_source", spy)
  return calls


# ----------------------------------------------------------------------------
# tfds


def test_svhn_mock_uint8_labels_and_train_extra_default(tfds, monkeypatch):
  calls = spy_data_source(monkeypatch, tfds)
  with tfds.testing.mock_data(num_examples=12):
    ds = D.load_dataset(make_config())
    test = D.load_dataset(make_config(split="train+extra"), split="test")
  assert ds.images.dtype == np.uint8 and ds.images.shape == (12, 32, 32, 3)
  assert ds.labels.dtype == np.int64 and ds.labels.shape == (12,)
  assert ds.labels.min() >= 0 and ds.labels.max() < 10
  assert ds.images.std() > 10  # real (random mock) pixels, not a zero buffer
  assert ds.name == "svhn_cropped"
  # The paper trains on train+extra; the split argument overrides the config.
  assert calls == [("svhn_cropped", "train+extra"), ("svhn_cropped", "test")]
  assert test.images.shape == (12, 32, 32, 3)


def test_svhn_max_examples_and_multihost_split(tfds, monkeypatch):
  calls = spy_data_source(monkeypatch, tfds)
  with tfds.testing.mock_data(num_examples=10):
    ds = D.load_dataset(make_config(max_examples=4), process_index=1, process_count=2)
  assert ds.images.shape == (4, 32, 32, 3)
  ((_, split),) = calls
  assert split == tfds.even_splits("train+extra", n=2)[1]


def test_celeb_a_mock_is_center_64_crop(tfds):
  with tfds.testing.mock_data(num_examples=3):
    raw = tfds.data_source("celeb_a", split="train")
    raw_images = [np.asarray(raw[i]["image"]) for i in range(3)]
    ds64 = D.load_dataset(make_config(name="celeb_a", image_size=64))
    ds32 = D.load_dataset(make_config(name="celeb_a", image_size=32))
  assert raw_images[0].shape == (218, 178, 3)
  assert ds64.images.shape == (3, 64, 64, 3) and ds64.labels is None
  top, left = (218 - 64) // 2, (178 - 64) // 2
  for i in range(3):
    np.testing.assert_array_equal(
      ds64.images[i], raw_images[i][top : top + 64, left : left + 64]
    )
    np.testing.assert_array_equal(ds32.images[i], D.resize(ds64.images[i], 32))


def test_cifar10_and_mnist_shapes_channels(tfds):
  with tfds.testing.mock_data(num_examples=5):
    cifar = D.load_dataset(make_config(name="cifar10"))
    cifar_gray = D.load_dataset(make_config(name="cifar10", channels=1))
    raw_mnist = np.asarray(tfds.data_source("mnist", split="train")[0]["image"])
    mnist1 = D.load_dataset(make_config(name="mnist", channels=1))
    mnist3 = D.load_dataset(make_config(name="mnist", channels=3))
    mnist16 = D.load_dataset(make_config(name="mnist", channels=1, image_size=16))
  assert cifar.images.shape == (5, 32, 32, 3) and cifar.labels.shape == (5,)
  np.testing.assert_array_equal(
    cifar_gray.images[..., 0],
    np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in cifar.images]),
  )
  assert raw_mnist.shape == (28, 28, 1)
  assert mnist1.images.shape == (5, 32, 32, 1) and mnist1.labels.dtype == np.int64
  # 28 -> 32 by zero padding: the digit's pixels are kept exactly.
  np.testing.assert_array_equal(mnist1.images[0, 2:30, 2:30], raw_mnist)
  assert mnist1.images[:, :2].max() == 0 and mnist1.images[:, :, 30:].max() == 0
  assert mnist3.images.shape == (5, 32, 32, 3)
  np.testing.assert_array_equal(mnist3.images, np.repeat(mnist1.images, 3, axis=-1))
  assert mnist16.images.shape == (5, 16, 16, 1)


def test_tfds_load_fallback_reader(tfds):
  pytest.importorskip(
    "tensorflow", reason="TensorFlow not installed; the tfds.load fallback needs it"
  )
  with tfds.testing.mock_data(num_examples=4):
    via_tf = D.load_dataset(make_config(reader="tf", name="celeb_a", image_size=64))
    via_ds = D.load_dataset(make_config(reader="tf", max_examples=3))
  assert via_tf.images.shape == (4, 64, 64, 3) and via_tf.images.dtype == np.uint8
  assert via_ds.images.shape == (3, 32, 32, 3) and via_ds.labels.shape == (3,)
  import tensorflow as tf

  assert tf.config.get_visible_devices("GPU") == []


def test_unknown_tfds_name_lists_supported(tfds):
  with pytest.raises(ValueError) as info:
    D.load_dataset(make_config(name="not_a_real_dataset_xyz"))
  msg = str(info.value)
  for name in (
    "svhn_cropped",
    "celeb_a",
    "cifar10",
    "mnist",
    "list_builders",
    "not_a_real_dataset_xyz",
  ):
    assert name in msg


def test_tfds_not_prepared_gives_instructions(tfds, tmp_path):
  with pytest.raises(D.DatasetNotPreparedError) as info:
    D.load_dataset(make_config(name="mnist", data_dir=str(tmp_path), download=False))
  msg = str(info.value)
  assert "tfds build mnist" in msg and str(tmp_path) in msg and "data_dir" in msg


def test_bad_source_and_channels():
  with pytest.raises(ValueError, match="source"):
    D.load_dataset(make_config(source="ftp"))
  with pytest.raises(ValueError, match="channels"):
    D.load_dataset(make_config(source="skimage", name="brick", channels=4))


# ----------------------------------------------------------------------------
# folder


def _save(path, array, **kwargs):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path, **kwargs)


@pytest.fixture(name="image_folder")
def fixture_image_folder(tmp_path):
  root = tmp_path / "imgs"
  cols = np.tile((np.arange(48) * 5).astype(np.uint8)[None, :, None], (32, 1, 3))
  cols[..., 1] = 7
  _save(root / "a" / "rgb.png", cols)  # 32x48: center crop = columns 8..39
  _save(root / "b" / "GRAY.PNG", np.full((40, 40), 100, np.uint8))
  rgba = np.zeros((32, 32, 4), np.uint8)
  rgba[:, :16] = (255, 0, 0, 255)  # opaque red
  rgba[:, 16:] = (0, 0, 0, 0)  # fully transparent black
  _save(root / "c" / "rgba.png", rgba)
  deep = np.full((32, 32), 0x8080, np.uint16)  # 32896 -> 128, not clipped to 255
  deep[0, 0], deep[0, 1] = 65535, 0
  _save(root / "d" / "deep16.png", deep)
  assert Image.open(root / "d" / "deep16.png").mode.startswith("I;16")
  _save(
    root / "e" / "photo.JPEG", np.full((36, 36, 3), (10, 200, 30), np.uint8), quality=95
  )
  _save(root / "f" / "pic.bmp", np.full((32, 32, 3), 50, np.uint8))
  _save(root / "g" / "pic.webp", np.full((32, 32, 3), 60, np.uint8), lossless=True)
  (
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8))
    .convert("P", palette=Image.Palette.ADAPTIVE)
    .save(root / "h_pal.png")
  )
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
    buf, "JPEG"
  )
  (root / "z_truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
  (root / "notes.txt").write_text("not an image")
  return root


def test_folder_formats_modes_and_truncated_skipped(image_folder):
  with pytest.warns(UserWarning, match="z_truncated.jpg"):
    ds = D.load_dataset(make_config(source="folder", path=str(image_folder)))
  # Sorted by relative path; the truncated JPEG and the .txt are skipped.
  assert ds.images.shape == (8, 32, 32, 3) and ds.images.dtype == np.uint8
  assert ds.labels is None and ds.name == "imgs"
  rgb, gray, rgba, deep, jpeg, bmp, webp, pal = ds.images
  np.testing.assert_array_equal(rgb[0, :, 0], (np.arange(8, 40) * 5).astype(np.uint8))
  assert (rgb[..., 1] == 7).all()
  assert (
    gray == 100
  ).all()  # gray replicated to 3 channels (40 -> 32 resize of a constant)
  np.testing.assert_array_equal(rgba[:, :16], np.broadcast_to([255, 0, 0], (32, 16, 3)))
  assert (rgba[:, 16:] == 255).all()  # transparent -> composited on white
  assert (
    (deep[1:, :] == 128).all()
    and tuple(deep[0, 0]) == (255,) * 3
    and tuple(deep[0, 1]) == (0,) * 3
  )
  assert np.abs(jpeg.astype(int) - (10, 200, 30)).max() <= 3
  assert (bmp == 50).all() and (webp == 60).all() and (pal == 90).all()


def test_folder_gray_output_matches_pil_luma(image_folder):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ds = D.load_dataset(
      make_config(source="folder", path=str(image_folder), channels=1, max_examples=1)
    )
  expected = np.asarray(Image.open(image_folder / "a" / "rgb.png").convert("L"))[:, 8:40]
  assert ds.images.shape == (1, 32, 32, 1)
  np.testing.assert_array_equal(ds.images[0, ..., 0], expected)


def test_folder_errors(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "readme.txt").write_text("x")
  with pytest.raises(ValueError, match="empty.*no .*png"):
    D.load_dataset(make_config(source="folder", path=str(empty)))
  with pytest.raises(ValueError, match="does not exist"):
    D.load_dataset(make_config(source="folder", path=str(tmp_path / "missing")))
  small = tmp_path / "small"
  _save(small / "tiny.png", np.zeros((20, 24, 3), np.uint8))
  with pytest.raises(ValueError, match=r"tiny\.png.*20x24.*image_size=32"):
    D.load_dataset(make_config(source="folder", path=str(small)))
  up = D.load_dataset(make_config(source="folder", path=str(small), allow_upscale=True))
  assert up.images.shape == (1, 32, 32, 3)
  broken = tmp_path / "broken"
  broken.mkdir()
  (broken / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
  with (
    pytest.warns(UserWarning, match="bad.png"),
    pytest.raises(ValueError, match="none of the 1"),
  ):
    D.load_dataset(make_config(source="folder", path=str(broken)))


# ----------------------------------------------------------------------------
# npz


def test_npz_round_trip_and_value_ranges(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
  y = np.arange(6)
  np.savez(tmp_path / "u8.npz", x=x, y=y)
  np.savez(tmp_path / "sym.npz", images=D.to_float(x), labels=y)
  np.savez(tmp_path / "unit.npz", x=x.astype(np.float32) / 255.0)
  for name in ("u8", "sym", "unit"):
    ds = D.load_dataset(make_config(source="npz", path=str(tmp_path / f"{name}.npz")))
    np.testing.assert_array_equal(ds.images, x, err_msg=name)
    assert ds.name == name
  ds = D.load_dataset(make_config(source="npz", path=str(tmp_path / "u8.npz")))
  assert ds.labels.dtype == np.int64 and (ds.labels == y).all()
  halves = [
    D.load_dataset(
      make_config(source="npz", path=str(tmp_path / "u8.npz")),
      process_index=i,
      process_count=2,
    )
    for i in range(2)
  ]
  np.testing.assert_array_equal(np.concatenate([h.images for h in halves]), x)


def test_npz_nhw_resize_and_errors(tmp_path):
  gray = np.random.default_rng(1).integers(0, 256, (3, 40, 48), dtype=np.uint8)
  np.savez(tmp_path / "gray.npz", x=gray)
  ds = D.load_dataset(
    make_config(source="npz", path=str(tmp_path / "gray.npz"), channels=1)
  )
  assert ds.images.shape == (3, 32, 32, 1) and ds.labels is None
  np.testing.assert_array_equal(
    ds.images[0, ..., 0], D.resize(D.center_crop(gray[0]), 32)
  )
  np.savez(tmp_path / "bad_range.npz", x=np.full((2, 32, 32, 3), 3.0, np.float32))
  with pytest.raises(ValueError, match="outside"):
    D.load_dataset(make_config(source="npz", path=str(tmp_path / "bad_range.npz")))
  np.savez(tmp_path / "nokey.npz", pixels=gray)
  with pytest.raises(ValueError, match="'x' or 'images'.*pixels"):
    D.load_dataset(make_config(source="npz", path=str(tmp_path / "nokey.npz")))
  with pytest.raises(ValueError, match="smaller than image_size"):
    D.load_dataset(
      make_config(source="npz", path=str(tmp_path / "gray.npz"), image_size=64)
    )


def test_npz_split_placeholder(tmp_path):
  for i, split in enumerate(("train", "test")):
    np.savez(tmp_path / f"{split}.npz", x=np.full((2, 32, 32, 3), i, np.uint8))
  cfg = make_config(source="npz", path=str(tmp_path / "{split}.npz"))
  assert D.load_dataset(cfg).images.max() == 0
  assert D.load_dataset(cfg, split="test").images.min() == 1
  with pytest.raises(ValueError, match="placeholder"):
    D.load_dataset(
      make_config(source="npz", path=str(tmp_path / "train.npz")), split="test"
    )


# ----------------------------------------------------------------------------
# skimage


def test_skimage_default_offline_deterministic_per_seed():
  skimage = pytest.importorskip("skimage", reason="scikit-image not installed")
  # The image ships inside the wheel: no download can be involved.
  assert (pathlib.Path(skimage.__file__).parent / "data" / "brick.png").is_file()
  cfg = make_config(source="skimage", name="brick", num_crops=8, crop_scale=0.25, seed=3)
  a, b = D.load_dataset(cfg), D.load_dataset(cfg)
  c = D.load_dataset(
    make_config(source="skimage", name="brick", num_crops=8, crop_scale=0.25, seed=4)
  )
  assert (
    a.images.shape == (8, 32, 32, 3) and a.images.dtype == np.uint8 and a.labels is None
  )
  np.testing.assert_array_equal(a.images, b.images)
  assert not np.array_equal(a.images, c.images)
  # Grayscale texture replicated to 3 channels; crops differ from each other.
  assert (a.images[..., 0] == a.images[..., 2]).all()
  assert len({im.tobytes() for im in a.images}) == 8
  photo = D.load_dataset(
    make_config(source="skimage", name="astronaut", num_crops=2, channels=1)
  )
  assert photo.images.shape == (2, 32, 32, 1)
  with pytest.raises(ValueError, match="brick"):
    D.load_dataset(make_config(source="skimage", name="no_such_image"))
  with pytest.raises(ValueError, match="crop_scale"):
    D.load_dataset(make_config(source="skimage", name="brick", crop_scale=0.05))


# ----------------------------------------------------------------------------
# value range and single images


def test_to_float_to_uint8_round_trip_numpy_and_jax():
  x = np.arange(256, dtype=np.uint8).reshape(16, 16)
  f = D.to_float(x)
  assert f.dtype == np.float32 and f.min() == -1.0 and f.max() == 1.0
  np.testing.assert_array_equal(D.to_uint8(f), x)
  jax = pytest.importorskip("jax")
  fj = jax.jit(D.to_float)(jax.numpy.asarray(x))
  assert isinstance(fj, jax.Array) and fj.dtype == np.float32
  back = jax.jit(D.to_uint8)(fj)
  assert isinstance(back, jax.Array)
  np.testing.assert_array_equal(np.asarray(back), x)
  # Fixed mapping: clipped, never rescaled to the array's own range.
  np.testing.assert_array_equal(
    D.to_uint8(np.array([-3.0, -1.0, 0.0, 0.5, 2.0, np.nan])), [0, 0, 128, 191, 255, 0]
  )
  np.testing.assert_array_equal(D.to_uint8(np.array([0.0, 0.1])), [128, 140])


def test_load_image_and_errors(tmp_path):
  arr = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
  _save(tmp_path / "im.png", arr)
  img = D.load_image(tmp_path / "im.png")
  assert img.shape == (20, 30, 3) and img.dtype == np.float32
  assert img.min() >= -1 and img.max() <= 1
  np.testing.assert_array_equal(D.to_uint8(img), arr)
  gray = D.load_image_uint8(str(tmp_path / "im.png"), channels=1)
  assert gray.shape == (20, 30, 1)
  with pytest.raises(FileNotFoundError, match="nope.png"):
    D.load_image(tmp_path / "nope.png")
  (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
  with pytest.raises(ValueError, match="corrupt.png"):
    D.load_image(tmp_path / "corrupt.png")
  (tmp_path / "text.png").write_text("hello")
  with pytest.raises(ValueError, match="text.png"):
    D.load_image(tmp_path / "text.png")


def test_resize_keeps_dtype_and_range():
  rng = np.random.default_rng(0)
  u8 = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
  assert (
    D.resize(u8, (20, 25)).shape == (20, 25, 3) and D.resize(u8, 20).dtype == np.uint8
  )
  f = D.to_float(u8)
  up = D.resize(f, 64)
  assert up.shape == (64, 64, 3) and up.dtype == np.float32
  assert up.min() >= f.min() and up.max() <= f.max()  # ringing clipped
  assert D.resize(u8[..., 0], (10, 12)).shape == (10, 12)
  assert D.center_crop(u8).shape == (40, 40, 3)


# ----------------------------------------------------------------------------
# real images beside the project (skipped when absent)

needs_shared = pytest.mark.skipif(
  not SHARED_DATA.is_dir(),
  reason=f"real images not found at {SHARED_DATA} (../shared/data)",
)


@needs_shared
def test_shared_celeba_subset_as_folder():
  folder = SHARED_DATA / "celeba_subset"
  if not folder.is_dir():
    pytest.skip(f"{folder} not found")
  ds = D.load_dataset(
    make_config(source="folder", path=str(folder), image_size=64, max_examples=200)
  )
  assert ds.images.shape == (200, 64, 64, 3) and ds.images.dtype == np.uint8
  assert 40 < ds.images.mean() < 220 and ds.images.std() > 20  # real faces, not blank


@needs_shared
def test_shared_texture_load_image():
  textures = sorted((SHARED_DATA / "textures").glob("*.jpg"))
  if not textures:
    pytest.skip(f"no textures in {SHARED_DATA / 'textures'}")
  img = D.load_image(textures[0])
  assert img.ndim == 3 and img.shape[-1] == 3 and min(img.shape[:2]) >= 64
  assert (
    img.dtype == np.float32 and img.min() >= -1 and img.max() <= 1 and img.std() > 0.05
  )


def test_folder_crop_size_takes_the_central_square_before_resizing(tmp_path):
  # A 40x60 image whose central 20x20 is white and everything else black.
  image = np.zeros((40, 60, 3), np.uint8)
  image[10:30, 20:40] = 255
  _save(tmp_path / "faces" / "a.png", image)
  tight = D.load_dataset(
    make_config(
      source="folder", path=str(tmp_path / "faces"), image_size=10, crop_size=20
    )
  )
  assert tight.images.shape == (1, 10, 10, 3) and tight.images.min() == 255
  loose = D.load_dataset(
    make_config(source="folder", path=str(tmp_path / "faces"), image_size=10)
  )
  assert loose.images.min() == 0  # the largest square (40x40) keeps black borders
  with pytest.raises(ValueError, match="smaller than data.crop_size=50"):
    D.load_dataset(
      make_config(
        source="folder", path=str(tmp_path / "faces"), image_size=10, crop_size=50
      )
    )
