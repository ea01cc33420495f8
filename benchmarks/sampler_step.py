"""How fast is one sampler step, by image size, number of stages, strategy and mode?

Question 1 of the performance issue. Times the jitted
`innjax.sampler.make_sampler(...).step(params, state)`: one Adam update of a batch of
images (the cascade energy, its gradient with respect to the images, the moment
updates, the clip), for the paper's `Classifier()` (5x5 stride-2 convolutions with
64/128/256/512 channels, conv_impl "auto"), batch 100, at 32x32 and 64x64, for 1, 10
(and with --full 20) stages:

* ``mode="sum"`` evaluates every stage at every step; it is timed for each stage-axis
  strategy ("scan", the default, "unrolled", "vmap"). "vs Tx1" = t(T) / (T * t(1))
  for the same strategy: 1.00 means stacking T stages costs exactly T single stages.
* ``mode="sequential"`` evaluates only the current stage, picked out of the stacked
  params by a dynamic index; the strategy is not used there, so it is timed once per
  (size, T). "vs Tx1" is t(T) / t(1): 1.00 means the unused stages cost nothing.

The state is fed back from call to call (x moves, as in a real synthesis loop) and
every call ends in `block_until_ready`. The stage counts of one (size, mode,
strategy) are timed in alternation, one call of each per round, so that "vs Tx1"
compares them under the same machine load; medians over the rounds are reported. Stage variables are distinct per stage, with
non-trivial BatchNorm statistics; images are N(0,1) clipped to [-1, 1]. Compile time
(trace + lower + XLA compile, wall and process CPU seconds) is reported apart from
the median step time. Memory is XLA's buffer estimate of the compiled step
(`memory_analysis()`: arguments + temporaries), which does not depend on what ran
before in the process.

FLOP convention: per image forward = sum over convs 2*k*k*Cin*Cout*Hout*Wout + 2*D
(dense); one forward + input-gradient stage pass = 2x forward (--grad-factor to
change); a sum-mode step is T stage passes, a sequential step one. The Adam update,
the clip and the im2col gathers are not counted. "% peak" is relative to a float32
2048x2048 matmul measured by the same script.

Usage:
  python benchmarks/sampler_step.py            # 32+64, T 1,10, all strategies at 32: ~10 min
  python benchmarks/sampler_step.py --quick    # 32x32, T 1,4, batch 20: ~3 min
  python benchmarks/sampler_step.py --full     # the issue's grid (T 1,10,20, all
                                               # strategies at both sizes): ~1 h here
  python benchmarks/sampler_step.py --sizes 32 --stages 1,10 --modes sum --json out.json
"""

from __future__ import annotations

import jax

import common
from innjax import cascade, models, sampler


def parse_args():
  """The command line (see the module docstring), with defaults filled in."""
  p = common.make_parser(__doc__, repeats=4)
  p.add_argument(
    "--full",
    action="store_true",
    help="the issue's grid: T 1,10,20 and every strategy at every size",
  )
  p.add_argument("--batch", type=int, default=None, help="default 100 (quick 20)")
  p.add_argument(
    "--sizes", type=common.parse_int_list, default=None, help="default 32,64 (quick 32)"
  )
  p.add_argument(
    "--stages",
    type=common.parse_int_list,
    default=None,
    help="default 1,10 (--full 1,10,20; quick 1,4)",
  )
  p.add_argument("--modes", type=common.parse_str_list, default=list(sampler.MODES))
  p.add_argument(
    "--strategies",
    type=common.parse_str_list,
    default=list(cascade.STRATEGIES),
    help="sum-mode stage-axis strategies (default all three)",
  )
  p.add_argument(
    "--strategy-sizes",
    type=common.parse_int_list,
    default=None,
    help="sizes at which strategies other than scan run (default 32; --full: every size)",
  )
  p.add_argument("--conv-impl", default="auto", choices=models.CONV_IMPLS)
  args = p.parse_args()
  full_stages = [1, 10, 20] if args.full else [1, 10]
  common.fill_defaults(
    args, batch=(100, 20), sizes=([32, 64], [32]), stages=(full_stages, [1, 4])
  )
  if args.strategy_sizes is None:
    args.strategy_sizes = list(args.sizes) if args.full else [min(args.sizes)]
  for m in args.modes:
    if m not in sampler.MODES:
      p.error(f"unknown mode {m!r}; choose from {sampler.MODES}")
  for s in args.strategies:
    if s not in cascade.STRATEGIES:
      p.error(f"unknown strategy {s!r}; choose from {cascade.STRATEGIES}")
  return args


