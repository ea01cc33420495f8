"""TensorBoard event files (scalars and images) written without TensorFlow.

An event file is a sequence of TFRecords, each an `Event` protocol buffer (the
`tensorboard` package's own copy of the definitions: importing them does not load
TensorFlow). Writing them here spares every run TensorFlow's import (seconds of
start-up and its console notices); only preparing a tfds dataset still needs it.

The records of the current file are kept in memory and the whole file is written
again, whole or not at all, at every `flush` (innjax/outputs.py): that works on
storage without appends, and a file never holds a torn record. A file that grows
past `ROLL_BYTES` is closed and the next records go to a new one; TensorBoard reads
every event file of a folder in name order.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import time

import numpy as np

from innjax import outputs

# Past this size the current event file is left as it is and a new one is started,
# so that a flush never rewrites more than this.
ROLL_BYTES = 8 << 20


def _crc32c_table() -> tuple[int, ...]:
  """The byte table of CRC-32C (Castagnoli, reflected polynomial 0x82F63B78)."""
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    table.append(crc)
  return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C of `data`, the checksum TFRecords use.

  Written here because the `tensorboard` package's copy sits behind an import of its
  TensorFlow stub, which cost 0.3 s of every command's start-up. Event records are
  small (scalars, and PNG grids of tens of kB), so a table-driven loop is fast enough.
  """
  crc, table = 0xFFFFFFFF, _CRC32C_TABLE
  for byte in data:
    crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """TFRecord's masked CRC-32C: rotated right by 15 bits plus a constant."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _record(data: bytes) -> bytes:
  """One TFRecord: length, its masked CRC-32C, the data and its masked CRC-32C."""
  header = struct.pack("<Q", len(data))
  return (
    header
    + struct.pack("<I", masked_crc32c(header))
    + data
    + struct.pack("<I", masked_crc32c(data))
  )


def _png(image: np.ndarray) -> bytes:
  """PNG bytes of a uint8 (H, W, C) array."""
  from innjax import images  # pylint: disable=g-import-not-at-top  (images imports us)

  buffer = io.BytesIO()
  images.write_png(image, buffer)
  return buffer.getvalue()


class EventWriter:
  """Writes scalars and images into TensorBoard event files in `logdir`.

  The methods follow CLU's metric writers (`write_scalars`, `write_images`, `flush`,
  `close`), which innjax used before.

  Args:
    logdir: the folder of the event files (created on the first flush).
  """

  def __init__(self, logdir: str):
    from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top

    self._event_pb2 = event_pb2
    self.logdir = logdir
    self._files = 0
    self._start_file()

  def _start_file(self) -> None:
    self._files += 1
    self.path = os.path.join(
      self.logdir,
      f"events.out.tfevents.{int(time.time()):010d}."
      f"{socket.gethostname()}.{os.getpid()}.{self._files}",
    )
    version = self._event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
    self._records = [_record(version.SerializeToString())]
    self._size = len(self._records[0])
    self._dirty = False

  def _add(self, step: int, values: list) -> None:
    if self._size > ROLL_BYTES:
      self.flush()
      self._start_file()
    event = self._event_pb2.Event(wall_time=time.time(), step=int(step))
    event.summary.value.extend(values)
    record = _record(event.SerializeToString())
    self._records.append(record)
    self._size += len(record)
    self._dirty = True

  def write_scalars(self, step: int, scalars: dict) -> None:
    """Adds `{tag: number}` at `step`."""
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top

    self._add(
      step,
      [
        summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
        for tag, value in scalars.items()
      ],
    )

  def write_images(self, step: int, images: dict) -> None:
    """Adds `{tag: uint8 (H, W, C) array}` at `step`, C in {1, 3}, stored as PNG."""
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top

    values = []
    for tag, image in images.items():
      image = np.asarray(image)
      values.append(
        summary_pb2.Summary.Value(
          tag=tag,
          image=summary_pb2.Summary.Image(
            height=image.shape[0],
            width=image.shape[1],
            colorspace=image.shape[2],
            encoded_image_string=_png(image),
          ),
        )
      )
    self._add(step, values)

  def flush(self) -> None:
    """Writes the current event file (whole or not at all) if it changed."""
    if not self._dirty:
      return
    data = b"".join(self._records)
    outputs.write_file(self.path, lambda f: f.write(data))
    self._dirty = False

  def close(self) -> None:
    """Flushes; the writer is not used after this."""
    self.flush()


class NullWriter:
  """The writer of the other processes of a multi-host run: writes nothing."""

  def write_scalars(self, step, scalars):
    del step, scalars

  def write_images(self, step, images):
    del step, images

  def flush(self):
    pass

  def close(self):
    pass
