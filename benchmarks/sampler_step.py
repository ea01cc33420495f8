"""Throughput of `innjax.sampler.make_sampler(...).step`, and `run` vs single steps.

Part 1 times the jitted `step(params, state)` (one Adam update of the images: the
cascade energy, its input gradient, the moment updates, the clip) for each image
size, number of stages and mode, with the default strategy and conv_impl="auto".
The state is chained from call to call (x moves, as in a real synthesis loop); every
call ends in `block_until_ready`. In "sum" mode a step evaluates every stage; in
"sequential" mode it evaluates only the current stage (picked out of the stacked
params by a dynamic index), so its cost should not depend on the number of stages.

Part 2 (host round-trip check) compares `run(params, x0, key)` with stop_prob=None
and max_steps=N, one jitted `lax.while_loop`, with N single jitted steps called
from Python: ratio_vs_median = time(run) / (N * median single-step time), and
ratio_vs_loop = time(run) / time(Python loop of N steps, blocking once at the end).
`run` also evaluates the energy once more at the end (the final P(real): one
forward pass, about 0.5/N of the N steps under the 2x convention), so
1 + 0.5/N means "no overhead".

Memory: XLA's buffer estimate of the compiled step (`memory_analysis()`: arguments +
temporaries, MB), the process's peak RSS so far (monotonic, CPU), and the device's
peak bytes in use where the backend reports it (GPU/TPU).

Stage variables are distinct per stage, with non-trivial BatchNorm statistics;
images are N(0,1) clipped to [-1, 1].

FLOP convention: per image forward = sum over convs 2*k*k*Cin*Cout*Hout*Wout + 2*D
(dense); one forward + input-gradient stage pass = 2x forward (--grad-factor to
change); a sum-mode step is T stage passes, a sequential step one. The Adam update
and clip are not counted. "% peak" is relative to a measured float32 matmul.

Usage:
  python benchmarks/sampler_step.py                  # ~6-10 min on a 2-core CPU
  python benchmarks/sampler_step.py --quick          # 32x32, T 1 and 10, batch 20, ~2 min
  python benchmarks/sampler_step.py --stages 1,10 --modes sum --json out.json
"""

from __future__ import annotations

import argparse
import time

import jax

import common
from innjax import cascade, models, sampler


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  common.add_common_args(p, repeats=5)
  p.add_argument("--batch", type=int, default=None, help="default 100 (quick 20)")
  p.add_argument("--sizes", type=common.parse_int_list, default=None,
                 help="default 32,64 (quick 32)")
  p.add_argument("--stages", type=common.parse_int_list, default=None,
                 help="default 1,10,20 (quick 1,10)")
  p.add_argument("--modes", type=common.parse_str_list, default=list(sampler.MODES))
  p.add_argument("--strategy", default=cascade.DEFAULT_STRATEGY,
                 choices=cascade.STRATEGIES)
  p.add_argument("--conv-impl", default="auto", choices=models.CONV_IMPLS)
  p.add_argument("--run-steps", type=int, default=None,
                 help="N for the run-vs-steps check (default 10, quick 5); 0 skips it")
  p.add_argument("--run-stages", type=common.parse_int_list, default=[1],
                 help="stage counts for the run-vs-steps check (default 1)")
  args = p.parse_args()
  args.repeats = common.default_repeats(args, full=5)
  if args.batch is None:
    args.batch = 20 if args.quick else 100
  if args.stages is None:
    args.stages = [1, 10] if args.quick else [1, 10, 20]
  if args.sizes is None:
    args.sizes = [32] if args.quick else [32, 64]
  if args.run_steps is None:
    args.run_steps = 5 if args.quick else 10
  if args.cell_budget is None:
    args.cell_budget = 4.0 if args.quick else 15.0
  for m in args.modes:
    if m not in sampler.MODES:
      p.error(f"unknown mode {m!r}; choose from {sampler.MODES}")
  return args