def groups(args):
  """(size, mode, strategy) groups in the order they run; sequential has no strategy.

  The stage counts of one group are timed together, in alternation, so that their
  ratio ("vs Tx1") is not skewed by load that changes between cells.
  """
  out = []
  for size in args.sizes:
    for mode in args.modes:
      if mode == "sequential":
        out.append((size, mode, "-"))
        continue
      for strategy in args.strategies:
        if strategy == cascade.DEFAULT_STRATEGY or size in args.strategy_sizes:
          out.append((size, mode, strategy))
  return out


def main():
  """Runs the benchmark and prints its report."""
  args = parse_args()
  bench = common.Bench("sampler_step", args)
  key = jax.random.PRNGKey(args.seed)
  k_var, k_x, k_s = jax.random.split(key, 3)
  model = models.Classifier(conv_impl=args.conv_impl)
  logit_fn = models.make_logit_fn(model)
  rows, variables = [], {}

  for size, mode, strategy in groups(args):
    if size not in variables:
      common.log(f"size {size}: building {max(args.stages)} stages ...")
      variables = {
        size: common.stacked_variables(
          model, size, max(args.stages), jax.random.fold_in(k_var, size)
        )
      }
    x0 = common.random_images(jax.random.fold_in(k_x, size), args.batch, size)
    smp = sampler.make_sampler(
      logit_fn,
      step_size=0.02,
      beta1=0.5,
      max_steps=500,
      clip=(-1.0, 1.0),
      mode=mode,
      stop_prob=None,
      strategy=cascade.DEFAULT_STRATEGY if strategy == "-" else strategy,
    )
    calls, infos = {}, {}
    for stages in sorted(args.stages):
      params = jax.tree_util.tree_map(lambda l, t=stages: l[:t], variables[size])
      common.log(
        f"  {size}x{size} {mode:10s} {strategy:8s} T={stages:<3d}: compiling ..."
      )
      compiled, infos[stages] = common.compile_jitted(smp.step, params, smp.init(x0, k_s))
      calls[stages] = common.chained(compiled, smp.init(x0, k_s), params)
    common.log(f"  timing {args.repeats} rounds of T={sorted(calls)} in turn ...")
    timings = common.interleaved(calls, rounds=args.repeats, warmup=max(args.warmup, 1))
    one = timings[min(calls)]["median_s"] if 1 in calls else None
    for stages, timing in timings.items():
      med, cinfo = timing["median_s"], infos[stages]
      passes = stages if mode == "sum" else 1
      flops = common.grad_step_flops(
        model, size, size, args.batch, passes, args.grad_factor
      )
      row = {
        "size": size,
        "mode": mode,
        "strategy": strategy,
        "stages": stages,
        "stage_passes": passes,
        "batch": args.batch,
        **cinfo,
        "median_s": med,
        "times_s": timing["times_s"],
        "repeats": timing["repeats"],
        **common.rate_fields(flops, med, args.batch, bench.peak_gflops),
        **common.memory_fields(cinfo),
        "vs_T_x_1": med / (passes * one) if one else None,
      }
      rows.append(row)
      common.log(
        f"    T={stages}: {med * 1e3:9.1f} ms/step  {row['gflops']:6.1f} "
        f"GFLOP/s  compile {cinfo['total_compile_s']:.1f} s"
      )

  bench.header(
    "innjax sampler step throughput",
    f"conv_impl '{args.conv_impl}' -> '{models.resolve_conv_impl(args.conv_impl)}', "
    f"batch {args.batch}, Adam on the images + clip, stop_prob=None",
  )
  print_table(rows, args)
  print()
  print(targets(rows, bench.peak_gflops))
  bench.finish(auto_resolves_to=models.resolve_conv_impl(args.conv_impl), rows=rows)


