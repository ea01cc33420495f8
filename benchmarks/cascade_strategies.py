"""Per-step time of the cascade energy's input gradient, by strategy and conv impl.

Times the jitted

    jax.grad(lambda x, p: cascade_logits(logit_fn, p, x, strategy).sum())

(the work of one synthesis step in sum mode, without the Adam update) for the
paper's default `Classifier()`, for each stage count, image size, stacking strategy
("scan", "unrolled", "vmap") and convolution implementation ("xla", "im2col"). The
stacked variables are passed as a jit argument (not closed over, so XLA cannot fold
them into constants), every stage has its own weights and non-trivial BatchNorm
statistics, and the input is N(0,1) clipped to [-1, 1].

Reported per cell: compile time (trace+lower, XLA compile) and the first execution,
separately from the median of the timed calls that follow; ms/step, ms per stage,
GFLOP/s and percent of a measured float32 matmul rate; "vs Tx1" is
time(T stages) / (T * time(1 stage)) for the same strategy, impl and batch (1.00 =
each stage costs what a lone stage costs, < 1 = stacking amortises per-call
overheads, > 1 = stacking costs extra).
"dg med/max" compares the gradient with the first cell measured for the same size
and stage count (im2col/scan by default): per image, the largest absolute
difference; then its median and maximum over the batch. The median should be at
float32 rounding (~1e-7 for gradients of ~0.1); a larger maximum on a single image
is a leaky-ReLU kink flip (a pre-activation within rounding of zero takes the other
slope in one implementation), not a disagreement between the implementations.

FLOP convention: per image forward = sum over convs 2*k*k*Cin*Cout*Hout*Wout + 2*D
(dense); one forward + input-gradient pass = 2x forward (no weight gradient is
computed); change with --grad-factor (3 = the training-step convention).

The native XLA convolution is very slow on XLA:CPU for the deep, small-spatial
layers (seconds per stage at batch 100; see conv_layers.py), so a cell whose estimated time per call (1-stage time x stages)
exceeds --slow-threshold seconds runs at --slow-batch instead (the batch column says
which); pass --slow-threshold inf for the whole grid at --batch (tens of minutes on
a 2-core CPU).

Usage:
  python benchmarks/cascade_strategies.py                 # full grid, ~10-15 min CPU
  python benchmarks/cascade_strategies.py --quick         # 32x32 only, batch 20, ~3 min
  python benchmarks/cascade_strategies.py --impls im2col --stages 1,10,20 --json out.json
"""

from __future__ import annotations


import jax
import numpy as np

import common
from innjax import cascade, models


def parse_args():
  """The command line (see the module docstring), with defaults filled in."""
  p = common.make_parser(__doc__, repeats=5)
  p.add_argument("--batch", type=int, default=None, help="default 100 (quick 20)")
  p.add_argument(
    "--sizes", type=common.parse_int_list, default=None, help="default 32,64 (quick 32)"
  )
  p.add_argument("--stages", type=common.parse_int_list, default=[1, 10])
  p.add_argument(
    "--strategies", type=common.parse_str_list, default=list(cascade.STRATEGIES)
  )
  p.add_argument("--impls", type=common.parse_str_list, default=["im2col", "xla"])
  p.add_argument(
    "--slow-batch",
    type=int,
    default=None,
    help="batch for cells estimated slower than --slow-threshold (default 20, quick 5)",
  )
  p.add_argument(
    "--slow-threshold",
    type=float,
    default=None,
    help="seconds per call above which a cell uses --slow-batch "
    "(default 30, quick 3; inf disables)",
  )
  args = common.fill_defaults(
    p.parse_args(),
    batch=(100, 20),
    sizes=([32, 64], [32]),
    slow_batch=(20, 5),
    slow_threshold=(30.0, 3.0),
    cell_budget=(15.0, 4.0),
  )
  for s in args.strategies:
    if s not in cascade.STRATEGIES:
      p.error(f"unknown strategy {s!r}; choose from {cascade.STRATEGIES}")
  for i in args.impls:
    if i not in ("xla", "im2col", "auto"):
      p.error(f"unknown conv impl {i!r}")
  return args


