"""Reading back the TensorBoard event files innjax writes, without TensorFlow.

The tests check what `innjax.summaries` wrote with an independent reader of the
record framing (length, CRCs, `Event` protocol buffer).
"""

import struct


def read_events(path: str) -> list:
  """The `Event`s of one event file.

  Raises:
    ValueError: a record's checksum does not match (a damaged file).
  """
  from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
  from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c  # pylint: disable=g-import-not-at-top

  with open(path, "rb") as f:
    data = f.read()
  events, at = [], 0
  while at < len(data):
    (length,) = struct.unpack_from("<Q", data, at)
    body = data[at + 12 : at + 12 + length]
    (crc,) = struct.unpack_from("<I", data, at + 12 + length)
    if crc != masked_crc32c(body):
      raise ValueError(f"{path}: a damaged record at byte {at}.")
    events.append(event_pb2.Event.FromString(body))
    at += 16 + length
  return events
