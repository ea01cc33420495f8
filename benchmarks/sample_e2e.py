"""Where does `python main.py --mode=sample` spend its time, and what does a stage cost
besides its classifier and its synthesis?

Two questions about the default job (configs/default.py, `python main.py`):

1. **Per-stage fixed cost.** The default job is trained for --stages stages in a
   fresh temporary workdir (or not at all, with --workdir naming a trained one), in
   this process, through `train.train`, with `train.classification_step`
   and `synthesis.synthesize` wrapped to read the clock (benchmarks/e2e_stage.py's
   StageClock). "other" = stage wall time - classification - synthesis: the
   snapshot into the cascade, the Wasserstein critic's threshold (one forward pass
   over positives), the pool update, the checkpoint, the PNG grid, the TensorBoard
   events, the log line and the host syncs. Target: under 5% of a stage (stages 2+;
   stage 1 also compiles).

2. **Sampling from the trained workdir.** `python main.py --mode=sample` is run as a
   person would (its wall time from the shell), --rounds times, alternating the
   persistent compilation cache off (`INNJAX_NO_CACHE=1`) and on (innjax's default,
   innjax/runtime.py, in a temporary cache folder filled by a first, untimed run). Beside it, the same `innjax.cli.run("sample", ...)` runs in a child
   process with clocks: start-up (interpreter and imports, from the child's launch),
   restore (`generate.load_cascade`), compile (every jaxpr trace, lowering and XLA
   compile or cache read, from jax's monitoring events) and sampling (the synthesis
   itself: `synthesis.synthesize_images` minus the compilation in it); "rest" is
   writing the files and the process exit. Target: everything but sampling under 25%
   of the wall time for the default job's 4 samples.

Usage:
  python benchmarks/sample_e2e.py                       # trains 3 stages (~5 min loaded)
  python benchmarks/sample_e2e.py --stages 20           # the full default job
  python benchmarks/sample_e2e.py --workdir workdir/default --stages 20   # no training
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CACHE_VAR = "JAX_COMPILATION_CACHE_DIR"


def parse_args(argv=None):
  """The command line; see the module docstring."""
  p = argparse.ArgumentParser(
    description=__doc__.split("\n")[0],
    epilog=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument(
    "--stages",
    type=int,
    default=3,
    help="config.num_stages of the default job (default 3; the job's own is 20)",
  )
  p.add_argument(
    "--workdir",
    default=None,
    help="a trained workdir of configs/default.py (skips training)",
  )
  p.add_argument("--rounds", type=int, default=3, help="rounds of cache off / on")
  p.add_argument("--json", default=None)
  p.add_argument("--child", default=None, help=argparse.SUPPRESS)
  return p.parse_args(argv)


def default_config(stages: int):
  """configs/default.py with `stages` stages (the config a plain `main.py` trains)."""
  sys.path.insert(0, REPO)
  from configs import default  # pylint: disable=import-outside-toplevel

  config = default.get_config()
  config.num_stages = stages
  return config


def train_default(stages: int, workdir: str) -> list:
  """Trains the default job in this process; returns StageClock's stage records."""
  sys.path.insert(0, HERE)
  import common  # pylint: disable=import-outside-toplevel
  import e2e_stage  # pylint: disable=import-outside-toplevel
  from innjax import synthesis, train  # pylint: disable=import-outside-toplevel

  originals = (train.classification_step, synthesis.synthesize)
  with common.CompileCounter() as counter:
    clock = e2e_stage.StageClock(counter)
    train.classification_step = clock.classification(originals[0])
    synthesis.synthesize = clock.synthesis(originals[1])
    try:
      train.train(default_config(stages), workdir)
      clock.close_stage(time.perf_counter())
    finally:
      train.classification_step, synthesis.synthesize = originals
  return [
    {
      "stage": i + 1,
      "total_s": s["total_s"],
      "classification_s": s["classification_s"],
      "synthesis_s": s["synthesis_s"],
      "other_s": s["total_s"] - s["classification_s"] - s["synthesis_s"],
      "compiles": len(s["compiles"]),
    }
    for i, s in enumerate(clock.stages)
  ]


