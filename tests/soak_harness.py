"""Training runs in child processes, killed and resumed: the soak harness.

`run_soak` starts `python main.py` on configs/tiny.py, SIGKILLs it at random moments,
starts it again each time, and checks that every start resumed from the newest
committed checkpoint and that each finished run ends bit for bit equal to an
uninterrupted one. tests/test_reliability.py runs it with three kills;
benchmarks/soak_kill.py with many, and benchmarks/soak_concurrent.py builds its
concurrent starters from the same pieces (`Process`, `train_command`,
`subprocess_env`, `load_state`, `states_equal`). JAX runs on the CPU, with a
persistent compilation cache so that each start compiles nothing twice.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # for `configs` and `innjax` when a benchmark imports this
  sys.path.insert(0, REPO)

# The persistent JAX compilation cache the child processes share, across runs too.
CACHE_DIR = os.path.join(tempfile.gettempdir(), "innjax_soak_jax_cache")

# What the training command logs: a finished stage, a resume, a fresh start.
STAGE_LINE = re.compile(r"\] stage (\d+)/(\d+):")
RESUME_LINE = re.compile(r"Resuming .* after stage (\d+)\b")
START_LINE = re.compile(r"Starting a new run in ")


def overrides_for(stages: int) -> dict:
  """Config overrides of the soak run (applied to configs/tiny.py)."""
  return {"num_stages": stages}


def train_command(workdir: str, overrides: dict) -> list[str]:
  """The `python main.py` command line that trains the tiny config in `workdir`."""
  flags = [f"--config.{key}={value}" for key, value in overrides.items()]
  return [
    sys.executable,
    os.path.join(REPO, "main.py"),
    f"--config={os.path.join(REPO, 'configs', 'tiny.py')}",
    f"--workdir={workdir}",
    *flags,
  ]


def subprocess_env(cache_dir: str) -> dict:
  """Environment of the training processes: CPU, persistent compilation cache."""
  env = dict(os.environ)
  env.update(
    {
      "JAX_PLATFORMS": "cpu",
      "JAX_COMPILATION_CACHE_DIR": cache_dir,
      "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
      "PYTHONUNBUFFERED": "1",
    }
  )
  return env


class Process:
  """A training process whose log lines are collected, with arrival times, by a thread."""

  def __init__(self, command: list[str], env: dict):
    self.started = time.monotonic()
    self.popen = subprocess.Popen(
      command,
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    self.lines: list[tuple[float, str]] = []
    self._cond = threading.Condition()
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.popen.stdout:
      with self._cond:
        self.lines.append((time.monotonic(), line.rstrip("\n")))
        self._cond.notify_all()
    with self._cond:
      self._cond.notify_all()

  def wait_for(self, pattern: re.Pattern, deadline: float) -> float | None:
    """Monotonic time of the first line matching `pattern`; None if it exits first."""
    with self._cond:
      while True:
        for t, line in self.lines:
          if pattern.search(line):
            return t
        if self.popen.poll() is not None and not self._reader.is_alive():
          return None
        if time.monotonic() > deadline:
          return None
        self._cond.wait(timeout=0.05)

  def wait(self, timeout: float) -> int:
    rc = self.popen.wait(timeout=timeout)
    self._reader.join(timeout=10)
    return rc

  def text(self) -> str:
    with self._cond:
      return "\n".join(line for _, line in self.lines)


def committed_steps(workdir: str) -> list[int]:
  """Step folders Orbax has committed (temporary folders are named otherwise)."""
  folder = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(folder):
    return []
  return sorted(int(name) for name in os.listdir(folder) if name.isdigit())


def half_deleted_steps(workdir: str) -> list[int]:
  """Old step folders whose deletion (beyond checkpoint.max_to_keep) a kill cut short.

  Orbax deletes a step folder file by file; such a step is never the newest, is not
  loaded while a newer one exists, and goes with Orbax's next save.
  """
  steps = committed_steps(workdir)
  folder = os.path.join(workdir, "checkpoints")
  return [
    s
    for s in steps[:-1]
    if not os.path.exists(os.path.join(folder, str(s), "_CHECKPOINT_METADATA"))
  ]


def temporary_folders(workdir: str) -> list[str]:
  """Folders of checkpoint saves that did not finish."""
  folder = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(folder):
    return []
  return [name for name in os.listdir(folder) if "tmp" in name]


def run_to_end(command, env, timeout: float) -> tuple[int, str, Process]:
  """Runs `command` to completion; returns (exit code, log, process)."""
  process = Process(command, env)
  try:
    rc = process.wait(timeout)
  except subprocess.TimeoutExpired:
    process.popen.kill()
    process.wait(30)
    raise
  return rc, process.text(), process


@dataclasses.dataclass
class Timing:
  """When to kill: seconds from spawn to the first stage line, and per stage."""

  startup_s: float
  stage_s: float


def timing_of(process: Process) -> Timing:
  """Measures `Timing` from a finished reference process's log."""
  stage_times = [t for t, line in process.lines if STAGE_LINE.search(line)]
  if not stage_times:
    raise RuntimeError("the reference run logged no stage:\n" + process.text())
  startup = stage_times[0] - process.started
  gaps = [b - a for a, b in zip(stage_times, stage_times[1:])]
  stage = sum(gaps) / len(gaps) if gaps else 0.5
  return Timing(startup_s=startup, stage_s=max(stage, 0.05))


