"""Outputs written whole or not at all, never over an earlier one (innjax/outputs.py).

The helpers are checked directly; `--mode=sample` is checked through `cli.run`, as
main.py calls it, on the tiny run trained once per session (conftest.py's `tiny_run`).
"""

import errno
import os
import re
import shutil

import numpy as np
import pytest

from configs import tiny
from innjax import checkpointing, cli, images, outputs, workdir_lock


def _files(folder):
  """The outputs in `folder`, without the TensorBoard events that sampling adds."""
  return sorted(f for f in os.listdir(folder) if not f.startswith("events.out.tfevents"))


def test_a_writer_that_fails_midway_leaves_no_file(tmp_path):
  path = tmp_path / "out.npz"

  def half_then_fail(f):
    f.write(b"PK\x03\x04 the first bytes of an npz")
    raise KeyboardInterrupt  # Ctrl-C in the middle of the write

  with pytest.raises(KeyboardInterrupt):
    outputs.write_file(str(path), half_then_fail)
  assert _files(tmp_path) == []  # neither the final name nor a temporary file
  # Replacing: a failed write leaves the earlier file as it was.
  path.write_bytes(b"earlier")
  with pytest.raises(KeyboardInterrupt):
    outputs.write_file(str(path), half_then_fail)
  assert path.read_bytes() == b"earlier" and _files(tmp_path) == ["out.npz"]
  with pytest.raises(KeyboardInterrupt):
    outputs.write_new(
      str(tmp_path), "new", {".png": lambda f: f.write(b"png"), ".npz": half_then_fail}
    )
  assert _files(tmp_path) == ["out.npz"]


def test_write_new_never_replaces_and_keeps_a_set_together(tmp_path):
  writers = {".png": lambda f: f.write(b"a png"), ".npz": lambda f: f.write(b"an npz")}
  first = outputs.write_new(str(tmp_path), "s", writers)
  (tmp_path / "s-2.npz").write_bytes(b"someone else's")  # half of the next name taken
  second = outputs.write_new(str(tmp_path), "s", writers)
  assert first == {".png": str(tmp_path / "s.png"), ".npz": str(tmp_path / "s.npz")}
  assert second == {".png": str(tmp_path / "s-3.png"), ".npz": str(tmp_path / "s-3.npz")}
  assert (tmp_path / "s-2.npz").read_bytes() == b"someone else's"
  assert _files(tmp_path) == ["s-2.npz", "s-3.npz", "s-3.png", "s.npz", "s.png"]


def test_write_new_without_hard_links_falls_back_to_a_rename(tmp_path, monkeypatch):
  def no_links(src, dst):
    raise OSError(errno.EPERM, "Operation not permitted")

  monkeypatch.setattr(os, "link", no_links)
  writers = {".txt": lambda f: f.write(b"x")}
  assert outputs.write_new(str(tmp_path), "r", writers)[".txt"].endswith("r.txt")
  assert outputs.write_new(str(tmp_path), "r", writers)[".txt"].endswith("r-2.txt")
  assert _files(tmp_path) == ["r-2.txt", "r.txt"]


def test_a_full_disk_is_named_in_one_line(tmp_path):
  def full(f):
    raise OSError(errno.ENOSPC, "No space left on device")

  grid = images.save_png(np.zeros((2, 2, 1), np.uint8), str(tmp_path / "g.png"))
  before = open(grid, "rb").read()
  with pytest.raises(OSError) as info:
    outputs.write_file(grid, full)
  assert str(info.value) == (
    f"Writing {grid} failed (No space left on device); "
    "nothing was written under that name; free space and "
    "rerun."
  )
  assert info.value.errno == errno.ENOSPC
  assert _files(tmp_path) == ["g.png"] and open(grid, "rb").read() == before
  with pytest.raises(OSError, match=r"Writing .*/s\.npz failed \(No space left"):
    outputs.write_new(
      str(tmp_path), "s", {".png": lambda f: f.write(b"png"), ".npz": full}
    )
  assert _files(tmp_path) == ["g.png"]


# --------------------------------------------------------------------------------------
# --mode=sample


@pytest.fixture(name="trained")
def fixture_trained(tiny_run):
  """The workdir of the shared tiny run; sampling into it needs a copy (`_copy`)."""
  return tiny_run[0]


def _copy(trained, tmp_path):
  """A workdir of its own holding the checkpoints of `trained`."""
  workdir = tmp_path / "run"
  shutil.copytree(os.path.join(trained, "checkpoints"), workdir / "checkpoints")
  return str(workdir)


def _sample(workdir, capsys, output_dir=None):
  rc = cli.run("sample", tiny.get_config(), workdir, output_dir=output_dir)
  err = capsys.readouterr().err
  assert "Traceback" not in err
  return rc, err


