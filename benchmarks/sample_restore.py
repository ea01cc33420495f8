"""What sampling reads from a checkpoint: the cascade item alone, or the whole state.

`generate.load_cascade` (behind --mode=sample, style, evaluate, export and
`innjax.load`) restores only a step's "cascade" item; before that item existed it
restored the whole TrainState, which `checkpointing.Manager.restore_latest` still
does for training. Both are timed here on the same workdir, each in a fresh child
process, alternating: seconds and bytes read (`rchar` of /proc/self/io, so Linux
only; it counts reads served from the page cache too).

The workdir is the tiny config (configs/tiny.py) with a 60,000-negative pool, two
stages, trained first into a temporary folder (about a minute on a CPU) unless
--workdir names one trained by an earlier run of this script.

Usage:
  python benchmarks/sample_restore.py
  python benchmarks/sample_restore.py --workdir /tmp/restore_bench --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def bench_config():
  """The tiny config with a large pool: the pool dominates a checkpoint, as in SVHN's."""
  from configs import tiny  # pylint: disable=g-import-not-at-top

  config = tiny.get_config()
  config.num_stages = 2
  config.model.features = (32, 64)
  config.pool.negatives_per_stage = 20000
  config.pool.capacity = 60000
  config.synthesis.batch_size = 2000
  config.synthesis.max_steps = 3
  config.train.steps_per_stage = 5
  config.checkpoint.async_save = False
  return config


def bytes_read() -> int:
  """Bytes this process has read through system calls so far."""
  with open("/proc/self/io") as f:
    return int(dict(line.split(": ") for line in f.read().splitlines())["rchar"])


def measure(what: str, workdir: str) -> dict:
  """Restores `what` ("cascade" or "state") from `workdir`; its seconds and bytes."""
  # pylint: disable=g-import-not-at-top  (the parent process needs no JAX)
  import jax
  from innjax import checkpointing, generate, synthesis, train

  config = bench_config()
  t0, read0 = time.perf_counter(), bytes_read()
  if what == "cascade":
    restored = generate.load_cascade(config, workdir)[0]
  else:
    model = synthesis.build_model(config)
    template = jax.eval_shape(lambda: train.init_state(config, model, jax.random.key(0)))
    manager = checkpointing.Manager(workdir, config, read_only=True)
    restored = manager.restore_latest(template)
    manager.close()
  jax.block_until_ready(restored)
  return {"seconds": time.perf_counter() - t0, "bytes_read": bytes_read() - read0}


def main(argv=None):
  p = argparse.ArgumentParser(
    description=__doc__.split("\n")[0],
    epilog=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--workdir", default=None, help="a workdir trained by this script")
  p.add_argument("--rounds", type=int, default=3, help="restores of each kind")
  p.add_argument("--child", choices=("cascade", "state"), help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.child:
    print(json.dumps(measure(args.child, args.workdir)))
    return
  workdir = args.workdir or tempfile.mkdtemp(prefix="innjax_restore_bench_")
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    from innjax import train  # pylint: disable=g-import-not-at-top

    train.train(bench_config(), workdir)
  runs = {"cascade": [], "state": []}
  for _ in range(args.rounds):
    for what in runs:
      out = subprocess.run(
        [sys.executable, __file__, "--child", what, "--workdir", workdir],
        capture_output=True,
        text=True,
        check=True,
      ).stdout
      runs[what].append(json.loads(out.strip().splitlines()[-1]))
  for what, rows in runs.items():
    print(
      f"{what:8s} median {statistics.median(r['seconds'] for r in rows):.3f} s, "
      f"{statistics.median(r['bytes_read'] for r in rows) / 1e6:.1f} MB read "
      f"({len(rows)} restores)"
    )
  print(f"workdir: {workdir}")


if __name__ == "__main__":
  main()