def resumed_from(log: str) -> int | None:
  """The stage a process said it resumed after (0 for a fresh start), or None."""
  match = RESUME_LINE.search(log)
  if match:
    return int(match.group(1))
  return 0 if START_LINE.search(log) else None


def tiny_config(overrides: dict):
  """configs/tiny.py with dotted `overrides` applied."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from innjax import cli  # pylint: disable=g-import-not-at-top

  return cli.with_overrides(tiny.get_config(), overrides)


def state_template(config):
  """The abstract TrainState of `config`: what a checkpoint restores into."""
  import jax  # pylint: disable=g-import-not-at-top
  from innjax import synthesis, train  # pylint: disable=g-import-not-at-top

  model = synthesis.build_model(config)
  return jax.eval_shape(lambda: train.init_state(config, model, jax.random.key(0)))


def load_state(workdir: str, config):
  """The newest committed TrainState of `config` in `workdir` (in this process)."""
  from innjax import checkpointing  # pylint: disable=g-import-not-at-top

  manager = checkpointing.Manager(workdir, config, read_only=True)
  try:
    return manager.restore_latest(state_template(config))
  finally:
    manager.close()


def states_equal(a, b) -> bool:
  """Whether two TrainStates are equal bit for bit, leaf by leaf (PRNG key included)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  a = a.replace(key=jax.random.key_data(a.key))
  b = b.replace(key=jax.random.key_data(b.key))
  leaves_a, tree_a = jax.tree_util.tree_flatten(a)
  leaves_b, tree_b = jax.tree_util.tree_flatten(b)
  return tree_a == tree_b and all(
    np.asarray(x).dtype == np.asarray(y).dtype
    and np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
    for x, y in zip(leaves_a, leaves_b)
  )


def equals_reference(workdir: str, reference_dir: str, overrides: dict) -> bool:
  """Whether the tiny run in `workdir` ended bit for bit as the one in `reference_dir`."""
  config = tiny_config(overrides)
  return states_equal(load_state(workdir, config), load_state(reference_dir, config))


@dataclasses.dataclass
class Kill:
  """One SIGKILL and what the next start made of it."""

  index: int
  episode: int
  anchor: str  # "start" (after spawn) or "stage" (after its first stage)
  delay_s: float
  last_stage_logged: int  # the newest stage line the killed process printed (0: none)
  committed: int  # newest committed step on disk after the kill (0: none)
  save_interrupted: bool  # a temporary checkpoint folder was left by the kill
  resumed_from: int | None = None  # what the next start restored
  restored_ok: bool = False


