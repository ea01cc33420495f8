"""Outputs on storage other than a local disk, through etils.epath, offline.

`s3://` paths are served here by fsspec's in-memory file system, through epath's
fsspec backend (the one it uses for gs:// and s3:// without TensorFlow): the same
calls innjax makes on a bucket, without a network. Orbax's checkpoints are not
covered (TensorStore writes them with its own S3/GCS drivers).
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
  assert (first[".npz"], second[".npz"]) == (f"{bucket}/samples/s.npz",
                                             f"{bucket}/samples/s-2.npz")
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
