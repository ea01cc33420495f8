"""Outputs on storage other than a local disk, through etils.epath, offline.

`s3://` paths are served here by fsspec's in-memory file system, through epath's
fsspec backend (the one it uses for gs:// and s3:// without TensorFlow): the same
calls innjax makes on a bucket, without a network. A training run is covered up to
Orbax's array writes: Orbax creates and lists the checkpoint folder through epath,
but TensorStore writes the arrays with its own S3/GCS drivers, so the test records
the save instead.
"""

import io
import json

from etils import epath
from etils.epath import gpath
import fsspec
from fsspec.implementations import memory
import numpy as np
import pytest

import innjax
import tensorboard_events
from innjax import export, images, outputs, summaries


class _MemoryS3(memory.MemoryFileSystem):
  """fsspec's in-memory file system under the s3:// scheme."""

  protocol = ("s3", "s3a")
  root_marker = ""

  @classmethod
  def _strip_protocol(cls, path):
    return path.split("://", 1)[-1].rstrip("/")


@pytest.fixture
def bucket(monkeypatch):
  """A fresh in-memory s3://bucket for epath."""
  fsspec.register_implementation("s3", _MemoryS3, clobber=True)
  monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
  _MemoryS3.store.clear()
  _MemoryS3.pseudo_dirs.clear()
  fsspec.AbstractFileSystem.clear_instance_cache()
  yield "s3://bucket/run"
  _MemoryS3.store.clear()
  fsspec.AbstractFileSystem.clear_instance_cache()


def test_writes_and_fresh_names_on_a_bucket(bucket):
  outputs.ensure_writable(bucket, "workdir", "choose another")
  grid = images.save_grid(np.zeros((4, 8, 8, 1)), f"{bucket}/negatives/stage_001.png")
  assert epath.Path(grid).read_bytes().startswith(b"\x89PNG")
  first = outputs.write_new(f"{bucket}/samples", "s", {".npz": lambda f: f.write(b"1")})
  second = outputs.write_new(f"{bucket}/samples", "s", {".npz": lambda f: f.write(b"2")})
  assert (first[".npz"], second[".npz"]) == (
    f"{bucket}/samples/s.npz",
    f"{bucket}/samples/s-2.npz",
  )
  assert epath.Path(second[".npz"]).read_bytes() == b"2"
  assert outputs.exists(first[".npz"]) and not outputs.exists(f"{bucket}/none")


def test_tensorboard_events_on_a_bucket(bucket):
  writer = summaries.EventWriter(bucket)
  writer.write_scalars(1, {"loss": 0.5})
  writer.close()
  (path,) = [p for p in epath.Path(bucket).iterdir() if "tfevents" in p.name]
  assert len(path.read_bytes()) > 40


def test_an_export_on_a_bucket_loads(bucket):
  header = {"format": export.FORMAT, "version": export.VERSION + 1}
  buffer = io.BytesIO()
  np.savez(buffer, header=np.frombuffer(json.dumps(header).encode(), np.uint8))
  epath.Path(f"{bucket}/model.npz").write_bytes(buffer.getvalue())
  # Read back through epath: the header is reached (and its newer version refused).
  with pytest.raises(export.ExportFormatError, match="newer"):
    innjax.load(f"{bucket}/model.npz")


def test_training_on_a_bucket_up_to_orbax(bucket, monkeypatch, tmp_path, caplog):
  # Orbax creates and lists the checkpoint folder through epath here; it writes the
  # arrays with TensorStore's own s3 driver (a network), so saving is recorded instead.
  from configs import tiny  # pylint: disable=import-outside-toplevel
  from innjax import checkpointing, train  # pylint: disable=import-outside-toplevel

  saved = []
  monkeypatch.setattr(
    checkpointing.Manager,
    "save",
    lambda self, step, state: saved.append((self.directory, step)),
  )
  cwd = tmp_path / "cwd"  # where a local write of the URI would land
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  config = tiny.get_config()
  config.num_stages = 1
  state = train.train_and_evaluate(config, bucket)
  assert int(state.stage) == 1 and saved == [(f"{bucket}/checkpoints", 1)]
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert [w for w in warnings if "no file locks" in w] == [
    f"Workdir {bucket} is on remote storage, which has no file locks; innjax cannot "
    "detect a second training run on this workdir there, so start only one."
  ]
  root = epath.Path(bucket)
  assert (root / "negatives" / "stage_001.png").read_bytes().startswith(b"\x89PNG")
  (events,) = [p for p in root.iterdir() if "tfevents" in p.name]
  (tmp_path / "events").write_bytes(events.read_bytes())
  assert 1 in {e.step for e in tensorboard_events.read_events(str(tmp_path / "events"))}
  assert (root / "checkpoints").exists()  # created by Orbax, through epath
  assert not (root / "training.lock").exists()
  assert list(cwd.iterdir()) == []  # nothing written to a local "s3:" folder
