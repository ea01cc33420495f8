"""innjax.load refuses damaged, foreign and newer files with a clear error.

The round trip (export, load, sample equals --mode=sample) is in
tests/test_train.py::test_inng_trains_saves_grids_and_samples, which trains a model.
"""

import json
import zipfile

import numpy as np
import pytest

import innjax
from innjax import export


def _write(path, header=None, **arrays):
  if header is not None:
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
  np.savez(path, **arrays)
  return str(path)


def test_a_newer_format_says_to_upgrade(tmp_path):
  path = _write(
    tmp_path / "m.npz",
    {"format": export.FORMAT, "version": export.VERSION + 1},
    active=np.ones(2, bool),
  )
  with pytest.raises(export.ExportFormatError, match="newer than this innjax reads"):
    innjax.load(path)


def test_a_truncated_file_is_damaged(tmp_path):
  good = _write(
    tmp_path / "m.npz", {"format": export.FORMAT, "version": 1}, active=np.ones(2, bool)
  )
  data = open(good, "rb").read()
  (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
  with pytest.raises(
    export.ExportFormatError, match="not an innjax export or is damaged"
  ):
    innjax.load(str(tmp_path / "cut.npz"))


def test_an_npz_without_header_or_with_pickles_is_refused(tmp_path):
  with pytest.raises(export.ExportFormatError, match="no innjax export header"):
    innjax.load(_write(tmp_path / "plain.npz", x=np.zeros(3)))
  objects = _write(
    tmp_path / "obj.npz",
    {"format": export.FORMAT, "version": 1},
    active=np.array([{"a": 1}], dtype=object),
  )
  with pytest.raises(export.ExportFormatError, match="damaged"):
    innjax.load(objects)  # never unpickled
  assert zipfile.is_zipfile(objects)


def test_nested_variables_survive_flattening_with_empty_collections():
  tree = {"params": {"conv0": {"kernel": np.ones((2, 3))}}, "batch_stats": {}}
  empty = []
  flat = export._flatten(tree, "cascade", empty)
  assert sorted(flat) == ["cascade/params/conv0/kernel"] and empty == [
    "cascade/batch_stats"
  ]
  back = export._unflatten(flat, "cascade", empty)
  assert back["batch_stats"] == {} and back["params"]["conv0"]["kernel"].shape == (2, 3)


def _tiny_header():
  """A complete header for configs/tiny.py's architecture."""
  from configs import tiny  # pylint: disable=import-outside-toplevel
  from innjax import checkpointing  # pylint: disable=import-outside-toplevel

  return {
    "format": export.FORMAT,
    "version": export.VERSION,
    "stages": 1,
    "empty": [],
    "config": checkpointing.config_to_dict(tiny.get_config()),
  }


def test_a_header_alone_or_missing_arrays_is_one_clear_error(tmp_path):
  header = _tiny_header()
  with pytest.raises(export.ExportFormatError, match="incomplete export header"):
    innjax.load(_write(tmp_path / "bare.npz", {"format": export.FORMAT, "version": 1}))
  with pytest.raises(export.ExportFormatError, match="has no `active` array"):
    innjax.load(_write(tmp_path / "header.npz", header))
  # The mask is there, the cascade is not: every missing variable is a one-line error.
  with pytest.raises(
    export.ExportFormatError,
    match=r"does not hold the cascade.*cascade/params/.* is missing",
  ) as caught:
    innjax.load(_write(tmp_path / "mask.npz", header, active=np.ones(2, bool)))
  assert "\n" not in str(caught.value)
  with pytest.raises(export.ExportFormatError, match="not a \\(slots,\\) bool"):
    innjax.load(_write(tmp_path / "ints.npz", header, active=np.ones(2, np.int32)))