def main():
  """Runs the benchmark and prints its report."""
  args = parse_args()
  bench = common.Bench("cascade_strategies", args)
  key = jax.random.PRNGKey(args.seed)
  k_var, k_x = jax.random.split(key)
  max_stages = max(args.stages)
  resolved_auto = models.resolve_conv_impl("auto")

  rows = []
  ref_time = {}  # (size, impl, strategy, batch) -> 1-stage median seconds
  ref_grad = {}  # (size, stages) -> (label, gradient at args.batch rows)

  def measure(size, impl, strategy, stages, batch, model, stacked_all, x_full):
    """Compiles and times one cell; returns its row."""
    stacked = jax.tree_util.tree_map(lambda l: l[:stages], stacked_all)
    x = x_full[:batch]
    logit_fn = models.make_logit_fn(model)

    def energy(xx, params):
      return cascade.cascade_logits(logit_fn, params, xx, strategy).sum()

    grad_fn = jax.grad(energy)
    common.log(
      f"  size {size} impl {impl} {strategy:8s} T={stages:<3d} "
      f"batch {batch}: compiling ..."
    )
    compiled, cinfo = common.compile_jitted(grad_fn, x, stacked)
    out = {}

    def call():
      out["g"] = compiled(x, stacked)
      return out["g"]

    timing = common.time_cell(args, call)
    g = np.asarray(out["g"])
    ref_key = (size, stages)
    if ref_key not in ref_grad:
      ref_grad[ref_key] = (f"{impl}/{strategy}", g)
    # Per-image max |difference|; the median says whether the two compute the same
    # function, the max shows isolated leaky-ReLU kink flips (a pre-activation
    # within rounding of 0 takes the other slope in one implementation).
    per_image = np.abs(ref_grad[ref_key][1][:batch] - g).reshape(batch, -1).max(1)
    diff_med, diff = float(np.median(per_image)), float(per_image.max())
    flops = common.grad_step_flops(model, size, size, batch, stages, args.grad_factor)
    med = timing["median_s"]
    row = {
      "size": size,
      "impl": impl,
      "strategy": strategy,
      "stages": stages,
      "batch": batch,
      "trace_lower_s": cinfo["trace_lower_s"],
      "compile_s": cinfo["compile_s"],
      "first_exec_s": timing["warmup_s"][0],
      "first_call_total_s": cinfo["trace_lower_s"]
      + cinfo["compile_s"]
      + timing["warmup_s"][0],
      "median_s": med,
      "min_s": timing["min_s"],
      "max_s": timing["max_s"],
      "repeats": timing["repeats"],
      "times_s": timing["times_s"],
      **common.rate_fields(flops, med, batch, bench.peak_gflops),
      "max_abs_grad_diff": diff,
      "median_image_max_abs_grad_diff": diff_med,
      "max_abs_grad": float(np.abs(g).max()),
      "grad_ref": ref_grad[ref_key][0],
      "temp_mb": cinfo.get("temp_mb"),
    }
    if stages == 1:
      ref_time[(size, impl, strategy, batch)] = med
    one = ref_time.get((size, impl, strategy, batch))
    row["ratio_vs_T_x_1stage"] = med / (stages * one) if one else None
    common.log(
      f"    {med * 1e3:9.1f} ms/step  {row['gflops']:6.1f} GFLOP/s  "
      f"compile {cinfo['compile_s']:.1f} s  x{timing['repeats']}"
    )
    rows.append(row)
    return row

  for size in args.sizes:
    x_full = common.random_images(jax.random.fold_in(k_x, size), args.batch, size)
    # Variables are interchangeable between conv implementations: build them once.
    common.log(f"size {size}: building {max_stages} stages ...")
    stacked_all = common.stacked_variables(
      models.Classifier(), size, max_stages, jax.random.fold_in(k_var, size)
    )
    for impl in args.impls:
      model = models.Classifier(conv_impl=impl)
      for stages in sorted(args.stages):
        for strategy in args.strategies:
          batch = args.batch
          one = ref_time.get((size, impl, strategy, args.batch))
          if (
            stages > 1
            and one is not None
            and one * stages > args.slow_threshold
            and args.slow_batch < args.batch
          ):
            batch = args.slow_batch
            common.log(
              f"  estimated {one * stages:.0f} s per call at batch "
              f"{args.batch}: using batch {batch}"
            )
            if (size, impl, strategy, batch) not in ref_time and 1 in args.stages:
              measure(size, impl, strategy, 1, batch, model, stacked_all, x_full)
          measure(size, impl, strategy, stages, batch, model, stacked_all, x_full)

  bench.header(
    "cascade_logits input-gradient: strategy x conv impl",
    f"conv_impl 'auto' resolves to '{resolved_auto}' on this backend",
  )
  print_report(args, rows, resolved_auto)
  bench.finish(auto_resolves_to=resolved_auto, rows=rows)


