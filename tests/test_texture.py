"""End-to-end tests of the anysize patch head: texture training, any-size sampling and
style transfer, on a real PNG exemplar and real checkpoints on disk."""

import numpy as np
import pytest
from PIL import Image

from configs import tiny_texture
from innjax import energy, generate, style, synthesis, train
from innjax import images as images_lib


@pytest.fixture(scope="module")
def exemplar(tmp_path_factory):
  """A real PNG texture file: stripes plus noise, so patches differ."""
  rng = np.random.default_rng(0)
  x = np.arange(48)
  stripes = 127 + 100 * np.sin(x[None, :] / 3.0) * np.ones((48, 1))
  image = np.clip(stripes + rng.normal(0, 10, (48, 48)), 0, 255).astype(np.uint8)
  path = tmp_path_factory.mktemp("texture") / "stripes.png"
  Image.fromarray(image).save(path)
  return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, exemplar):
  config = tiny_texture.get_config()
  config.checkpoint.async_save = False
  config.data.image = exemplar
  workdir = str(tmp_path_factory.mktemp("run"))
  state = train.train_and_evaluate(config, workdir)
  return config, workdir, state


def test_training_keeps_padded_negatives(trained):
  config, workdir, state = trained
  assert int(state.stage) == 2
  # 32x32 target + half a 16x16 patch per side: negatives are 48x48 full images.
  assert state.negatives.shape == (8, 48, 48, 1)
  assert state.pool.images.shape[1:] == (48, 48, 1)
  # The critic takes 16x16 patches: two stride-2 layers leave 4x4x16 features, mean
  # pooled (WINN's critic) into 16.
  assert state.params["logit"]["kernel"].shape == (16, 1)
  assert config.model.pool == "mean"
  # The stage's grid shows the negatives cropped to the 32x32 target: the padding is
  # for the patch head only.
  grid = np.asarray(Image.open(f"{workdir}/negatives/stage_002.png"))
  target = np.asarray(state.negatives)[:, 8:40, 8:40]
  np.testing.assert_array_equal(grid, images_lib.make_grid(target)[..., 0])


def test_sampling_at_another_size_crops_the_padding(trained):
  config, workdir, _ = trained
  images, stats = generate.generate(config, workdir, size=(40, 56))
  assert images.shape == (2, 40, 56, 1)
  assert np.isfinite(images).all() and np.abs(images).max() <= 1.0
  assert stats["png"].endswith("_40x56.png")
  assert Image.open(stats["png"]).size == (2 + 2 * (56 + 2), 2 + 40 + 2)


def test_more_patches_for_larger_images(trained):
  config, _, _ = trained
  geometry = synthesis.geometry(config)

  def count(side):
    return energy.patches_per_step(geometry, energy.negative_shape(geometry, side)[:2])

  # The paper's density: 10 patches on an image 4 patch-widths wide (64 for 16x16),
  # scaled with the area.
  assert count(64) == 10 and count(128) == 40 and count(32) == 3  # 2.5 rounds up


def test_style_transfer_renders_content_in_the_style(trained):
  config, workdir, _ = trained
  image, stats = style.stylize(config, workdir)
  # astronaut (512x512) scaled to style.max_size=48 on its longer side.
  assert image.shape == (48, 48, 1)
  assert Image.open(stats["png"]).size == (48, 48)
  assert 0.0 < stats["content_mse"] < 1.0
  content = style.load_content(config)
  # Pure content (gamma = 1) leaves the image where it started.
  config_content = tiny_texture.get_config()
  config_content.data.image = config.data.image
  config_content.style.gamma = 1.0
  same, _ = style.stylize(config_content, workdir)
  np.testing.assert_allclose(same, content, atol=1e-5)
  assert np.abs(image - content).mean() > 1e-3


def test_style_content_unit_sets_the_content_weight(trained, tmp_path):
  config, workdir, _ = trained
  side, channels = int(config.patch.size), int(config.data.channels)
  renders = {}
  for unit, scale in (("pixel", 1.0), ("patch", float(side * side * channels))):
    unit_config = config.copy_and_resolve_references()
    unit_config.style.content_unit = unit
    unit_config.style.gamma = 0.5
    assert style.content_unit_scale(unit_config) == scale
    _, renders[unit] = style.stylize(
      unit_config, workdir, output_dir=str(tmp_path / unit)
    )
  # The same gamma on a content term weighed per patch (here 32*32*1 = 1024 times
  # the per-pixel mean) keeps the render much closer to the content.
  assert renders["patch"]["content_mse"] < 0.5 * renders["pixel"]["content_mse"]
  bad = config.copy_and_resolve_references()
  bad.style.content_unit = "image"
  with pytest.raises(ValueError, match="style.content_unit"):
    style.stylize(bad, workdir)


def test_bad_texture_inputs(trained, tmp_path):
  config, workdir, _ = trained
  missing = tiny_texture.get_config()
  missing.data.image = str(tmp_path / "nope.jpg")
  with pytest.raises(FileNotFoundError, match="nope.jpg"):
    train.train_and_evaluate(missing, str(tmp_path / "w"))
  with pytest.raises(ValueError, match="positive"):
    generate.generate(config, workdir, size=(0, 16))
  from configs import tiny  # a whole-image model: one size only, no style transfer

  with pytest.raises(ValueError, match="patch head"):
    generate.generate(tiny.get_config(), workdir, size=(32, 32))
  with pytest.raises(ValueError, match="patch-head model"):
    style.stylize(tiny.get_config(), workdir)


def test_named_images_load_offline_or_fail_clearly(tmp_path):
  from innjax import data

  assert data.load_named_image("brick", 1).shape == (512, 512, 1)
  assert data.load_named_image("brick", 3).shape == (512, 512, 3)
  with pytest.raises(ValueError, match="bundled"):
    data.load_named_image("", 3)
  with pytest.raises(FileNotFoundError, match="bundled"):
    data.load_named_image(str(tmp_path / "missing.png"), 3)
  truncated = tmp_path / "truncated.png"
  Image.fromarray(np.zeros((32, 32), np.uint8)).save(truncated)
  truncated.write_bytes(truncated.read_bytes()[:40])
  with pytest.raises(ValueError, match="truncated"):
    data.load_named_image(str(truncated), 1)