def print_table(rows, args):
  """Prints the step table and its notes."""
  headers = [
    "size",
    "mode",
    "strategy",
    "T",
    "compile s",
    "compile CPU s",
    "ms/step",
    "img*steps/s",
    "GFLOP/s",
    "% peak",
    "vs Tx1",
    "XLA args+temp MB",
    "n",
  ]
  table = [
    [
      f"{r['size']}x{r['size']}",
      r["mode"],
      r["strategy"],
      r["stages"],
      common.fmt(r["total_compile_s"]),
      common.fmt(r["compile_cpu_s"]),
      common.fmt(r["median_s"] * 1e3),
      common.fmt(r["items_per_s"]),
      common.fmt(r["gflops"]),
      common.fmt(r["pct_peak"], 0),
      common.fmt(r["vs_T_x_1"], 2),
      common.fmt(r["xla_args_temp_mb"], 0),
      r["repeats"],
    ]
    for r in rows
  ]
  print(common.markdown_table(headers, table, align="lllr" + "r" * 9))
  print()
  print(
    f"Median of n chained calls of the jitted step after {max(args.warmup, 1)} "
    "warm-up round(s); the stage counts of one size, mode and strategy are timed "
    "in alternation (one call of each per round), so their ratio 'vs Tx1' sees "
    "the same machine load. 'compile s' = trace+lower+XLA compile wall time, 'compile "
    "CPU s' the process CPU time spent on it (other processes share the cores). "
    "'vs Tx1': sum mode t(T) / (T * t(1)), sequential t(T) / t(1), same size, "
    "mode and strategy. 'XLA args+temp MB' = compiled.memory_analysis() "
    "(arguments + temporaries). " + common.FLOP_NOTE.format(factor=args.grad_factor)
  )


def targets(rows, peak_gflops):
  """The issue's targets that this script measures, with verdicts."""
  lines = ["Targets:"]
  for r in rows:
    if r["stages"] == 1 or r["vs_T_x_1"] is None:
      continue
    if r["mode"] == "sum":
      lines.append(
        f"- sum, {r['strategy']}, {r['size']}x{r['size']}, T={r['stages']}: "
        f"{r['vs_T_x_1']:.2f}x of {r['stages']} single-stage steps (target <= 1.15): "
        f"{common.verdict(r['vs_T_x_1'] <= 1.15)}"
      )
    else:
      lines.append(
        f"- sequential, {r['size']}x{r['size']}, T={r['stages']}: {r['vs_T_x_1']:.2f}x "
        f"of the 1-stage step (target: unused stages cost nothing, <= 1.10 allowing "
        f"for noise): {common.verdict(r['vs_T_x_1'] <= 1.10)}"
      )
  scan = [r for r in rows if r["strategy"] in (cascade.DEFAULT_STRATEGY, "-")]
  for size in sorted({r["size"] for r in scan}):
    pct = [r["pct_peak"] for r in scan if r["size"] == size and r["pct_peak"]]
    if pct:
      lines.append(
        f"- achieved GFLOP/s at {size}x{size} (default strategy, all T and modes): "
        f"{min(pct):.0f}-{max(pct):.0f}% of the measured matmul peak "
        f"({peak_gflops:.1f} GFLOP/s; target >= 60%): "
        f"{common.verdict(min(pct) >= 60)}"
      )
  return "\n".join(lines)


if __name__ == "__main__":
  main()