def print_report(args, rows, resolved_auto):
  """Prints the report tables below the header."""
  headers = [
    "size",
    "impl",
    "strategy",
    "T",
    "batch",
    "compile s",
    "1st exec s",
    "ms/step",
    "ms/stage",
    "GFLOP/s",
    "% peak",
    "vs Tx1",
    "dg med/max",
    "n",
  ]
  table = []
  for r in rows:
    table.append(
      [
        f"{r['size']}x{r['size']}",
        r["impl"],
        r["strategy"],
        r["stages"],
        r["batch"],
        common.fmt(r["trace_lower_s"] + r["compile_s"]),
        common.fmt(r["first_exec_s"], 2),
        common.fmt(r["median_s"] * 1e3),
        common.fmt(r["median_s"] * 1e3 / r["stages"]),
        common.fmt(r["gflops"]),
        common.fmt(r["pct_peak"], 0),
        common.fmt(r["ratio_vs_T_x_1stage"], 2),
        f"{r['median_image_max_abs_grad_diff']:.0e}/{r['max_abs_grad_diff']:.0e}",
        r["repeats"],
      ]
    )
  print(common.markdown_table(headers, table, align="lllrrrrrrrrrrr"))
  print()
  print(
    f"Median of n timed calls after {max(args.warmup, 1)} warm-up call(s); "
    f"'compile s' = trace+lower+XLA compile, '1st exec s' = first execution "
    f"after compile (first call = their sum). 'vs Tx1' = t(T) / (T * t(1)) for "
    f"the same impl, strategy and batch. 'dg med/max' = median/max over images "
    f"of the per-image max |gradient difference| from the first cell of the same "
    f"size and T (isolated large maxima are leaky-ReLU kink flips). "
    + common.FLOP_NOTE.format(factor=args.grad_factor)
    + f" Cells estimated above {args.slow_threshold:g} s/call at batch "
    f"{args.batch} ran at batch {args.slow_batch}."
  )
  print()
  print(summary(rows, resolved_auto))


def summary(rows, resolved_auto):
  """Fastest strategy and impl per (size, T), and whether 'auto' picks the faster impl.

  Cells may have run at different batches (slow ones at --slow-batch), so they are
  compared by time per image per stage.
  """
  lines = ["Fastest per (size, T), compared by microseconds per image per stage:"]
  groups = {}
  for r in rows:
    groups.setdefault((r["size"], r["stages"]), []).append(r)

  def per(r):
    return r["median_s"] / (r["batch"] * r["stages"])

  for (size, stages), rs in sorted(groups.items()):
    by_impl = {}
    for r in rs:
      cur = by_impl.get(r["impl"])
      if cur is None or per(r) < per(cur):
        by_impl[r["impl"]] = r
    best = min(by_impl.values(), key=per)
    parts = ", ".join(
      f"{i}: {v['strategy']} {per(v) * 1e6:.0f} us (batch {v['batch']})"
      for i, v in sorted(by_impl.items())
    )
    verdict = ""
    if len(by_impl) > 1:
      ratio = max(per(v) for v in by_impl.values()) / per(best)
      verdict = (
        f"; 'auto' ({resolved_auto}) "
        + ("picks" if best["impl"] == resolved_auto else "does NOT pick")
        + f" the faster impl ({ratio:.1f}x)"
      )
    lines.append(
      f"- {size}x{size}, T={stages}: {best['impl']}/{best['strategy']} "
      f"fastest [{parts}]{verdict}"
    )
  return "\n".join(lines)


if __name__ == "__main__":
  main()
