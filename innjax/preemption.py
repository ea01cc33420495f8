"""Stopping a training run cleanly on SIGTERM or SIGINT.

Preemptible TPUs and shared GPU queues end a job with SIGTERM and a grace period; a
person presses Ctrl-C (SIGINT). Killing the process at any moment is already safe
(Orbax commits every checkpoint atomically), but it gives no message and may leave a
checkpoint write half done. `SignalGuard` turns the first SIGTERM or SIGINT into a stop
request that the training loop polls at safe points (between classifier chunks,
between synthesis batches and between stages). The loop then drops the stage in
progress, waits until every pending checkpoint is committed and raises
`TrainingInterrupted`; resuming redoes the dropped stage exactly, because a stage
depends only on the previous stage's checkpoint (PRNG keys included). A second signal
gets the behaviour that was installed before (Ctrl-C twice stops at once).

    with preemption.SignalGuard() as stop:
      train.train(config, workdir, should_stop=stop)
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable, Optional

from absl import logging

# What `should_stop` returns: a reason such as "SIGTERM" when a stop is requested,
# or None (anything falsy) to go on.
StopCheck = Optional[Callable[[], Optional[str]]]


class TrainingInterrupted(Exception):
  """Training stopped at a safe point because a stop was requested.

  Attributes:
    reason: what asked for the stop ("SIGTERM", "SIGINT", or the value returned by
      a custom `should_stop`).
    completed_stages: stages whose checkpoint is committed when the exception
      reaches the caller (a rerun resumes after the last of them); None while the
      exception is still inside the training loop.
  """

  def __init__(self, reason: str, completed_stages: int | None = None):
    self.reason = reason
    self.completed_stages = completed_stages
    super().__init__(reason)

  def __str__(self):
    if self.completed_stages is None:
      return f"stop requested by {self.reason}"
    return f"stopped by {self.reason} after {self.completed_stages} completed stage(s)"


def raise_if_requested(should_stop: StopCheck) -> None:
  """Raises TrainingInterrupted if `should_stop` (may be None) asks for a stop."""
  if should_stop is None:
    return
  reason = should_stop()
  if reason:
    raise TrainingInterrupted(reason if isinstance(reason, str) else "a stop request")


class SignalGuard:
  """Context manager: records the first SIGTERM/SIGINT instead of dying on it.

  Calling the guard returns the name of the signal received ("SIGTERM"), or None. On
  exit the handlers that were installed before are put back. Signal handlers can only
  be set from the main thread; elsewhere the guard installs nothing and never
  reports a stop.

  Args:
    signals: the signals to catch.
  """

  def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
    self._signals = tuple(signals)
    self._previous = {}
    self._received = None

  def __call__(self) -> Optional[str]:
    return self._received

  def _handle(self, signum, frame):
    name = signal.Signals(signum).name
    if self._received is None:
      self._received = name
      logging.warning(
        "Received %s: stopping after the current classifier chunk or synthesis "
        "batch and keeping the last completed stage's checkpoint (send it again to "
        "stop at once).",
        name,
      )
      return
    # A second signal means "now": hand it to whatever was installed before us.
    previous = self._previous.get(signum, signal.SIG_DFL)
    self._restore()
    if callable(previous):
      previous(signum, frame)
    elif previous == signal.SIG_DFL:
      os.kill(os.getpid(), signum)

  def _restore(self):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    self._previous = {}

  def __enter__(self) -> "SignalGuard":
    if threading.current_thread() is threading.main_thread():
      for signum in self._signals:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    self._restore()
