"""Files innjax writes outside Orbax: whole or not at all, and never over an earlier one.

Samples, style renders, evaluation reports and PNG grids are written to a hidden
temporary file in the destination folder (`.NAME.PID-RANDOM.tmp`), flushed to disk,
and renamed to their final name only when complete. An interrupt (Ctrl-C), an error or
a full disk leaves either the complete file or nothing under the final name; a SIGKILL
in the middle of a write can leave the hidden temporary file, never a truncated output.

`write_file` replaces an existing file of the same name: the training run's negatives
grids, where a resumed stage rewrites its own grid. `write_new` never replaces one: a
set of files written together (a PNG and an `.npz`) gets the first free name among
`STEM`, `STEM-2`, `STEM-3`, ..., claimed with a hard link, which fails when the name
exists, so two processes writing at the same moment get different names.

Paths with a scheme (`gs://bucket/run`, `s3://...`; `is_uri`) are written through
etils.epath, as Orbax writes checkpoints there: each object is prepared in memory and
uploaded whole (an object store shows an object only once its upload completes), and
`write_new` checks names before writing instead of claiming them with a hard link.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import tempfile
from typing import BinaryIO, Callable, Dict

from innjax import errors

# Fills an open binary file, e.g. `lambda f: np.savez_compressed(f, images=x)`.
Writer = Callable[[BinaryIO], None]

# What os.link raises where the file system has no hard links (some FUSE and SMB
# mounts); `_link_new` then falls back to a check and a rename.
_NO_HARD_LINKS = {
  errno.EPERM,
  errno.ENOTSUP,
  errno.EOPNOTSUPP,
  errno.EMLINK,
  errno.ENOSYS,
  errno.EXDEV,
}


def _error(code, message: str) -> errors.WorkdirError:
  """A WorkdirError (an OSError) with errno `code` whose text is `message` alone.

  (Setting `strerror` too would make str() print "[Errno N] strerror" instead.)
  """
  err = errors.WorkdirError(message)
  err.errno = code
  return err


def is_uri(path) -> bool:
  """Whether `path` names storage that etils.epath reaches (gs://, s3://, ...), not a
  local file: such paths are written through epath (see `write_file`)."""
  return "://" in os.fspath(path)


def _probe_uri(folder: str) -> None:
  """Creates `folder` on remote storage, writes a small object there and removes it."""
  from etils import epath  # pylint: disable=g-import-not-at-top

  root = epath.Path(folder)
  root.mkdir(parents=True, exist_ok=True)
  probe = root / f".write_test_{os.getpid()}-{secrets.token_hex(4)}"
  probe.write_bytes(b"")
  probe.unlink()


def _write_uri(path: str, write: Writer) -> None:
  """Writes one object through epath, its bytes prepared in memory first.

  Object stores (GCS, S3) make an object visible only when its upload completes,
  so the object is whole or absent there too; there is no rename to make it so.
  """
  from etils import epath  # pylint: disable=g-import-not-at-top

  buffer = io.BytesIO()
  write(buffer)
  target = epath.Path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  target.write_bytes(buffer.getvalue())


def exists(path: str) -> bool:
  """Whether a file (or object) `path` exists, on local or remote storage."""
  if is_uri(path):
    from etils import epath  # pylint: disable=g-import-not-at-top

    return epath.Path(path).exists()
  return os.path.lexists(path)


def ensure_writable(folder: str, what: str, fix: str) -> None:
  """Creates `folder` and checks that a file can be written there.

  Args:
    folder: the destination folder.
    what: how a message names it, e.g. "workdir '/runs/a'".
    fix: what to do about it, e.g. "choose a writable --workdir".

  Raises:
    WorkdirError: "Cannot write to {what} (Permission denied); {fix}." (or the disk
      is full); an OSError.
  """
  try:
    if is_uri(folder):
      _probe_uri(folder)
    else:
      os.makedirs(folder, exist_ok=True)
      with tempfile.NamedTemporaryFile(dir=folder, prefix=".write_test_"):
        pass
  except OSError as err:
    if err.errno == errno.ENOSPC:
      raise _error(
        err.errno, f"The disk holding {what} is full; free space, or {fix}."
      ) from err
    raise _error(
      err.errno, f"Cannot write to {what} ({err.strerror or err}); {fix}."
    ) from err


def ensure_output_dir(folder: str, what: str) -> None:
  """`ensure_writable` for the outputs of sample, style and evaluate: the fix offered
  is to write elsewhere (`main.py --output_dir`), as for a read-only workdir.

  Args:
    folder: where the mode writes.
    what: the mode's files, e.g. "the samples".
  """
  ensure_writable(
    folder, f"{what} folder {folder!r}", "pass --output_dir=DIR to write them elsewhere"
  )


def _remove(path: str) -> None:
  try:
    os.unlink(path)
  except FileNotFoundError:
    pass


def _write_temp(path: str, write: Writer) -> str:
  """Writes a complete, synced temporary file beside `path`; returns its name."""
  folder, name = os.path.split(os.path.abspath(path))
  temp = os.path.join(folder, f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
  # os.open with 0o666 leaves the permissions to the umask, as open() would.
  fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())  # the data is on disk before the name points at it
  except BaseException:
    _remove(temp)
    raise
  return temp


def _failed(path: str, err: OSError) -> errors.WorkdirError:
  """A one-line error naming the file that could not be written."""
  cause = err.strerror or str(err)
  fix = "; free space and rerun" if err.errno == errno.ENOSPC else ""
  return _error(
    err.errno,
    f"Writing {path} failed ({cause}); nothing was written under that name{fix}.",
  )


def write_file(path: str, write: Writer) -> str:
  """Writes `path` atomically, replacing a file of that name; returns `path`.

  Args:
    path: the destination (its folder is created if needed).
    write: fills the open binary file.

  Raises:
    OSError: the file could not be written (the message names it); nothing is left
      under `path` but what was there before.
  """
  try:
    if is_uri(path):
      _write_uri(path, write)
      return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temp = _write_temp(path, write)
    try:
      os.replace(temp, path)
    except BaseException:
      _remove(temp)
      raise
  except OSError as err:
    raise _failed(path, err) from err
  return path


def _link_new(temp: str, path: str) -> bool:
  """Gives `temp`'s file the name `path` if no file has it.

  Returns:
    True if the file was renamed (no hard links here), False if linked (the
    temporary name stays and is removed by the caller).

  Raises:
    FileExistsError: `path` exists.
  """
  try:
    os.link(temp, path)
    return False
  except FileExistsError:
    raise
  except OSError as err:
    if err.errno not in _NO_HARD_LINKS:
      raise
  # Without hard links the check and the rename are two steps: two processes
  # taking the same name in the same instant could then both believe they have it.
  if os.path.lexists(path):
    raise FileExistsError(errno.EEXIST, "File exists", path)
  os.replace(temp, path)
  return True


def _claim(temps: Dict[str, str], paths: Dict[str, str]) -> bool:
  """Names every temporary file; on a clash undoes what it did and returns False."""
  done = []  # (suffix, whether it was renamed rather than linked)
  try:
    for suffix, path in paths.items():
      done.append((suffix, _link_new(temps[suffix], path)))
  except FileExistsError:
    for suffix, renamed in done:
      if renamed:
        os.replace(paths[suffix], temps[suffix])
      else:
        _remove(paths[suffix])
    return False
  return True


def _write_new_uri(folder: str, stem: str, writers: Dict[str, Writer]) -> Dict[str, str]:
  """`write_new` on remote storage: the first free name, then each object.

  Object stores have no hard links to claim a name with, so two processes writing
  the same name in the same instant could both take it (one object then wins).
  """
  n = 1
  while True:
    name = stem if n == 1 else f"{stem}-{n}"
    paths = {suffix: os.path.join(folder, name + suffix) for suffix in writers}
    if not any(exists(p) for p in paths.values()):
      break
    n += 1
  for suffix, write in writers.items():
    try:
      _write_uri(paths[suffix], write)
    except OSError as err:
      raise _failed(paths[suffix], err) from err
  return paths


def write_new(folder: str, stem: str, writers: Dict[str, Writer]) -> Dict[str, str]:
  """Writes a set of files under names that no file has yet; never replaces one.

  The files are `folder/NAME{suffix}` for each suffix of `writers`, with NAME the
  first of `stem`, `stem-2`, `stem-3`, ... for which none of them exists. Each file is
  complete before it gets its name (see the module docstring).

  Args:
    folder: the destination (created if needed).
    stem: the name before the suffixes, e.g. "samples_stage003_n8_seed0".
    writers: suffix (e.g. ".png", "_with_content.png") -> what fills that file.

  Returns:
    suffix -> the path written.

  Raises:
    OSError: a file could not be written (the message names it).
  """
  temps: Dict[str, str] = {}
  target = os.path.join(folder, stem)  # what an error message names
  if is_uri(folder):
    return _write_new_uri(folder, stem, writers)
  try:
    os.makedirs(folder, exist_ok=True)
    for suffix, write in writers.items():
      target = os.path.join(folder, stem + suffix)
      temps[suffix] = _write_temp(target, write)
    n = 1
    while True:
      name = stem if n == 1 else f"{stem}-{n}"
      paths = {suffix: os.path.join(folder, name + suffix) for suffix in writers}
      target = next(iter(paths.values()))
      if not any(os.path.lexists(p) for p in paths.values()) and _claim(temps, paths):
        return paths
      n += 1
  except OSError as err:
    raise _failed(target, err) from err
  finally:
    for temp in temps.values():
      _remove(temp)