def child(workdir: str, stages: int) -> dict:
  """`cli.run("sample", ...)` with clocks (see the module docstring)."""
  launched = float(os.environ["INNJAX_BENCH_LAUNCHED"])
  sys.path.insert(0, REPO)
  from innjax import runtime  # pylint: disable=import-outside-toplevel

  runtime.configure()  # as main.py does
  import jax  # pylint: disable=import-outside-toplevel
  from innjax import cli, generate, synthesis  # pylint: disable=import-outside-toplevel

  imported = time.time()
  compile_s = []

  def listener(event, duration, **kwargs):
    if event.startswith(
      ("/jax/core/compile/", "/jax/compilation_cache/")
    ) and event.endswith(("_duration", "_time_sec")):
      compile_s.append((event, duration))

  jax.monitoring.register_event_duration_secs_listener(listener)
  clocks = {}

  def wrap(name, fn):
    def wrapper(*a, **k):
      mark, t0 = len(compile_s), time.perf_counter()
      out = fn(*a, **k)
      clocks[name] = time.perf_counter() - t0
      clocks[name + "_compile"] = sum(d for _, d in compile_s[mark:])
      return out

    return wrapper

  generate.load_cascade = wrap("restore", generate.load_cascade)
  synthesis.synthesize_images = wrap("synthesize", synthesis.synthesize_images)
  code = cli.run("sample", default_config(stages), workdir)
  assert code == 0, code
  done = time.time()
  return {
    "startup_s": imported - launched,
    "restore_s": clocks["restore"],
    "restore_compile_s": clocks["restore_compile"],
    "synthesize_s": clocks["synthesize"],
    "synthesize_compile_s": clocks["synthesize_compile"],
    "compile_s": sum(d for _, d in compile_s),
    "in_process_s": done - imported,
    "events": len(compile_s),
  }


def cache_env(cache: str | None) -> dict:
  """The environment of a run with innjax's default cache in `cache`, or with none."""
  env = dict(os.environ)
  for name in (CACHE_VAR, "INNJAX_NO_CACHE", "XDG_CACHE_HOME"):
    env.pop(name, None)
  if cache:
    env["XDG_CACHE_HOME"] = cache  # innjax.runtime puts it in XDG_CACHE_HOME/innjax/jax
  else:
    env["INNJAX_NO_CACHE"] = "1"
  return env


def run_main(workdir: str, stages: int, cache: str | None) -> float:
  """Wall time of `python main.py --mode=sample` (cache folder or None)."""
  env = cache_env(cache)
  t0 = time.perf_counter()
  subprocess.run(
    [
      sys.executable,
      os.path.join(REPO, "main.py"),
      f"--workdir={workdir}",
      "--mode=sample",
      f"--config.num_stages={stages}",
    ],
    env=env,
    check=True,
    capture_output=True,
    cwd=REPO,
  )
  return time.perf_counter() - t0


def run_child(workdir: str, stages: int, cache: str | None) -> dict:
  """One clocked child (see `child`), with its wall time from launch to exit."""
  env = cache_env(cache)
  env["INNJAX_BENCH_LAUNCHED"] = repr(time.time())
  t0 = time.perf_counter()
  proc = subprocess.run(
    [sys.executable, __file__, "--child", workdir, "--stages", str(stages)],
    env=env,
    check=True,
    capture_output=True,
    text=True,
    cwd=REPO,
  )
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  out["wall_s"] = time.perf_counter() - t0
  return out


def split(r: dict) -> dict:
  """start-up / restore / compile / sampling / rest of one clocked child."""
  compile_s = r["compile_s"]
  sampling = r["synthesize_s"] - r["synthesize_compile_s"]
  restore = r["restore_s"] - r["restore_compile_s"]
  rest = r["wall_s"] - r["startup_s"] - restore - compile_s - sampling
  return {
    "wall": r["wall_s"],
    "start-up": r["startup_s"],
    "restore": restore,
    "compile": compile_s,
    "sampling": sampling,
    "rest": rest,
  }


