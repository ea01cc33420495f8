"""One training run per workdir: an OS file lock that dies with its process.

Two training runs on one workdir destroy each other's work: Orbax's start-up in the
second deletes the first one's in-flight temporary checkpoint, both write the same
steps, and the last one to finish silently replaces the other's result. `hold` makes
the training run the only writer of its workdir:

    with workdir_lock.hold(workdir):
      ...  # create the checkpoint manager, train, save

It takes `fcntl.flock(LOCK_EX | LOCK_NB)` on `<workdir>/training.lock` and keeps the
file open until the block ends. The kernel drops the lock when the process dies, by
any means (SIGKILL, the OOM killer), so a killed run never leaves a stale lock that
blocks the resume. The file records who holds it (pid, host, start time, command), and
a second run that finds it locked raises `WorkdirBusyError` naming that process.

Only training takes the lock. Sampling, style transfer and evaluation only read the
checkpoints and may run beside it.

The file is deleted when the lock is released normally. A run that was killed leaves
it behind, holding the dead run's details, but unlocked: the next run takes it over,
and its details are only ever shown while a live process holds the lock. Because the
file is deleted, a run that opened it just before the deletion could lock a file that
is no longer the one at the path; `acquire` checks after locking that the path still
names the file it locked, and starts over if not.

Several hosts (`main.py --distributed`) run one training run together, so only process
0 takes the lock, on the workdir that every host shares, and the others learn the
outcome from it (the `agree` argument of `hold`): every host goes on, or every host
stops with the same error. A lock per host would make all but one host refuse.

File systems without flock support (some network and FUSE mounts), and workdirs on
object storage (`gs://bucket/run`, `s3://...`, written through etils.epath and Orbax,
which have no locks a dead process releases): `acquire` logs a warning that a second
run cannot be detected there, and training goes on unprotected, rather than making
training impossible on that storage.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from typing import Callable, Iterator, Optional

from absl import logging

from innjax import errors
from innjax import outputs

try:
  import fcntl
except ImportError:  # Windows: no flock; acquire() warns and goes on
  fcntl = None

LOCK_NAME = "training.lock"

# What flock raises on file systems that do not implement it.
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}


class WorkdirBusyError(errors.WorkdirError, RuntimeError):
  """Another live training process holds the workdir's lock."""


def lock_path(workdir: str) -> str:
  """Where the lock of `workdir` lives."""
  return os.path.join(workdir, LOCK_NAME)


def _holder_record(command: Optional[str]) -> dict:
  """What the lock file says about this process."""
  return {
    "pid": os.getpid(),
    "host": socket.gethostname(),
    "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    "command": command if command is not None else " ".join(["python"] + sys.argv),
  }


def read_holder(workdir: str) -> Optional[dict]:
  """The record in `workdir`'s lock file, or None if there is none (or not yet).

  Only meaningful while the file is locked: a killed run's record stays in the file.
  """
  try:
    with open(lock_path(workdir), encoding="utf-8") as f:
      record = json.loads(f.read())
  except (OSError, ValueError):
    return None
  return record if isinstance(record, dict) else None


def busy_message(workdir: str, record: Optional[dict]) -> str:
  """The one-line error for a workdir whose lock is held by the process in `record`."""
  if record:
    who = (
      f"pid {record.get('pid', '?')} on host {record.get('host', '?')}, "
      f"started {record.get('started', '?')}: {record.get('command', '?')}"
    )
  else:
    who = "a process that is just starting; its details are not recorded yet"
  return (
    f"Workdir {workdir!r} is in use by another training run ({who}). Only one "
    "training run may write a workdir: wait for that one to finish (or stop it), "
    "or train in another --workdir. --mode=sample, --mode=style and "
    "--mode=evaluate only read it and can run beside it."
  )