def main():
  args = parse_args()
  t_start = time.perf_counter()
  info = common.machine_info()
  common.log("measuring matmul peak ...")
  peak = common.matmul_peak(args.matmul_n)
  key = jax.random.PRNGKey(args.seed)
  k_var, k_x, k_s = jax.random.split(key, 3)
  model = models.Classifier(conv_impl=args.conv_impl)
  logit_fn = models.make_logit_fn(model)
  max_stages = max(args.stages + (args.run_stages if args.run_steps else []))
  step_rows, run_rows = [], []
  step_median = {}

  for size in args.sizes:
    common.log(f"size {size}: building {max_stages} stages ...")
    stacked_all = common.stacked_variables(model, size, max_stages,
                                           jax.random.fold_in(k_var, size))
    x0 = common.random_images(jax.random.fold_in(k_x, size), args.batch, size)
    for mode in args.modes:
      for stages in sorted(args.stages):
        params = jax.tree_util.tree_map(lambda l: l[:stages], stacked_all)
        smp = sampler.make_sampler(logit_fn, mode=mode, strategy=args.strategy,
                                   stop_prob=None, max_steps=max(args.run_steps, 1))
        state0 = smp.init(x0, k_s)
        common.log(f"  {size}x{size} {mode:10s} T={stages:<3d}: compiling step ...")
        compiled, cinfo = common.compile_jitted(smp.step, params, state0)
        holder = {"state": state0}

        def call():
          holder["state"], info_ = compiled(params, holder["state"])
          return holder["state"].x, info_.mean_prob

        timing = common.time_calls(call, repeats=args.repeats,
                                   warmup=max(args.warmup, 1),
                                   budget_s=args.cell_budget,
                                   min_repeats=args.min_repeats)
        med = timing["median_s"]
        passes = stages if mode == "sum" else 1
        flops = common.grad_step_flops(model, size, size, args.batch, passes,
                                       args.grad_factor)
        row = {
            "size": size, "mode": mode, "stages": stages, "stage_passes": passes,
            "batch": args.batch, "trace_lower_s": cinfo["trace_lower_s"],
            "compile_s": cinfo["compile_s"], "first_exec_s": timing["warmup_s"][0],
            "median_s": med, "min_s": timing["min_s"], "max_s": timing["max_s"],
            "times_s": timing["times_s"], "repeats": timing["repeats"],
            "images_steps_per_s": args.batch / med,
            "gflops": flops / med / 1e9,
            "pct_peak": 100.0 * flops / med / 1e9 / peak["median_gflops"],
            "xla_args_temp_mb": (cinfo.get("argument_mb") or 0.0)
                                + (cinfo.get("temp_mb") or 0.0),
            "xla_temp_mb": cinfo.get("temp_mb"),
            "max_rss_mb": common.max_rss_mb(),
            "device_peak_mb": common.device_peak_memory_mb(),
        }
        step_median[(size, mode, stages)] = med
        step_rows.append(row)
        common.log(f"    {med * 1e3:9.1f} ms/step  {row['images_steps_per_s']:7.1f} "
                   f"img*steps/s  {row['gflops']:6.1f} GFLOP/s")

        if args.run_steps and stages in args.run_stages:
          run_rows.append(run_check(args, smp, compiled, params, x0, k_s, size, mode,
                                    stages, med))

  total_s = time.perf_counter() - t_start
  print_report(args, info, peak, step_rows, run_rows, total_s)
  common.write_json(args.json, {
      "benchmark": "sampler_step", "machine": info, "matmul_peak": peak,
      "args": vars(args), "auto_resolves_to": models.resolve_conv_impl(args.conv_impl),
      "step_rows": step_rows, "run_rows": run_rows, "total_s": total_s})


