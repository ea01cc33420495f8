"""What the command line shows while it works: the backend it runs on, and progress.

`backend_problem` turns a backend that JAX_PLATFORMS asks for but this machine lacks
into one line: an error when nothing it lists is available, a warning naming the
fallback otherwise. `quiet_tensorflow_import` hides TensorFlow's load-time notices.
`Progress` shows how far a long loop (sampling, evaluation) has got: a bar in a
terminal, a periodic plain line in a log.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import sys
import tempfile
import threading
import time

from absl import logging

# JAX_PLATFORMS names -> the platform name that jax.default_backend() reports.
_PLATFORM_ALIASES = {"cuda": "gpu", "rocm": "gpu"}


def backend_problem() -> str | None:
  """Checks the backends that JAX_PLATFORMS asks for; logs a one-line notice.

  Returns:
    None when JAX starts (after a warning if it fell back from the first platform
    asked for), or the one-line error when none of the asked platforms is here.
  """
  import jax  # pylint: disable=g-import-not-at-top  (not needed for --help)

  requested = [
    p.strip().lower() for p in os.environ.get("JAX_PLATFORMS", "").split(",") if p.strip()
  ]
  try:
    backend = jax.default_backend()
  except RuntimeError as err:
    if not requested:
      raise
    cause = str(err).split(" (set JAX_PLATFORMS")[0]
    return (
      f"JAX_PLATFORMS={','.join(requested)} asks for a backend this machine does "
      f"not have ({cause}); unset JAX_PLATFORMS to run on what is available."
    )
  if requested and _PLATFORM_ALIASES.get(requested[0], requested[0]) != backend:
    logging.warning(
      "JAX_PLATFORMS asks for %s first, which is not available here: running on %s.",
      requested[0],
      backend,
    )
  return None


# What TensorFlow's C++ code prints to stderr when it loads, whatever
# TF_CPP_MIN_LOG_LEVEL says (its logging is not initialised yet): notices, not
# problems.
_TF_NOTICES = (
  "All log messages before absl::InitializeLog()",
  "oneDNN custom operations",
  "cpu_feature_guard.cc",
  "This TensorFlow binary is optimized",
  "To enable the following instructions",
)


class QuietImport:
  """A meta-path hook: while module `name` is first imported, stderr (file
  descriptor 2, where C++ code writes) goes to a temporary file; afterwards every line
  but those containing one of `notices` is written back to stderr.

  Args:
    name: the module, e.g. "tensorflow".
    notices: substrings of the lines to drop.
  """

  def __init__(self, name: str, notices=_TF_NOTICES):
    self.name = name
    self.notices = tuple(notices)

  def find_spec(self, fullname, path=None, target=None):
    """The module's usual spec, its loader wrapped as described above."""
    del path, target
    if fullname != self.name:
      return None
    sys.meta_path.remove(self)  # once; the real finders locate the package
    try:
      spec = importlib.util.find_spec(fullname)
    finally:
      sys.meta_path.insert(0, self)
    if spec is None or spec.loader is None:
      return spec
    exec_module = spec.loader.exec_module

    def quiet_exec(module):
      sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
      with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
          exec_module(module)
        finally:
          sys.stderr.flush()
          os.dup2(saved, 2)
          os.close(saved)
          capture.seek(0)
          for line in capture.read().decode(errors="replace").splitlines(True):
            if not any(notice in line for notice in self.notices):
              sys.stderr.write(line)

    spec.loader.exec_module = quiet_exec
    return spec


def quiet_tensorflow_import() -> None:
  """Hides TensorFlow's load-time notices (oneDNN, CPU features) if it is imported
  later, e.g. to read a tfds dataset; its warnings and errors still show."""
  if "tensorflow" not in sys.modules and not any(
    isinstance(f, QuietImport) and f.name == "tensorflow" for f in sys.meta_path
  ):
    sys.meta_path.insert(0, QuietImport("tensorflow"))


class Progress:
  """Progress of a loop of `total` units: a bar in a terminal, plain lines elsewhere.

  When stderr is a terminal, a tqdm bar (rate and ETA) that disappears when done,
  so the summary lines stay as they were. Otherwise (a log file, CI, a notebook) an
  INFO line such as `sampling: 3/10 batches (30%), 0.52 batches/s, ETA 13s` at most
  every `interval` seconds: a short loop prints nothing.

  Work done on the host is counted with `update`. Work dispatched to a device is
  handed to `track`: a watcher thread waits for each array in turn and counts it once
  computed, so the loop itself waits for nothing it did not wait for before.

  Args:
    total: the number of units.
    desc: what is being done, e.g. "sampling".
    unit: the unit's name, e.g. "batch" (plural: + "es" or "s").
    interval: seconds between plain lines.
    bar: True for a bar, False for lines; None asks whether stderr is a terminal.
  """

  def __init__(
    self,
    total: int,
    desc: str,
    unit: str = "batch",
    interval: float = 30.0,
    bar: bool | None = None,
  ):
    self.total, self.desc, self.unit, self.interval = int(total), desc, unit, interval
    self.done = 0
    self._start = self._last_line = time.monotonic()
    self._lock = threading.Lock()
    self._queue = None
    self._watcher = None
    if bar is None:
      bar = sys.stderr.isatty()
    self._bar = None
    if bar:
      import tqdm  # pylint: disable=g-import-not-at-top

      self._bar = tqdm.tqdm(
        total=self.total,
        desc=desc,
        unit=unit,
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
      )

  def _units(self) -> str:
    return self.unit + ("es" if self.unit.endswith(("s", "h")) else "s")

  def update(self, n: int = 1) -> None:
    """Counts `n` units as done."""
    with self._lock:
      self.done += n
      if self._bar is not None:
        self._bar.update(n)
        return
      now = time.monotonic()
      if now - self._last_line < self.interval or self.done >= self.total:
        return
      self._last_line = now
      rate = self.done / max(now - self._start, 1e-9)
      eta = (self.total - self.done) / rate if rate > 0 else float("inf")
      logging.info(
        "%s: %d/%d %s (%d%%), %.2f %s/s, ETA %s",
        self.desc,
        self.done,
        self.total,
        self._units(),
        100 * self.done // max(self.total, 1),
        rate,
        self._units(),
        _duration(eta),
      )

  def _watch(self) -> None:
    import jax  # pylint: disable=g-import-not-at-top

    while True:
      item = self._queue.get()
      if item is None:
        return
      try:
        jax.block_until_ready(item)
      except Exception:  # pylint: disable=broad-except  (the loop reports it)
        pass
      self.update()

  def track(self, array) -> None:
    """Counts one unit when `array` (or pytree of arrays) has been computed."""
    if self._watcher is None:
      self._queue = queue.Queue()
      self._watcher = threading.Thread(target=self._watch, daemon=True)
      self._watcher.start()
    self._queue.put(array)

  def close(self, wait: bool = True) -> None:
    """Ends the display; with `wait`, first lets the watcher count what it tracks."""
    if self._watcher is not None:
      self._queue.put(None)
      if wait:
        self._watcher.join()
      self._watcher = None
    if self._bar is not None:
      self._bar.close()
      self._bar = None

  def __enter__(self):
    return self

  def __exit__(self, kind, value, traceback):
    # After an error (or Ctrl-C) nothing is waited for.
    self.close(wait=kind is None)


def _duration(seconds: float) -> str:
  """`13s`, `4m05s`, `2h03m`, or `?`."""
  if not seconds < 1e7:
    return "?"
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