class WorkdirLock:
  """A held lock on a workdir (`acquire` returns it); `release` or `with` frees it.

  Attributes:
    path: the lock file.
    locked: False when the file system does not support locks (nothing is held).
  """

  def __init__(self, path: str, fd: Optional[int]):
    self.path = path
    self._fd = fd
    self.locked = fd is not None

  def release(self) -> None:
    """Deletes the lock file and drops the lock (idempotent)."""
    if self._fd is None:
      return
    try:
      # Deleted while still locked, so no other process can be holding it now.
      os.unlink(self.path)
    except OSError:
      pass
    os.close(self._fd)  # closing the last descriptor drops the flock
    self._fd = None

  def __enter__(self) -> "WorkdirLock":
    return self

  def __exit__(self, *exc_info) -> None:
    self.release()


def _unsupported(path: str, err: OSError) -> WorkdirLock:
  """The warning for a workdir that cannot be locked, and a lock holding nothing."""
  logging.warning(
    "The file system of %s does not support file locks (%s); innjax cannot detect "
    "a second training run on this workdir here, so start only one.",
    path,
    err.strerror or err,
  )
  return WorkdirLock(path, None)


def acquire(workdir: str, command: Optional[str] = None) -> WorkdirLock:
  """Locks `workdir` for this process's training run, or raises WorkdirBusyError.

  Args:
    workdir: an existing, writable folder.
    command: recorded as the holder's command line (default: this process's).

  Returns:
    The held lock; keep it until training ends.

  Raises:
    WorkdirBusyError: another live process holds the lock (its pid, host, start time
      and command are in the message).
    OSError: the lock file cannot be created.
  """
  path = lock_path(workdir)
  if outputs.is_uri(workdir):  # gs://, s3://: object storage, without flock
    logging.warning(
      "Workdir %s is on remote storage, which has no file locks; innjax cannot "
      "detect a second training run on this workdir there, so start only one.",
      workdir,
    )
    return WorkdirLock(path, None)
  if fcntl is None:
    return _unsupported(path, OSError(errno.ENOSYS, "no fcntl module on this system"))
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
      os.close(fd)
      if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
        raise WorkdirBusyError(busy_message(workdir, _settled_holder(workdir))) from None
      if err.errno in _UNSUPPORTED:
        return _unsupported(path, err)
      raise
    try:
      same_file = os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
      same_file = False
    if not same_file:
      # The previous holder released (and deleted) the file between our open and
      # our lock: what we hold is no longer the workdir's lock file.
      os.close(fd)
      continue
    data = json.dumps(_holder_record(command)).encode("utf-8") + b"\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    return WorkdirLock(path, fd)


def _settled_holder(workdir: str, wait_s: float = 1.0) -> Optional[dict]:
  """The holder's record; waits briefly if it has locked but not yet written it."""
  deadline = time.monotonic() + wait_s
  while True:
    record = read_holder(workdir)
    if record or time.monotonic() > deadline:
      return record
    time.sleep(0.05)


@contextlib.contextmanager
def hold(
  workdir: str,
  main_process: bool = True,
  agree: Optional[Callable[[bool], bool]] = None,
  command: Optional[str] = None,
) -> Iterator[Optional[WorkdirLock]]:
  """Holds `workdir`'s lock for the duration of the block (see the module docstring).

  Args:
    workdir: the run's folder (must exist).
    main_process: whether this process takes the lock: True in a single-process run,
      and only on process 0 of a multi-host run.
    agree: multi-host runs: a collective that every process calls with process 0's
      success and that returns process 0's value on every host (e.g.
      `innjax.sharding.from_process_0`), so all hosts go on or all stop. None in a
      single-process run.
    command: recorded as the holder's command line (default: this process's).

  Yields:
    The lock on process 0, None on the other hosts.

  Raises:
    WorkdirBusyError: another training run holds the lock (on every host).
  """
  lock, error = None, None
  if main_process:
    try:
      lock = acquire(workdir, command)
    except WorkdirBusyError as err:
      error = err
  if agree is not None and not agree(error is None) and error is None:
    error = WorkdirBusyError(
      "process 0 of this run could not lock the workdir (see its message). "
      + busy_message(workdir, read_holder(workdir))
    )
  if error is not None:
    raise error
  try:
    yield lock
  finally:
    if lock is not None:
      lock.release()
