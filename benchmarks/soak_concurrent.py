"""Two training runs started on one workdir, again and again, with random SIGKILLs.

    python benchmarks/soak_concurrent.py --kills 10 --seed 0

What it does:

1. Trains the tiny config (`configs/tiny.py`, `--stages` stages, 40 by default) once
   without interruption through `python main.py`: the reference.
2. On one workdir, each round starts the same `python main.py` command twice: the
   second a quarter of the time together with the first (the two race for the
   lock), otherwise timed to ask for the lock at a random moment of the first one's
   restore or training (checkpoint saves included). Only one may train: the other
   must exit with code 2 and the message naming the holder. Then both are SIGKILLed
   if still running, a quarter of the time while the second starts up, otherwise at
   a random moment of the rest of the training (counted from the first stage line),
   and the next round starts two more. When a round's run finishes before its kill,
   the episode ends: its final state is compared with the reference and a new
   workdir starts the next one. Once `--kills` kills have hit a run in training, a
   last round starts two runs and lets them end.
3. Checks, for every process: it exited 0 (finished), 2 with the busy message naming
   the other starter's pid, or was killed by the soak; never a traceback or any other
   code. In every round no two processes held the workdir (restored or started a
   run) at the same time, and the one that did resumed from the newest committed
   step. At the end of every episode the whole final training state (cascade,
   classifier, optimizer state, pool, negatives, PRNG key) equals the reference bit
   for bit.

It prints a table of the rounds and a summary line. The helpers (process handling,
state comparison) are those of tests/soak_harness.py, the options those of
benchmarks/soak_kill.py.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (os.path.join(REPO, "tests"), os.path.join(REPO, "benchmarks")):
  if path not in sys.path:
    sys.path.insert(0, path)

import soak_harness  # pylint: disable=g-import-not-at-top,wrong-import-position
import soak_kill  # pylint: disable=g-import-not-at-top,wrong-import-position

_BUSY = re.compile(
  r"innjax: error: Workdir .* is in use by another training run "
  r"\(pid (\d+) on host "
)
# The share of a start-up (spawn to first stage) that passes before a run asks for the
# lock: imports and config checks come first, restoring and compiling after.
_LOCK_LEAD = 0.6
_HELD = re.compile(r"Resuming .* after stage \d+\b|Starting a new run in ")


@dataclasses.dataclass
class Round:
  """One round: two starters on the shared workdir and what became of them."""

  index: int
  episode: int
  offset_s: float  # the second starter's delay after the first
  kill_s: float | None  # SIGKILL moment after the second start (None: no kill)
  committed_before: int  # newest committed step when the round began
  outcomes: tuple = ()  # per process: "finished", "refused", "killed" or "FAILED"
  refused_during: str = ""  # what the holder was doing when the other was refused
  killed_at_stage: int | None = None  # a holder killed after logging this stage
  overlap: bool = False  # two processes held the workdir at the same time
  resumed_from: int | None = None
  ok: bool = False


def _outcome(process: soak_harness.Process, rc: int, killed: bool) -> str:
  text = process.text()
  if rc == 0 and "Training finished" in text:
    return "finished"
  if rc == 2 and _BUSY.search(text) and not _HELD.search(text):
    return "refused"
  if killed and rc == -signal.SIGKILL:
    return "killed"
  return "FAILED"


def _first_time(process: soak_harness.Process, pattern: re.Pattern) -> float | None:
  return next((t for t, line in process.lines if pattern.search(line)), None)


def _stages_before(process: soak_harness.Process, moment: float) -> int:
  """The newest stage `process` had logged before `moment` (0: none)."""
  found = [
    int(m.group(1))
    for t, line in process.lines
    if t < moment and (m := soak_harness.STAGE_LINE.search(line))
  ]
  return max(found, default=0)


def _first_stage_time(processes, deadline: float) -> float | None:
  """When the first of `processes` logged a stage (None: all ended before one did)."""
  while time.monotonic() < deadline:
    times = [_first_time(p, soak_harness.STAGE_LINE) for p in processes]
    times = [t for t in times if t is not None]
    if times:
      return min(times)
    if all(p.popen.poll() is not None for p in processes):
      return None
    time.sleep(0.02)
  return None


def play_round(
  index: int,
  episode: int,
  workdir: str,
  command: list[str],
  env: dict,
  rng: random.Random,
  timing: soak_harness.Timing,
  stages: int,
  kill: bool,
  timeout: float,
) -> tuple[Round, list[str]]:
  """Starts two runs on `workdir`, maybe kills them; returns the round and the logs.

  The second start: a quarter of the time together with the first (the two race for
  the lock), otherwise timed so that it asks for the lock at a random moment of the
  first one's restore or training (checkpoint saves included). The kill: a quarter
  of the time during the second one's start-up, otherwise at a random moment of the
  rest of the training, counted from the first stage line either run logs, so that a
  loaded machine (slower start-ups) does not push the kills into the start-up.
  """
  committed = max(soak_harness.committed_steps(workdir), default=0)
  training_s = (stages - committed + 1) * timing.stage_s
  first = soak_harness.Process(command, env)
  if rng.random() < 0.25:
    delay = rng.uniform(0.0, 1.0)  # both start up together and race for the lock
  else:
    # The second one asks for the lock about _LOCK_LEAD of a start-up after it is
    # spawned: aim that moment at the first one's restore or training.
    aim = rng.uniform(0.5 * timing.startup_s, timing.startup_s + training_s)
    delay = max(0.0, aim - _LOCK_LEAD * timing.startup_s)
  time.sleep(delay)
  second = soak_harness.Process(command, env)
  offset = second.started - first.started
  processes = [first, second]
  killed = [False, False]
  kill_s = None
  if kill:
    if rng.random() < 0.25:
      kill_at = second.started + rng.uniform(0.0, timing.startup_s)
    else:
      trained = _first_stage_time(processes, time.monotonic() + timeout)
      kill_at = max(trained or time.monotonic(), second.started) + rng.uniform(
        0.0, training_s
      )
    kill_s = kill_at - second.started
    while time.monotonic() < kill_at and any(p.popen.poll() is None for p in processes):
      time.sleep(0.01)
    for i, p in enumerate(processes):  # both at once: the round ends here
      if p.popen.poll() is None:
        os.kill(p.popen.pid, signal.SIGKILL)
        killed[i] = True
  codes = [p.wait(timeout) for p in processes]
  outcomes = tuple(_outcome(p, rc, k) for p, rc, k in zip(processes, codes, killed))
  held = sorted(
    (p for p in processes if _first_time(p, _HELD) is not None),
    key=lambda p: _first_time(p, _HELD),
  )
  resumed = [soak_harness.resumed_from(p.text()) for p in held]
  result = Round(
    index=index,
    episode=episode,
    offset_s=offset,
    kill_s=kill_s,
    committed_before=committed,
    outcomes=outcomes,
    resumed_from=resumed[0] if resumed else None,
  )
  # Two holders in one round are fine only one after the other: the second took the
  # workdir after the first had finished (and then had nothing left to train).
  result.overlap = len(held) == 2 and _first_time(held[1], _HELD) < held[0].lines[-1][0]
  names_holder = True
  for i, outcome in enumerate(outcomes):
    if outcome == "refused":
      refused, holder = processes[i], processes[1 - i]
      names_holder = int(_BUSY.search(refused.text()).group(1)) == holder.popen.pid
      stage = _stages_before(holder, _first_time(refused, _BUSY))
      result.refused_during = f"stage {stage + 1}" if stage else "start-up"
  for p, was_killed in zip(processes, killed):
    if was_killed and p in held:
      result.killed_at_stage = _stages_before(p, float("inf"))
  result.ok = (
    "FAILED" not in outcomes
    and not result.overlap
    and names_holder
    and resumed == [committed, stages][: len(held)]
  )
  return result, [p.text() for p in processes]


def run_soak(
  kills: int,
  seed: int,
  stages: int,
  root: str,
  cache_dir: str,
  max_seconds: float,
  log=print,
) -> dict:
  """Runs the soak (see the module docstring); returns a summary dict.

  Args:
    kills: rounds whose SIGKILL must hit a run that had started training.
    seed: seeds the moments (the training itself uses the config's seed).
    stages: stages of the tiny run.
    root: folder for the workdirs (emptied first).
    cache_dir: persistent JAX compilation cache shared by all processes.
    max_seconds: stop making kills after this long (the summary says so).
    log: where progress lines go.
  """
  rng = random.Random(seed)
  overrides = soak_harness.overrides_for(stages)
  env = soak_harness.subprocess_env(cache_dir)
  shutil.rmtree(root, ignore_errors=True)
  os.makedirs(root)
  t_begin = time.monotonic()
  timeout = 600.0
  reference_dir = os.path.join(root, "reference")
  rc, text, process = soak_harness.run_to_end(
    soak_harness.train_command(reference_dir, overrides), env, timeout
  )
  if rc != 0:
    raise RuntimeError(f"the reference run failed:\n{text}")
  timing = soak_harness.timing_of(process)
  log(
    f"reference run: first stage after {timing.startup_s:.1f}s, then "
    f"{timing.stage_s:.2f}s per stage"
  )

  rounds: list[Round] = []
  episodes = []  # (episode, final state equal to the reference)
  failures = []
  episode, timed_out = 1, False
  workdir = os.path.join(root, "episode_1")
  while True:
    timed_out = timed_out or time.monotonic() - t_begin > max_seconds
    training_kills = sum(
      r.killed_at_stage is not None and r.killed_at_stage > 0 for r in rounds
    )
    kill = training_kills < kills and not timed_out
    command = soak_harness.train_command(workdir, overrides)
    result, texts = play_round(
      len(rounds) + 1, episode, workdir, command, env, rng, timing, stages, kill, timeout
    )
    rounds.append(result)
    log(
      f"round {result.index:2d} (episode {episode}): second start +"
      f"{result.offset_s:.2f}s, kill "
      + ("none" if result.kill_s is None else f"+{result.kill_s:.2f}s")
      + f": {', '.join(result.outcomes)}"
      + (
        f" (refused during the holder's {result.refused_during})"
        if result.refused_during
        else ""
      )
      + (
        ""
        if result.killed_at_stage is None
        else f", holder killed after stage {result.killed_at_stage}"
      )
      + f"; resumed after {result.resumed_from} (newest committed "
      f"{result.committed_before}); ok: {result.ok}"
    )
    if not result.ok:
      failures.append((result.index, [t[-3000:] for t in texts]))
    if "finished" not in result.outcomes:
      if not kill and "killed" not in result.outcomes:
        break  # nothing finished and nothing was killed: nothing would change
      continue
    equal = soak_harness.equals_reference(workdir, reference_dir, overrides)
    episodes.append((episode, equal))
    log(f"episode {episode}: finished, final state equal to the reference: {equal}")
    if not kill:
      break
    episode += 1
    workdir = os.path.join(root, f"episode_{episode}")

  outcomes = [o for r in rounds for o in r.outcomes]
  return {
    "rounds": len(rounds),
    "kills_requested": kills,
    "kills": sum(r.kill_s is not None and "killed" in r.outcomes for r in rounds),
    "training_kills": sum(bool(r.killed_at_stage) for r in rounds),
    "refused": outcomes.count("refused"),
    "refused_during_training": sum(r.refused_during.startswith("stage") for r in rounds),
    "failed": outcomes.count("FAILED"),
    "overlaps": sum(r.overlap for r in rounds),
    "rounds_ok": sum(r.ok for r in rounds),
    "episodes": len(episodes),
    "episodes_equal": sum(eq for _, eq in episodes),
    "all_ok": (
      bool(episodes) and all(eq for _, eq in episodes) and all(r.ok for r in rounds)
    ),
    "timed_out": timed_out,
    "seconds": time.monotonic() - t_begin,
    "round_log": rounds,
    "failures": failures,
  }


def main(argv=None) -> int:
  """Command-line entry: runs the soak and prints the table and the summary."""
  parser = soak_kill.soak_parser(
    __doc__.split("\n")[0],
    10,
    "rounds whose SIGKILL must hit a run that had started training",
  )
  parser.set_defaults(stages=40)  # enough training for a second start to land in
  args = parser.parse_args(argv)
  root = args.root or tempfile.mkdtemp(prefix="innjax_soak_concurrent_")
  summary = run_soak(
    args.kills, args.seed, args.stages, root, args.cache_dir, args.max_minutes * 60.0
  )
  print()
  print(
    "| round | episode | second start | kill | outcomes | refused during | "
    "holder killed after stage | resumed after | newest committed | ok |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in summary["round_log"]:
    kill = "none" if r.kill_s is None else f"+{r.kill_s:.2f}s"
    print(
      f"| {r.index} | {r.episode} | +{r.offset_s:.2f}s | {kill} | "
      f"{', '.join(r.outcomes)} | {r.refused_during or '-'} | "
      f"{'-' if r.killed_at_stage is None else r.killed_at_stage} | "
      f"{r.resumed_from} | {r.committed_before} | {'yes' if r.ok else 'NO'} |"
    )
  for index, texts in summary["failures"]:
    print(f"\nround {index} failed; the two logs end with:")
    for text in texts:
      print(text)
  print()
  print(
    f"{summary['rounds']} rounds of two concurrent starters on one workdir: "
    f"{summary['refused']} starts refused with the busy message "
    f"({summary['refused_during_training']} while the other run trained), "
    f"{summary['kills']} rounds ended by SIGKILL ({summary['training_kills']} "
    f"killing a run in training), {summary['failed']} processes failed, "
    f"{summary['overlaps']} rounds with two runs holding the workdir at once; "
    f"{summary['rounds_ok']} of {summary['rounds']} rounds correct (every start "
    f"resumed from the newest committed step); final state equal to the "
    f"uninterrupted run in {summary['episodes_equal']} of {summary['episodes']} "
    f"episodes; {summary['seconds'] / 60:.1f} min"
    + (" (time bound reached)" if summary["timed_out"] else "")
    + "."
  )
  return 0 if summary["all_ok"] else 1


if __name__ == "__main__":
  sys.exit(main())