def run_check(args, smp, compiled_step, params, x0, key, size, mode, stages,
              step_med):
  """time(run of N steps) against N single jitted steps from Python."""
  n = args.run_steps
  updates = n * (stages if mode == "sequential" else 1)
  common.log(f"  {size}x{size} {mode:10s} T={stages:<3d}: compiling run (N={n}) ...")
  compiled_run, cinfo = common.compile_jitted(
      lambda p, x, k: smp.run(p, x, k), params, x0, key)

  out = {}

  def call_run():
    out["x"], out["info"] = compiled_run(params, x0, key)
    return out["x"], out["info"]

  t_run = common.time_calls(call_run, repeats=args.repeats, warmup=max(args.warmup, 1),
                            budget_s=args.cell_budget, min_repeats=args.min_repeats)
  applied = int(jax.device_get(out["info"].steps).sum())

  state0 = smp.init(x0, key)

  def call_loop():
    state = state0
    for _ in range(updates):
      state, _ = compiled_step(params, state)
    return state.x

  # The step is already compiled and warm: no warm-up loop, and as many loops as
  # the cell budget allows (at least --min-repeats).
  loops = int(min(args.repeats, max(args.min_repeats,
                                    args.cell_budget // (updates * step_med))))
  t_loop = common.time_calls(call_loop, repeats=loops, warmup=0)
  row = {
      "size": size, "mode": mode, "stages": stages, "batch": args.batch, "n": n,
      "updates": updates, "updates_applied_by_run": applied,
      "run_compile_s": cinfo["trace_lower_s"] + cinfo["compile_s"],
      "run_median_s": t_run["median_s"], "run_times_s": t_run["times_s"],
      "loop_median_s": t_loop["median_s"], "loop_times_s": t_loop["times_s"],
      "step_median_s": step_med,
      "ratio_vs_median": t_run["median_s"] / (updates * step_med),
      "ratio_vs_loop": t_run["median_s"] / t_loop["median_s"],
      "expected_no_overhead": 1.0 + 0.5 / updates,
  }
  common.log(f"    run {t_run['median_s']:.2f} s, loop {t_loop['median_s']:.2f} s, "
             f"ratio {row['ratio_vs_median']:.3f}")
  return row


def print_report(args, info, peak, step_rows, run_rows, total_s):
  print("# innjax sampler step throughput\n")
  print(common.machine_markdown(info))
  print(f"- float32 matmul {peak['n']}x{peak['n']}: {peak['median_gflops']:.1f} "
        f"GFLOP/s median, {peak['best_gflops']:.1f} best (the '% peak' reference)")
  print(f"- strategy '{args.strategy}', conv_impl '{args.conv_impl}' -> "
        f"'{models.resolve_conv_impl(args.conv_impl)}', batch {args.batch}\n")
  headers = ["size", "mode", "T", "passes", "compile s", "1st exec s", "ms/step",
             "img*steps/s", "GFLOP/s", "% peak", "XLA args+temp MB", "max RSS MB", "n"]
  dev_mem = any(r["device_peak_mb"] is not None for r in step_rows)
  if dev_mem:
    headers.insert(-1, "device peak MB")
  table = []
  for r in step_rows:
    row = [f"{r['size']}x{r['size']}", r["mode"], r["stages"], r["stage_passes"],
           common.fmt(r["trace_lower_s"] + r["compile_s"]),
           common.fmt(r["first_exec_s"], 2), common.fmt(r["median_s"] * 1e3),
           common.fmt(r["images_steps_per_s"]), common.fmt(r["gflops"]),
           common.fmt(r["pct_peak"], 0), common.fmt(r["xla_args_temp_mb"], 0),
           common.fmt(r["max_rss_mb"], 0), r["repeats"]]
    if dev_mem:
      row.insert(-1, common.fmt(r["device_peak_mb"], 0))
    table.append(row)
  print(common.markdown_table(headers, table, align="llrr" + "r" * (len(headers) - 4)))
  print()
  print("Median of n chained calls of the jitted step after 1 warm-up call; "
        "'compile s' = trace+lower+XLA compile, '1st exec s' = first execution "
        "(first call = their sum). 'passes' = stage forward+input-gradient passes "
        "per step. 'XLA args+temp MB' is compiled.memory_analysis(); 'max RSS MB' is "
        "the process peak so far (monotonic). "
        + common.FLOP_NOTE.format(factor=args.grad_factor))
  if run_rows:
    print("\n## run (one lax.while_loop) vs N single steps from Python\n")
    headers = ["size", "mode", "T", "N updates", "compile s", "run s",
               "N x median step s", "Python loop s", "run / (N x step)",
               "run / loop", "no-overhead value"]
    table = []
    for r in run_rows:
      table.append([
          f"{r['size']}x{r['size']}", r["mode"], r["stages"], r["updates"],
          common.fmt(r["run_compile_s"]), common.fmt(r["run_median_s"], 3),
          common.fmt(r["updates"] * r["step_median_s"], 3),
          common.fmt(r["loop_median_s"], 3), common.fmt(r["ratio_vs_median"], 3),
          common.fmt(r["ratio_vs_loop"], 3), common.fmt(r["expected_no_overhead"], 3)])
    print(common.markdown_table(headers, table, align="llr" + "r" * 8))
    print()
    print("run uses stop_prob=None and max_steps=N, so it applies exactly N updates "
          "(per stage in sequential mode) and then one extra forward pass for the "
          "final P(real); 'no-overhead value' = 1 + 0.5/N accounts for that pass. "
          "The Python loop dispatches N jitted steps asynchronously and blocks once.")
  print(f"\nTotal wall time {total_s / 60:.1f} min.")


if __name__ == "__main__":
  main()