def main() -> int:
  """Trains (unless --workdir), then times the sampling runs; prints the tables."""
  args = parse_args()
  if args.child:
    print(json.dumps(child(args.child, args.stages)))
    return 0
  sys.path.insert(0, HERE)
  import common  # pylint: disable=import-outside-toplevel

  load0 = os.getloadavg()
  tmp = tempfile.mkdtemp(prefix="innjax_bench_sample_")
  stages_rows = []
  workdir = args.workdir
  if workdir is None:
    workdir = os.path.join(tmp, "default")
    common.log(f"training configs/default.py with {args.stages} stages in {workdir} ...")
    stages_rows = train_default(args.stages, workdir)
  cache = os.path.join(tmp, "jax_cache")
  common.log("filling the compilation cache (untimed) ...")
  run_main(workdir, args.stages, cache)
  results = {"off": [], "on": []}
  mains = {"off": [], "on": []}
  for r in range(args.rounds):
    for name, folder in (("off", None), ("on", cache)):
      common.log(f"round {r + 1}/{args.rounds}: cache {name} ...")
      mains[name].append(run_main(workdir, args.stages, folder))
      results[name].append(split(run_child(workdir, args.stages, folder)))
      common.log(f"  main.py {mains[name][-1]:.1f} s; {results[name][-1]}")
  load1 = os.getloadavg()

  print("# `--mode=sample` time split and per-stage fixed cost (configs/default.py)\n")
  print(
    f"- CPU: {common._cpu_model()} ({common._cpu_flags()}), {os.cpu_count()} "
    f"logical CPUs; load average {load0[0]:.2f} at start, {load1[0]:.2f} at end"
  )
  print(
    f"- default job with config.num_stages={args.stages}"
    + ("" if args.workdir else " trained here in a temporary workdir")
    + "; 4 samples (config.sample.num), sequential, up to 100 steps per stage\n"
  )
  if stages_rows:
    table = [
      [
        s["stage"],
        common.fmt(s["total_s"]),
        common.fmt(s["classification_s"]),
        common.fmt(s["synthesis_s"]),
        common.fmt(s["other_s"], 2),
        common.fmt(100 * s["other_s"] / s["total_s"]),
        s["compiles"],
      ]
      for s in stages_rows
    ]
    print(
      common.markdown_table(
        [
          "stage",
          "stage s",
          "classification s",
          "synthesis s",
          "other s",
          "other %",
          "XLA compilations",
        ],
        table,
      )
    )
    later = [s for s in stages_rows[1:]]
    if later:
      share = 100 * sum(s["other_s"] for s in later) / sum(s["total_s"] for s in later)
      print(
        f"\nPer-stage fixed cost, stages 2-{len(stages_rows)}: {share:.1f}% of the "
        f"stage (target <= 5%): {common.verdict(share <= 5)}\n"
      )
  parts = ["wall", "start-up", "restore", "compile", "sampling", "rest"]
  table = []
  for name in ("off", "on"):
    med = {p: statistics.median(r[p] for r in results[name]) for p in parts}
    overhead = 100 * (1 - med["sampling"] / med["wall"])
    table.append(
      [f"cache {name}", common.fmt(statistics.median(mains[name]))]
      + [common.fmt(med[p], 2) for p in parts]
      + [f"{overhead:.0f}% ({common.verdict(overhead < 25)})"]
    )
  print(
    common.markdown_table(
      [
        "persistent compilation cache",
        "main.py wall s",
        "clocked wall s",
        "start-up s",
        "restore s",
        "compile s",
        "sampling s",
        "rest s",
        "all but sampling (target < 25%)",
      ],
      table,
    )
  )
  print(
    f"\nMedians of {args.rounds} alternating rounds. 'main.py wall s': `python "
    "main.py --mode=sample` from launch to exit. The other columns come from a "
    "clocked run of the same code (innjax.cli.run) in its own process; compile = "
    "tracing, lowering and XLA compilation or the cache read."
  )
  common.write_json(
    args.json,
    {
      "stages": stages_rows,
      "sample": results,
      "main_wall": mains,
      "load": [load0, load1],
    },
  )
  shutil.rmtree(tmp, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
