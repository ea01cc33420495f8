"""Data and config mistakes end in one line naming the field or file, and exit code 2.

Each case used to end in a traceback, a misleading message or a wrong model. The
bad-input table of docs/troubleshooting.md lists them with these tests. Most call
`cli.run` (what `python main.py` runs) in this process; the cases decided while the
command line is parsed run `python main.py`, which exits before training starts. A
refused input leaves no workdir behind.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from configs import tiny
from innjax import checkpointing, cli, config_checks, data, errors, style, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
  """configs/tiny.py with dotted overrides."""
  return cli.with_overrides(tiny.get_config(), overrides)


def refused(config, workdir, capsys, mode="train"):
  """Runs `mode` as main.py would; asserts exit code 2 and returns the message."""
  code = cli.run(mode, config, str(workdir))
  message = capsys.readouterr().err
  assert code == 2, message
  assert message.startswith("innjax: error: ") and "Traceback" not in message
  return message


def main_py(*args):
  """`python main.py ARGS`: (exit code, all output)."""
  result = subprocess.run(
    [sys.executable, "main.py", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  return result.returncode, result.stdout + result.stderr


def npz_config(path, **overrides):
  return tiny_config(**{"data.source": "npz", "data.path": str(path), **overrides})


def random_images(n, seed=0, side=16):
  return np.random.default_rng(seed).integers(0, 256, (n, side, side, 1), np.uint8)


# --------------------------------------------------------------------------------------
# .npz files.


def test_empty_npz_is_refused_and_leaves_no_workdir(tmp_path, capsys):
  path = tmp_path / "empty.npz"
  np.savez(path, x=np.zeros((0, 16, 16, 1), np.uint8))
  workdir = tmp_path / "run"
  message = refused(npz_config(path), workdir, capsys)
  assert f"npz file '{path}': 'x' holds no images" in message
  assert not workdir.exists()  # no folder, no checkpoints/, no events file


def test_one_image_saved_as_x_is_not_read_as_strips(tmp_path, capsys):
  path = tmp_path / "one.npz"
  np.savez(path, x=np.zeros((64, 64, 3), np.uint8))
  message = refused(npz_config(path), tmp_path / "run", capsys)
  assert f"npz file '{path}': 'x' has shape (64, 64, 3), one HWC image" in message
  assert "image[None]" in message and "allow_upscale" not in message
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
  "content, match",
  [
    (b"this is text, not numpy\n", "is not a NumPy .npz archive"),
    (b"PK\x03\x04 a broken zip", "is not a NumPy .npz archive"),
    (None, "holds a single .npy array, not an .npz archive"),
  ],
)
def test_a_file_that_is_not_an_npz_names_the_file(tmp_path, content, match):
  path = tmp_path / "data.npz"
  if content is None:
    np.save(tmp_path / "data.npy", random_images(4))
    os.rename(tmp_path / "data.npy", path)
  else:
    path.write_bytes(content)
  with pytest.raises(ValueError, match=rf"npz file '{path}' {match}.*np\.savez"):
    data.load_dataset(npz_config(path).data)


@pytest.mark.parametrize("key", ["x", "y"])
def test_object_arrays_name_the_file_and_the_array(tmp_path, key):
  path = tmp_path / "objects.npz"
  arrays = {"x": random_images(3), "y": np.arange(3)}
  arrays[key] = np.array([object()] * 3, dtype=object)
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match=rf"npz file '{path}': '{key}' is an object array"):
    data.load_dataset(npz_config(path).data)


def test_labels_of_the_wrong_shape_are_refused(tmp_path):
  path = tmp_path / "labels.npz"
  np.savez(path, x=random_images(40), y=np.zeros((40, 2), np.int64))
  with pytest.raises(
    ValueError,
    match=r"'y' has shape \(40, 2\); labels are one integer "
    r"class per image, shape \(40,\).*argmax",
  ):
    data.load_dataset(npz_config(path).data)
  np.savez(path, x=random_images(40), y=np.arange(40)[:, None])  # (N, 1) is fine
  assert data.load_dataset(npz_config(path).data).labels.shape == (40,)


# --------------------------------------------------------------------------------------
# Image files: huge images, broken links.


def test_a_huge_image_says_what_the_limit_is_and_how_to_lift_it(
  tmp_path, capsys, monkeypatch
):
  path = tmp_path / "huge.png"
  Image.fromarray(np.zeros((40, 40), np.uint8)).save(path)
  # 1,600 pixels against a limit of 2 * 300: what a 182 Mpx photo meets by default.
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
  monkeypatch.delenv(data.MAX_PIXELS_ENV, raising=False)
  config = tiny_config(**{"data.source": "image", "data.image": str(path)})
  message = refused(config, tmp_path / "run", capsys)
  assert f"image '{path}' is too large to decode" in message
  assert "exceeds limit of 600 pixels" in message and "INNJAX_MAX_IMAGE_PIXELS" in message
  assert not (tmp_path / "run").exists()
  config.style.content = str(path)
  with pytest.raises(data.ImageTooLargeError, match="INNJAX_MAX_IMAGE_PIXELS"):
    style.load_content(config)
  monkeypatch.setenv(data.MAX_PIXELS_ENV, "0")  # the documented way to lift it
  assert data.load_named_image(str(path), 1).shape == (40, 40, 1)
  monkeypatch.setenv(data.MAX_PIXELS_ENV, "lots")
  with pytest.raises(ValueError, match="INNJAX_MAX_IMAGE_PIXELS='lots' must be a whole"):
    data.load_named_image(str(path), 1)


def test_broken_and_looping_symlinks_are_skipped_with_a_warning(tmp_path):
  folder = tmp_path / "images"
  folder.mkdir()
  Image.fromarray(np.full((20, 20), 9, np.uint8)).save(folder / "good.png")
  os.symlink(folder / "missing.png", folder / "broken.png")
  os.symlink(folder / "self.png", folder / "self.png")
  config = tiny_config(**{"data.source": "folder", "data.path": str(folder)})
  with pytest.warns(UserWarning) as caught:
    dataset = data.load_dataset(config.data)
  assert dataset.images.shape[0] == 1
  messages = " ".join(str(w.message) for w in caught)
  for name in ("broken.png", "self.png"):
    assert f"skipping unreadable image '{folder / name}' (a symbolic link" in messages


# --------------------------------------------------------------------------------------
# Config files and values.


@pytest.mark.parametrize(
  "flag, match",
  [
    ("--config.model.features=8,abc", "model.features must be positive integer widths"),
    ("--config.model.features=", "model.features must be positive integer widths"),
    ("--config.model.features=8,16.5", "model.features must be positive integer widths"),
    ("--config.sample.size=abc", "sample.size must be HEIGHT,WIDTH in pixels"),
  ],
)
def test_config_values_from_the_command_line_name_the_field(flag, match, tmp_path):
  workdir = tmp_path / "run"
  code, out = main_py("--config=configs/tiny.py", flag, f"--workdir={workdir}")
  assert code == 2 and f"innjax: error: Bad config: {match}" in out, out
  assert "Traceback" not in out and not workdir.exists()


@pytest.mark.parametrize(
  "body, match",
  [
    (
      "  config = tiny.get_config()\n",
      "get_config() returned None (is its `return config` missing?)",
    ),
    (
      "  return tiny.get_config().to_dict()\n",
      "get_config() returned a dict, not an ml_collections.ConfigDict",
    ),
  ],
)
def test_a_config_file_that_returns_no_configdict(body, match, tmp_path):
  config_file = tmp_path / "my_config.py"
  config_file.write_text("from configs import tiny\n\n\ndef get_config():\n" + body)
  workdir = tmp_path / "run"
  code, out = main_py(f"--config={config_file}", f"--workdir={workdir}")
  assert code == 2 and f"innjax: error: Bad config: the config file's {match}" in out, out
  assert "configs/default.py" in out and "Traceback" not in out
  assert not workdir.exists()


@pytest.mark.parametrize(
  "override, match",
  [
    (
      {"train.learning_rate": float("inf")},
      "train.learning_rate=inf: config values must be finite",
    ),
    (
      {"train.momentum": float("nan")},
      "train.momentum=nan: config values must be finite",
    ),
    ({"train.momentum": 1.5}, "train.momentum must be in [0, 1), got 1.5"),
    ({"synthesis.noise_scale": float("inf")}, "synthesis.noise_scale=inf"),
    ({"pool.init_std": -1.0}, "pool.init_std must be > 0, got -1.0"),
    ({"sample.max_steps": 0}, "sample.max_steps must be >= 1"),
    ({"sample.size": (0, 64)}, "sample.size must be HEIGHT,WIDTH"),
    ({"model.features": (8, 16.5)}, "model.features must be positive integer widths"),
  ],
)
def test_suspect_values_are_refused_before_anything_is_written(
  override, match, tmp_path, capsys
):
  workdir = tmp_path / "run"
  message = refused(tiny_config(**override), workdir, capsys)
  assert f"Bad config: {match}" in message, message
  assert not workdir.exists()


def test_divergence_before_the_first_checkpoint_names_none():
  first = str(
    train.diverged(
      0,
      "classification: the classifier loss became NaN/inf",
      "a lower learning rate",
      "--config.train.learning_rate=0.1",
    )
  )
  assert "stage 1, classification" in first and "no checkpoint to go back to" in first
  assert "stage 0" not in first and "learning_rate=0.1." in first
  later = str(
    train.diverged(
      2, "synthesis: NaN", "a smaller image step", "--config.synthesis.step_size=0.001"
    )
  )
  assert "The checkpoint of stage 2 is kept as the latest" in later


# --------------------------------------------------------------------------------------
# Resuming on other data.


@pytest.fixture(scope="module")
def trained_on_npz(tmp_path_factory):
  """A workdir with one tiny stage trained on 40 random images from an .npz."""
  root = tmp_path_factory.mktemp("resume")
  np.savez(root / "a.npz", x=random_images(40))
  workdir = root / "run"
  train.train_and_evaluate(npz_config(root / "a.npz"), str(workdir), stop_after_stages=1)
  return root, workdir


def test_the_data_fingerprint_is_saved_with_the_checkpoint(trained_on_npz):
  root, workdir = trained_on_npz
  manager = checkpointing.Manager(
    str(workdir), npz_config(root / "a.npz"), read_only=True
  )
  saved = manager.saved_meta()["data"]
  manager.close()
  images = random_images(40)
  assert saved == data.fingerprint(40, lambda idx: images[idx])


def test_resuming_on_the_same_data_at_another_path_is_accepted(trained_on_npz):
  root, workdir = trained_on_npz
  os.makedirs(root / "moved", exist_ok=True)
  np.savez(root / "moved" / "renamed.npz", x=random_images(40))
  state = train.train_and_evaluate(
    npz_config(root / "moved" / "renamed.npz"), str(workdir), stop_after_stages=1
  )
  assert int(state.stage) == 1


@pytest.mark.parametrize(
  "count, seed, change",
  [
    (30, 0, "40 uint8 images of 16x16x1 then, 30 uint8 images of 16x16x1 now"),
    (40, 1, "40 uint8 images of 16x16x1 as before, but other pixels or another order"),
  ],
)
def test_resuming_on_other_data_is_refused(
  trained_on_npz, tmp_path, capsys, count, seed, change
):
  root, workdir = trained_on_npz
  np.savez(tmp_path / "b.npz", x=random_images(count, seed))
  message = refused(npz_config(tmp_path / "b.npz"), workdir, capsys)
  assert f"was trained on other data ({change})" in message
  assert "--config.data.allow_new_data=True" in message
  assert "Nothing was changed on disk" in message
  config = npz_config(tmp_path / "b.npz", **{"data.allow_new_data": True})
  assert (
    int(train.train_and_evaluate(config, str(workdir), stop_after_stages=1).stage) == 1
  )


# --------------------------------------------------------------------------------------
# The error policy: a mistake the user can fix is one line, anything else is a bug.


def _raise_in_cli(monkeypatch, error):
  """Makes the first step of `cli.run` raise `error`."""

  def fail(config):
    raise error

  monkeypatch.setattr(config_checks, "check_config_type", fail)


@pytest.mark.parametrize(
  "error",
  [
    errors.ConfigError("Bad config: train.momentum must be in [0, 1), got 1.5."),
    errors.DataError("npz file 'a.npz': 'x' holds no images (shape (0, 8, 8, 1))"),
    errors.CheckpointError("Checkpoint step 3 in /w/checkpoints is damaged."),
    errors.WorkdirError("Cannot write to workdir '/w' (Permission denied)."),
  ],
)
def test_a_users_mistake_is_one_line_with_exit_code_2(
  error, tmp_path, capsys, monkeypatch
):
  _raise_in_cli(monkeypatch, error)
  message = refused(tiny_config(), tmp_path / "run", capsys)
  assert message == f"innjax: error: {error}\n"
  assert "bug" not in message


@pytest.mark.parametrize(
  "error",
  [
    ValueError("Incompatible shapes for broadcasting: (3, 4) and (5,)"),
    IndexError("index 7 is out of bounds for axis 0 with size 7"),
    OSError("[Errno 5] Input/output error"),
  ],
)
def test_a_bug_keeps_its_traceback_and_asks_for_a_report(
  error, tmp_path, capsys, monkeypatch
):
  _raise_in_cli(monkeypatch, error)
  code = cli.run("train", tiny_config(), str(tmp_path / "run"))
  err = capsys.readouterr().err
  assert code == 1
  lines = err.strip().splitlines()
  assert lines[0] == "Traceback (most recent call last):"
  assert lines[-2] == f"{type(error).__name__}: {error}"  # the traceback ends in it
  assert lines[-1].startswith("innjax: unexpected error (traceback above)")
  assert "report it" in lines[-1] and "innjax: error:" not in err
  assert f"jax {jax.__version__}" in lines[-1]  # versions for the report


def test_the_error_classes_are_still_the_built_in_errors_they_replace():
  # Library code written as `except ValueError` or `except FileNotFoundError`
  # keeps catching what innjax raises.
  assert issubclass(errors.ConfigError, ValueError)
  assert issubclass(errors.DataError, ValueError)
  assert issubclass(errors.DataNotFoundError, FileNotFoundError)
  assert issubclass(data.DatasetNotPreparedError, FileNotFoundError)
  assert issubclass(checkpointing.IncompatibleCheckpointError, ValueError)
  assert issubclass(checkpointing.CheckpointSaveError, OSError)
  assert issubclass(train.TrainingDivergedError, RuntimeError)
  for cls in (
    checkpointing.IncompatibleCheckpointError,
    checkpointing.CorruptCheckpointError,
    checkpointing.CheckpointSaveError,
  ):
    assert issubclass(cls, errors.CheckpointError)


def test_data_and_config_mistakes_raise_their_classes(tmp_path):
  path = tmp_path / "labels.npz"
  np.savez(path, x=random_images(4), y=np.arange(3))
  with pytest.raises(errors.DataError, match="3 labels for 4 images"):
    data.load_dataset(npz_config(path).data)
  with pytest.raises(errors.DataNotFoundError, match="not found"):
    data.load_dataset(npz_config(tmp_path / "missing.npz").data)
  with pytest.raises(errors.ConfigError, match="data_config.value_range must be one of"):
    data.load_dataset(npz_config(path, **{"data.value_range": "0-255"}).data)
  with pytest.raises(errors.ConfigError, match="train.momentum must be in"):
    config_checks.validate_config(tiny_config(**{"train.momentum": 1.0}))


def test_renamed_config_override_is_upgraded_with_a_note():
  argv, notes = config_checks.upgrade_overrides(
    [
      "main.py",
      "--config.synthesis.energy=sum",
      "--config.synthesis.energy",
      "sequential",
      "--config.synthesis.energy_x=1",
    ]
  )
  assert argv == [
    "main.py",
    "--config.synthesis.mode=sum",
    "--config.synthesis.mode",
    "sequential",
    "--config.synthesis.energy_x=1",
  ]
  assert len(notes) == 2 and "--config.synthesis.mode" in notes[0]
  code, out = main_py(
    "--config=configs/tiny.py", "--config.synthesis.energy=sequential", "--help_config"
  )
  assert code == 0, out
  assert "synthesis.mode = 'sequential'" in out
  assert "--config.synthesis.energy is now --config.synthesis.mode" in out
