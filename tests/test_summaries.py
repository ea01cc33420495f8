"""The TensorBoard event writer's own CRC-32C, against known answers."""

import os

import pytest

from innjax import summaries


def test_crc32c_known_answers():
  # The check value of CRC-32C (iSCSI, RFC 3720) and two of RFC 3720's test vectors.
  assert summaries.crc32c(b"123456789") == 0xE3069283
  assert summaries.crc32c(bytes(32)) == 0x8A9136AA
  assert summaries.crc32c(b"\xff" * 32) == 0x62A8AB43
  assert summaries.crc32c(b"") == 0


def test_masked_crc32c_matches_tensorboards():
  stub = pytest.importorskip("tensorboard.compat.tensorflow_stub.pywrap_tensorflow")
  for size in (0, 1, 7, 12, 1000):
    data = os.urandom(size)
    assert summaries.masked_crc32c(data) == stub.masked_crc32c(data)


def test_events_read_back_by_tensorboard(tmp_path):
  loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
  writer = summaries.EventWriter(str(tmp_path))
  writer.write_scalars(3, {"loss": 0.25})
  writer.close()
  (name,) = os.listdir(tmp_path)
  events = list(loader.EventFileLoader(str(tmp_path / name)).Load())
  assert events[0].file_version == "brain.Event:2"
  (value,) = events[1].summary.value
  assert events[1].step == 3 and value.tag == "loss"
