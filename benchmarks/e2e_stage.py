"""What does one end-to-end INNg stage (classification + synthesis) cost?

Question 5 of the performance issue. Runs the real training loop,
`innjax.train.train`, on configs/svhn.py scaled down (the paper network
at 32x32x3, sum-mode synthesis, offline stand-in data, a fresh temporary workdir) for
a few stages, and splits every stage's wall time into the classification step
(`train.classification_step`), the synthesis (`synthesis.synthesize`: the jitted,
early-stopped sampler run over the pseudo-negatives) and the rest (snapshot into the
cascade, pool update, checkpoint, PNG grid, TensorBoard scalars). The two functions
are wrapped, not re-implemented: the wrappers only block on their results and read the
clock. Every XLA compilation is counted per stage (jax's compile hook): the first
stage compiles the training chunk and the sampler run; later stages should compile
nothing, since the cascade is preallocated to its final number of slots.

FLOP convention: per image forward = sum over convs 2*k*k*Cin*Cout*Hout*Wout + 2*D.
Classification: (3x forward - first conv) per image per update (forward, weight
gradients, input gradients of layers 2+). Synthesis: 2x forward per image per
applied step per active stage (sum mode), from the steps `synthesize` reports; the
iteration that finds the boundary crossed and the final P(real) pass are not counted.

Usage:
  python benchmarks/e2e_stage.py            # 3 stages, 20 updates, 100 negatives: ~6 min
  python benchmarks/e2e_stage.py --quick    # 2 stages, batch 20: ~3 min
  python benchmarks/e2e_stage.py --stages 4 --updates 50 --json out.json
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time

import jax
import numpy as np

import common
from innjax import models, synthesis, train


SIZES = {
  "stages": (3, 2),
  "updates": (20, 4),
  "batch": (100, 20),
  "max_steps": (20, 5),
  "negatives": (100, 20),
}


def parse_args():
  """The command line (see the module docstring), with defaults filled in."""
  p = common.make_parser(__doc__, repeats=1)
  common.add_training_args(p, SIZES)
  p.add_argument(
    "--negatives",
    type=int,
    default=None,
    help="pseudo-negatives per stage (default 100, quick 20)",
  )
  p.add_argument("--energy", default="sum", choices=("sum", "sequential"))
  return common.fill_defaults(p.parse_args(), **SIZES)


class StageClock:
  """Wraps `train.classification_step` and `synthesis.synthesize` to time each stage."""

  def __init__(self, counter: common.CompileCounter):
    self.counter = counter
    self.stages = []

  def close_stage(self, now: float) -> None:
    """Ends the open stage at `now`: its wall time and the compilations it saw."""
    if self.stages:
      last = self.stages[-1]
      last["total_s"] = now - last["t0"]
      last["compiles"] = self.counter.since(last["mark"])

  def classification(self, fn):
    """Wraps `train.classification_step`: opens a stage and times it."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      now = time.perf_counter()
      self.close_stage(now)
      self.stages.append({"t0": now, "mark": self.counter.mark()})
      out = jax.block_until_ready(fn(*args, **kwargs))
      self.stages[-1]["classification_s"] = time.perf_counter() - now
      self.stages[-1]["classification"] = out[1]
      return out

    return wrapper

  def synthesis(self, fn):
    """Wraps `synthesis.synthesize`: times the stage's synthesis."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      t0 = time.perf_counter()
      out = fn(*args, **kwargs)
      jax.block_until_ready(out[0])
      self.stages[-1]["synthesis_s"] = time.perf_counter() - t0
      self.stages[-1]["synthesis_steps"] = np.asarray(out[1]).tolist()
      self.stages[-1]["synthesis_p_real"] = np.asarray(out[2]).tolist()
      return out

    return wrapper


def main():
  """Runs the benchmark and prints its report."""
  args = parse_args()
  bench = common.Bench("e2e_stage", args)
  config, data = common.scaled_svhn_config(
    args.stages, args.updates, args.negatives, args.batch, args.max_steps, args.energy
  )
  workdir = tempfile.mkdtemp(prefix="innjax_bench_e2e_")
  originals = (train.classification_step, synthesis.synthesize)
  with common.CompileCounter() as counter:
    clock = StageClock(counter)
    train.classification_step = clock.classification(originals[0])
    synthesis.synthesize = clock.synthesis(originals[1])
    try:
      common.log(f"training {args.stages} stages in {workdir} ...")
      train.train(config, workdir)
      clock.close_stage(time.perf_counter())
    finally:
      train.classification_step, synthesis.synthesize = originals
      shutil.rmtree(workdir, ignore_errors=True)

  model = synthesis.build_model(config)
  size = int(config.data.image_size)
  batch = int(config.train.pos_batch) + int(config.train.neg_batch)
  rows = []
  for t, s in enumerate(clock.stages):
    updates = int(s["classification"]["classifier_updates"])
    cls_flops = common.train_step_flops(model, size, size, batch) * updates
    steps = np.asarray(s["synthesis_steps"], float)  # per synthesis batch
    passes = t + 1 if args.energy == "sum" else 1  # active slots (variant inng)
    syn_flops = (
      common.grad_step_flops(model, size, size, args.batch, passes, args.grad_factor)
      * steps.sum()
    )
    rows.append(
      {
        "stage": t + 1,
        "total_s": s["total_s"],
        "classification_s": s["classification_s"],
        "updates": updates,
        "ms_per_update": 1e3 * s["classification_s"] / updates,
        "classification_gflops": cls_flops / s["classification_s"] / 1e9,
        "synthesis_s": s["synthesis_s"],
        "synthesis_batches": len(steps),
        "synthesis_steps_mean": float(steps.mean()),
        "synthesis_p_real": float(np.mean(s["synthesis_p_real"])),
        "synthesis_img_steps_per_s": args.batch * steps.sum() / s["synthesis_s"],
        "synthesis_gflops": syn_flops / s["synthesis_s"] / 1e9,
        "other_s": s["total_s"] - s["classification_s"] - s["synthesis_s"],
        "compiles": len(s["compiles"]),
        "compile_s": sum(c for _, c in s["compiles"]),
        "compile_names": sorted({n for n, _ in s["compiles"]}),
        "loss": s["classification"]["loss_last"],
      }
    )
  bench.header(
    "innjax end-to-end stage (configs/svhn.py scaled down)",
    f"{data}; {args.stages} stages, {args.updates} classifier updates (50 + 50 "
    f"images), {args.negatives} negatives per stage synthesised in batches of "
    f"{args.batch}, {args.energy} energy, cap {args.max_steps} steps, "
    f"conv_impl {config.model.conv_impl} -> "
    f"{models.resolve_conv_impl(config.model.conv_impl)}",
  )
  headers = [
    "stage",
    "stage s",
    "classification s",
    "ms/update",
    "cls GFLOP/s",
    "synthesis s",
    "steps (mean)",
    "P(real)",
    "syn img*steps/s",
    "syn GFLOP/s",
    "other s",
    "XLA compilations",
    "compile s",
  ]
  table = [
    [
      r["stage"],
      common.fmt(r["total_s"]),
      common.fmt(r["classification_s"]),
      common.fmt(r["ms_per_update"]),
      common.fmt(r["classification_gflops"]),
      common.fmt(r["synthesis_s"]),
      common.fmt(r["synthesis_steps_mean"]),
      common.fmt(r["synthesis_p_real"], 3),
      common.fmt(r["synthesis_img_steps_per_s"]),
      common.fmt(r["synthesis_gflops"]),
      common.fmt(r["other_s"]),
      r["compiles"],
      common.fmt(r["compile_s"]),
    ]
    for r in rows
  ]
  print(common.markdown_table(headers, table, align="r" * 13))
  later = sum(r["compiles"] for r in rows[1:])
  print(
    "\nStage s = wall time from this stage's classification to the next one's "
    "(or the end); it includes compilation in stage 1. 'other s' = snapshot, "
    "pool update, checkpoint, PNG and TensorBoard writes. Stage 1 compiles: "
    + ", ".join(rows[0]["compile_names"][:8])
    + ". "
    f"XLA compilations after stage 1: {later} "
    f"({common.verdict(later == 0)}: no recompilation between stages). "
    f"Classification FLOPs per update = (3 x forward - first conv) x {batch}; "
    "synthesis FLOPs = 2 x forward x batch x applied steps x active stages."
  )
  bench.finish(rows=rows)


if __name__ == "__main__":
  main()