def test_a_second_sample_run_does_not_replace_the_first(trained, tmp_path, capsys):
  workdir = _copy(trained, tmp_path)
  folder = os.path.join(workdir, "samples")
  assert _sample(workdir, capsys)[0] == 0
  first = {name: open(os.path.join(folder, name), "rb").read() for name in _files(folder)}
  assert sorted(first) == [
    "samples_stage003_n8_seed1.npz",
    "samples_stage003_n8_seed1.png",
  ]
  assert _sample(workdir, capsys)[0] == 0
  assert _files(folder) == sorted(
    list(first) + ["samples_stage003_n8_seed1-2.npz", "samples_stage003_n8_seed1-2.png"]
  )
  for name, data in first.items():
    assert open(os.path.join(folder, name), "rb").read() == data
  np.testing.assert_array_equal(
    np.load(os.path.join(folder, "samples_stage003_n8_seed1-2.npz"))["images"],
    np.load(os.path.join(folder, "samples_stage003_n8_seed1.npz"))["images"],
  )


def test_sampling_works_while_training_holds_the_lock(trained, tmp_path, capsys):
  with workdir_lock.hold(trained):
    rc, err = _sample(trained, capsys, output_dir=str(tmp_path))
  assert rc == 0, err
  assert _files(tmp_path) == [
    "samples_stage003_n8_seed1.npz",
    "samples_stage003_n8_seed1.png",
  ]


def test_sampling_rereads_when_training_deletes_the_step_it_reads(
  trained, tmp_path, capsys, monkeypatch
):
  # Training saves step 4 and deletes step 3 (beyond checkpoint.max_to_keep) just
  # after the sampler picked step 3 as the newest.
  workdir = _copy(trained, tmp_path)
  real_restore = checkpointing.Manager.restore_latest_cascade
  calls = []

  def restore_while_training_saves(self, template):
    if not calls:
      folder = os.path.join(workdir, "checkpoints")
      shutil.copytree(os.path.join(folder, "3"), os.path.join(folder, "4"))
      shutil.rmtree(os.path.join(folder, "3"))
    calls.append(self.latest_step())
    return real_restore(self, template)

  monkeypatch.setattr(
    checkpointing.Manager, "restore_latest_cascade", restore_while_training_saves
  )
  rc, err = _sample(workdir, capsys, output_dir=str(tmp_path / "out"))
  assert rc == 0, err
  assert calls == [3, 4]


def test_ctrl_c_while_sample_writes_leaves_no_file_and_says_so(
  trained, tmp_path, capsys, monkeypatch
):
  real_write_png = images.write_png

  def interrupted(array, f):
    real_write_png(array, f)
    f.truncate(213)  # what the interrupted write had reached
    raise KeyboardInterrupt

  monkeypatch.setattr(images, "write_png", interrupted)
  rc, err = _sample(trained, capsys, output_dir=str(tmp_path / "out"))
  assert rc == 130
  assert "innjax: interrupted. --mode=sample stopped." in err
  assert "Checkpoints are committed" not in err
  assert _files(tmp_path / "out") == []


def _make_read_only(folder, monkeypatch):
  """Makes `folder` unwritable: chmod, or as root (which chmod does not stop), an
  injected EROFS from the folder checks."""
  if os.geteuid() != 0:
    os.chmod(folder, 0o555)
    return
  real_makedirs = os.makedirs

  def read_only_makedirs(path, *args, **kwargs):
    if os.path.abspath(path).startswith(os.path.abspath(folder) + os.sep):
      raise OSError(errno.EROFS, "Read-only file system", path)
    return real_makedirs(path, *args, **kwargs)

  monkeypatch.setattr(outputs.os, "makedirs", read_only_makedirs)


def test_sampling_a_read_only_workdir_says_so_and_output_dir_writes_elsewhere(
  trained, tmp_path, capsys, monkeypatch
):
  workdir = tmp_path / "read_only"
  workdir.mkdir()
  os.symlink(os.path.join(trained, "checkpoints"), workdir / "checkpoints")
  _make_read_only(str(workdir), monkeypatch)
  try:
    rc, err = _sample(str(workdir), capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(
      r"innjax: error: Cannot write to the samples folder '.*read_only/samples' "
      r"\((Permission denied|Read-only file system)\); pass --output_dir=DIR to "
      r"write them elsewhere\.",
      lines[0],
    ), err
    rc, err = _sample(str(workdir), capsys, output_dir=str(tmp_path / "elsewhere"))
    assert rc == 0, err
  finally:
    os.chmod(workdir, 0o755)
  assert _files(tmp_path / "elsewhere") == [
    "samples_stage003_n8_seed1.npz",
    "samples_stage003_n8_seed1.png",
  ]
  assert _files(workdir) == ["checkpoints"]


def test_output_dir_is_refused_when_training(tmp_path, capsys):
  rc = cli.run(
    "train", tiny.get_config(), str(tmp_path / "run"), output_dir=str(tmp_path / "out")
  )
  err = capsys.readouterr().err
  assert (
    rc == 2 and "--output_dir is for --mode=sample, style, evaluate and export" in err
  )
  assert _files(tmp_path) == []