def run_soak(
  kills: int,
  seed: int,
  stages: int,
  root: str,
  cache_dir: str,
  max_seconds: float,
  timing: Timing | None = None,
  kinds: list[str] | None = None,
  startup_fraction: float = 0.25,
  reference_dir: str | None = None,
  log: Callable[[str], None] = print,
) -> dict:
  """SIGKILLs the tiny run `kills` times and checks that resuming loses nothing.

  Episodes train the run in a fresh workdir, killing it at random moments and
  starting the same command again each time, until it finishes; its final state is
  then compared with the reference run. A kill is survived when the next start
  restored the newest committed step and its episode ended equal to the reference.
  The full procedure is described in benchmarks/soak_kill.py.

  Args:
    kills: SIGKILLs to deliver.
    seed: seeds the kill moments (the training itself uses the config's seed).
    stages: stages of the tiny run.
    root: folder for the workdirs (emptied first).
    cache_dir: persistent JAX compilation cache shared by all processes.
    max_seconds: stop making kills after this long (the summary says so).
    timing: kill-moment scale; None measures it from the reference run. When
      given, the reference runs in parallel with the first episode.
    kinds: the anchor of each kill ("start" or "stage"); None draws them with
      `startup_fraction`.
    reference_dir: a workdir that already holds the uninterrupted run of the same
      config (e.g. trained in-process); None trains one with `python main.py`.
    log: where progress lines go.

  Returns:
    A dict: `kills` made, `survived`, `episodes` and `episodes_equal`, `all_equal`,
    `saves_interrupted` (kills that cut a checkpoint save short),
    `half_deleted_old_steps`, `timed_out`, `seconds`, `timing` and `kill_log` (one
    `Kill` each).
  """
  rng = random.Random(seed)
  overrides = overrides_for(stages)
  env = subprocess_env(cache_dir)
  shutil.rmtree(root, ignore_errors=True)
  os.makedirs(root)
  t_begin = time.monotonic()
  per_run_timeout = 600.0

  reference = {}
  if reference_dir is None:
    reference_dir = os.path.join(root, "reference")

    def run_reference():
      reference["rc"], reference["log"], reference["process"] = run_to_end(
        train_command(reference_dir, overrides), env, per_run_timeout
      )
  else:
    reference["rc"] = 0

    def run_reference():
      pass

  thread = threading.Thread(target=run_reference)
  thread.start()
  if timing is not None:
    timing = dataclasses.replace(timing)  # adapted below; the caller's stays as given
  else:
    thread.join()
    timing = timing_of(reference["process"])
    log(
      f"reference run: exit code {reference['rc']}, first stage after "
      f"{timing.startup_s:.1f}s, then {timing.stage_s:.2f}s per stage"
    )

  made: list[Kill] = []
  episodes = []  # (episode, final state equal to the reference)
  episode, workdir = 1, os.path.join(root, "episode_1")
  pending: list[Kill] = []  # kills whose next start has not yet said what it restored
  timed_out = False
  leftovers = 0  # half-deleted old steps found at the end of the episodes
  while True:
    if len(made) < kills and time.monotonic() - t_begin > max_seconds:
      timed_out = True
    want_kill = len(made) < kills and not timed_out
    process = Process(train_command(workdir, overrides), env)
    killed, kind, delay = False, None, 0.0
    if want_kill:
      kind = (
        kinds[len(made)]
        if kinds
        else ("start" if rng.random() < startup_fraction else "stage")
      )
      if kind == "start":
        delay = rng.uniform(0.0, timing.startup_s)
        anchor_time = process.started
      else:
        # Anywhere in the rest of the run, the final checkpoint commit included.
        remaining = stages - max(committed_steps(workdir), default=0)
        delay = rng.uniform(0.0, (remaining + 1) * timing.stage_s)
        anchor_time = process.wait_for(STAGE_LINE, time.monotonic() + per_run_timeout)
      if anchor_time is not None:
        try:
          process.popen.wait(timeout=max(0.0, anchor_time + delay - time.monotonic()))
        except subprocess.TimeoutExpired:
          os.kill(process.popen.pid, signal.SIGKILL)
          killed = True
    rc = process.wait(per_run_timeout)
    first_stage = process.wait_for(STAGE_LINE, time.monotonic())
    if first_stage is not None:
      # Later starts load compiled code from the cache: scale start-up kills to them.
      timing.startup_s = min(timing.startup_s, first_stage - process.started)
    resumed = resumed_from(process.text())
    if resumed is not None or not killed:
      # This start got far enough to say what it restored (or ran to its end). A
      # start killed before that changed no step, so it answers for earlier kills too.
      for kill in pending:
        kill.resumed_from = resumed
        kill.restored_ok = resumed == kill.committed
      pending = []
    if killed and rc == -signal.SIGKILL:
      stages_logged = [int(m.group(1)) for m in STAGE_LINE.finditer(process.text())]
      kill = Kill(
        index=len(made) + 1,
        episode=episode,
        anchor=kind,
        delay_s=delay,
        last_stage_logged=max(stages_logged, default=0),
        committed=max(committed_steps(workdir), default=0),
        save_interrupted=bool(temporary_folders(workdir)),
      )
      made.append(kill)
      pending.append(kill)
      log(
        f"kill {kill.index:2d} (episode {episode}, {kind} + {delay:.2f}s): "
        f"stages logged {kill.last_stage_logged}, committed {kill.committed}, "
        f"save interrupted: {kill.save_interrupted}"
      )
      continue
    if rc != 0:
      raise RuntimeError(f"training failed (exit code {rc}):\n{process.text()}")
    thread.join()
    if reference.get("rc") != 0:
      raise RuntimeError(f"the reference run failed:\n{reference.get('log')}")
    equal = equals_reference(workdir, reference_dir, overrides)
    episodes.append((episode, equal))
    leftovers += len(half_deleted_steps(workdir))
    log(f"episode {episode}: finished, final state equal to the reference: {equal}")
    if len(made) >= kills or timed_out:
      break
    episode += 1
    workdir = os.path.join(root, f"episode_{episode}")

  equal_by_episode = dict(episodes)
  survived = [k for k in made if k.restored_ok and equal_by_episode.get(k.episode)]
  return {
    "kills": len(made),
    "kills_requested": kills,
    "survived": len(survived),
    "episodes": len(episodes),
    "episodes_equal": sum(eq for _, eq in episodes),
    "all_equal": all(eq for _, eq in episodes) and bool(episodes),
    "saves_interrupted": sum(k.save_interrupted for k in made),
    "half_deleted_old_steps": leftovers,
    "timed_out": timed_out,
    "seconds": time.monotonic() - t_begin,
    "timing": timing,
    "kill_log": made,
  }
