"""Kill a tiny training run with SIGKILL at random moments; resuming must lose nothing.

    python benchmarks/soak_kill.py --kills 20 --seed 0 --max-minutes 15

What it does:

1. Trains the tiny config (`configs/tiny.py`, `--stages` stages) once without
   interruption through `python main.py`, as a user would: the reference.
2. Runs the same command in a second workdir and SIGKILLs it at a random moment,
   again and again, each time starting the same command once more. A moment is
   either a random time after the process starts (imports, restoring, cleaning up
   after the previous kill, compiling; a quarter of the kills) or a random time in
   what is left of the run after its first stage finished (training, synthesis, PNG
   and event writes, asynchronous checkpoint saves; the rest). When a run finishes
   before its kill, it is compared with the reference and a new workdir starts the
   next episode.
3. After each kill it checks that the next start resumes from exactly the newest
   committed checkpoint step (`Resuming ... after stage N` with N the newest step
   folder on disk), and at the end of every episode that the whole final training
   state (cascade, classifier, optimizer state, pool, negatives, PRNG key) equals
   the reference bit for bit.

It prints a table of the kills and a summary line: kills survived of those made,
and whether every episode's final state equals the reference. A kill is survived
when the next start restored the newest committed step without an error and its
episode ended equal to the reference. The harness (`run_soak`) lives in
tests/soak_harness.py, which the test suite runs with 3 kills
(tests/test_reliability.py). JAX runs on the CPU, with a persistent compilation
cache so that each start compiles nothing twice.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(REPO, "tests") not in sys.path:
  sys.path.insert(0, os.path.join(REPO, "tests"))

import soak_harness  # pylint: disable=g-import-not-at-top,wrong-import-position


def soak_parser(description: str, kills: int, kills_help: str) -> argparse.ArgumentParser:
  """The command-line options the soak scripts share (this one, soak_concurrent.py)."""
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument("--kills", type=int, default=kills, help=kills_help)
  parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
  parser.add_argument("--stages", type=int, default=12, help="stages of the tiny run")
  parser.add_argument(
    "--max-minutes", type=float, default=15.0, help="stop making kills after this long"
  )
  parser.add_argument(
    "--root", default=None, help="workdirs go here (default: a new temporary folder)"
  )
  parser.add_argument(
    "--cache-dir", default=soak_harness.CACHE_DIR, help="persistent JAX compilation cache"
  )
  return parser


def main(argv=None) -> int:
  """Command-line entry: runs the soak and prints the table and the summary."""
  args = soak_parser(__doc__.split("\n")[0], 20, "SIGKILLs to deliver").parse_args(argv)
  root = args.root or tempfile.mkdtemp(prefix="innjax_soak_")
  summary = soak_harness.run_soak(
    args.kills, args.seed, args.stages, root, args.cache_dir, args.max_minutes * 60.0
  )
  print()
  print(
    "| kill | episode | moment | stages logged | committed | save cut | "
    "resumed after | ok |"
  )
  print("|---|---|---|---|---|---|---|---|")
  for k in summary["kill_log"]:
    print(
      f"| {k.index} | {k.episode} | {k.anchor} + {k.delay_s:.2f}s | "
      f"{k.last_stage_logged} | {k.committed} | {'yes' if k.save_interrupted else 'no'}"
      f" | {k.resumed_from} | {'yes' if k.restored_ok else 'NO'} |"
    )
  print()
  print(
    f"Survived {summary['survived']} of {summary['kills']} SIGKILLs "
    f"({summary['saves_interrupted']} during a checkpoint save); final state equal "
    f"to the uninterrupted run in {summary['episodes_equal']} of "
    f"{summary['episodes']} episodes; old steps left half deleted by a kill: "
    f"{summary['half_deleted_old_steps']}; {summary['seconds'] / 60:.1f} min"
    + (" (time bound reached)" if summary["timed_out"] else "")
    + "."
  )
  ok = summary["all_equal"] and summary["survived"] == summary["kills"]
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
