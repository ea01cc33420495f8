"""What does a full, early-stopped sampler `run` on a trained cascade cost?

Question 2 of the performance issue. A cascade is trained with the real training
loop (`innjax.train.train`) on configs/svhn.py scaled down (the paper
network at 32x32x3, a few stages, offline stand-in data; cached in --workdir, so
later invocations only restore it), and the jitted `run` of the training sampler
(`synthesis.make_synthesis_sampler`: Adam lr 0.02, beta1 0.5, clip, early stop when the
batch-mean P(real) reaches 0.5) is timed from fresh N(0, 0.3^2) noise:

1. Early-stopped runs, sum and sequential mode, all trained stages active: compile
   time (trace + lower + XLA compile; wall and process CPU seconds), median run
   time, loop iterations, and the time per iteration against one jitted `step`.
   An iteration evaluates the energy and its gradient; the one that finds the
   boundary crossed applies no update, so iterations = updates + crossings.
2. No host round trip per step: the same sampler with stop_prob=None, its run
   compiled once and called with a (traced) step cap N, then 2N:
   time(run N) / (N * step) and the marginal cost (time(2N) - time(N)) / (N * step)
   should be at most 1 + 10% (the run also does one extra forward pass for the final
   P(real)); below 1 is possible, since every separate step call allocates its
   temporaries afresh while the loop reuses them. Parts 1 and 2 are timed in alternation, round by round, so that the
   load of a shared machine hits the runs and the step alike.
3. No recompilation as the cascade grows: the run jitted once, as in training, is
   called with the first k slots active (k = 1..T) and a different step cap each
   time; every XLA compilation in the process is counted (jax's compile hook).
4. Compile time of `run` for the paper network at --compile-sizes (untrained,
   preallocated to --compile-slots slots with a mask), sum and sequential.

Memory: XLA's buffer estimate of the compiled run against the compiled step: a
while loop that kept per-step activations would need ~N times the step's
temporaries.

FLOP convention: per image forward = sum over convs 2*k*k*Cin*Cout*Hout*Wout + 2*D;
forward + input gradient = 2x forward per stage pass; a sum-mode iteration is one
pass per active stage, a sequential one a single pass.

Usage:
  python benchmarks/run_cascade.py             # trains ~3 min the first time, then ~8 min
  python benchmarks/run_cascade.py --quick     # batch 10, 2 stages: ~4 min
  python benchmarks/run_cascade.py --workdir /tmp/my_cascade --json out.json
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import common
from innjax import checkpointing, energy, models, sampler, synthesis, train


SIZES = {"stages": (3, 2), "updates": (40, 10), "batch": (50, 10), "max_steps": (20, 10)}


def parse_args():
  """The command line (see the module docstring), with defaults filled in."""
  p = common.make_parser(__doc__, repeats=3)
  common.add_training_args(p, SIZES)
  p.add_argument(
    "--n", type=int, default=None, help="N of the run-vs-steps check (default 5, quick 3)"
  )
  p.add_argument(
    "--grow-cap",
    type=int,
    default=2,
    help="step cap (+ k) of the calls that grow the cascade in part 3",
  )
  p.add_argument(
    "--compile-sizes",
    type=common.parse_int_list,
    default=None,
    help="paper-network sizes whose run compile time is measured "
    "(default 32,64; quick 32)",
  )
  p.add_argument("--compile-slots", type=int, default=20)
  p.add_argument(
    "--workdir",
    default=None,
    help="where the trained cascade is cached (default: a folder in "
    "the temp dir named after the config)",
  )
  args = p.parse_args()
  common.fill_defaults(args, n=(5, 3), compile_sizes=([32, 64], [32]), **SIZES)
  return args


def trained_cascade(args):
  """Trains (or restores) the scaled-down SVHN cascade; returns (config, state, data)."""
  config, data = common.scaled_svhn_config(
    args.stages,
    args.updates,
    negatives=args.batch,
    batch=args.batch,
    max_steps=args.max_steps,
    energy="sequential",
  )
  digest = hashlib.sha1(
    json.dumps(checkpointing.config_to_dict(config), sort_keys=True, default=str).encode()
  ).hexdigest()
  workdir = args.workdir or os.path.join(
    tempfile.gettempdir(), f"innjax_bench_cascade_{digest[:10]}"
  )
  common.log(f"training / restoring the cascade in {workdir} ...")
  state = train.train(config, workdir)
  return config, state, f"{data}; {int(state.stage)} stages trained in {workdir}"


def compiled_for(config, logit_fn, mode, params, x0, key, mask):
  """The training sampler's run (early-stopped and not) and step, compiled.

  Returns:
    dict name -> (sampler, compiled executable, compile info) for "run", "run_nostop"
    and "step".
  """
  nostop = config.copy_and_resolve_references()
  nostop.synthesis.stop_prob = 0.0  # 0 = never stop early
  cap = jnp.asarray(config.synthesis.max_steps, jnp.int32)
  out = {}
  for name, cfg in (("run", config), ("run_nostop", nostop)):
    smp = synthesis.make_synthesis_sampler(cfg, logit_fn, mode)
    out[name] = (smp, *common.compile_jitted(smp.run, params, x0, key, mask, cap))
  smp = out["run"][0]
  out["step"] = (smp, *common.compile_jitted(smp.step, params, smp.init(x0, key), mask))
  return out


def iterations(mode, info, cap, active):
  """Loop iterations of a run: updates applied plus the iterations that stopped."""
  steps = np.asarray(jax.device_get(info.steps))
  if mode == "sum":
    return int(steps) + int(bool(info.stopped_early)), int(steps)
  used = steps[np.asarray(active)]
  return int(used.sum() + (used < cap).sum()), int(used.sum())


def measure_mode(args, bench, config, model, logit_fn, state, key, mode):
  """Parts 1 and 2 for one mode, all timed in alternation (see `common.interleaved`)."""
  params, active = state.cascade, state.active
  shape = energy.negative_shape(synthesis.geometry(config))
  x0 = synthesis.initial_negatives(key, args.batch, shape, float(config.pool.init_std))
  cap = int(config.synthesis.max_steps)
  num_active = int(np.asarray(active).sum())
  common.log(f"{mode}: compiling run (early stop), run (no stop) and step ...")
  ex = compiled_for(config, logit_fn, mode, params, x0, key, active)
  run, nostop, step = ex["run"][1], ex["run_nostop"][1], ex["step"][1]
  out = {}

  def early():
    out["x"], out["info"] = run(params, x0, key, active, jnp.int32(cap))
    return out["x"]

  t = common.interleaved(
    {
      "run": early,
      "run_n": lambda: nostop(params, x0, key, active, jnp.int32(args.n))[0],
      "run_2n": lambda: nostop(params, x0, key, active, jnp.int32(2 * args.n))[0],
      "step": common.chained(
        lambda p, m, s: step(p, s, m), ex["step"][0].init(x0, key), params, active
      ),
    },
    rounds=args.repeats,
    warmup=max(args.warmup, 1),
  )
  iters, updates = iterations(mode, out["info"], cap, active)
  step_s = t["step"]["median_s"]
  passes = num_active if mode == "sum" else 1
  stage_flops = common.grad_step_flops(
    model, shape[0], shape[1], args.batch, 1, args.grad_factor
  )
  # Without early stop, sequential mode applies N updates in every active stage.
  n_updates = args.n * (num_active if mode == "sequential" else 1)
  row = {
    "mode": mode,
    "active_stages": num_active,
    "batch": args.batch,
    "cap": cap,
    "run_compile": ex["run"][2],
    "step_compile": ex["step"][2],
    "timings": t,
    "run_median_s": t["run"]["median_s"],
    "iterations": iters,
    "updates": updates,
    "final_p_real": float(out["info"].mean_prob),
    "stopped_early": bool(out["info"].stopped_early),
    "step_median_s": step_s,
    "per_iteration_s": t["run"]["median_s"] / max(iters, 1),
    **common.rate_fields(
      stage_flops * passes * iters,
      t["run"]["median_s"],
      args.batch * iters,
      bench.peak_gflops,
    ),
    "run_temp_mb": ex["run"][2].get("temp_mb"),
    "step_temp_mb": ex["step"][2].get("temp_mb"),
    "n": args.n,
    "updates_n": n_updates,
    "run_n_s": t["run_n"]["median_s"],
    "run_2n_s": t["run_2n"]["median_s"],
    "ratio_n": t["run_n"]["median_s"] / (n_updates * step_s),
    "marginal_ratio": (t["run_2n"]["median_s"] - t["run_n"]["median_s"])
    / (n_updates * step_s),
    "expected_n": 1.0 + 0.5 / n_updates,
  }
  row["per_iteration_vs_step"] = row["per_iteration_s"] / step_s
  common.log(
    f"  run {row['run_median_s']:.2f} s, {iters} iterations, "
    f"{row['per_iteration_s'] * 1e3:.0f} ms/iteration vs step "
    f"{step_s * 1e3:.0f} ms; run(N)/(N step) {row['ratio_n']:.3f}, marginal "
    f"{row['marginal_ratio']:.3f}"
  )
  return row


def growing(args, config, logit_fn, state, key):
  """Part 3: one jitted run (as in training) over masks with 1..T slots active."""
  params, total = state.cascade, int(np.asarray(state.active).size)
  shape = energy.negative_shape(synthesis.geometry(config))
  x0 = synthesis.initial_negatives(key, args.batch, shape, float(config.pool.init_std))
  rows = []
  for mode in sampler.MODES:
    run_fn = synthesis.make_run_fn(config, logit_fn, mode)
    with common.CompileCounter() as counter:
      for k in range(1, total + 1):
        mask = jnp.arange(total) < k
        mark = counter.mark()
        t0 = common.time_calls(
          lambda: run_fn(params, x0, key, mask, args.grow_cap + k), repeats=1, warmup=0
        )
        compiles = counter.since(mark)
        rows.append(
          {
            "mode": mode,
            "active": k,
            "compiles": len(compiles),
            "compile_names": [n for n, _ in compiles],
            "compile_s": sum(s for _, s in compiles),
            "call_s": t0["median_s"],
          }
        )
        common.log(f"  {mode} k={k}: {len(compiles)} compiles, {t0['median_s']:.2f} s")
  return rows


def compile_times(args, config):
  """Part 4: compile time of `run` for the paper network at other sizes."""
  rows = []
  for size in args.compile_sizes:
    model = models.Classifier(channels=3)
    variables = models.init_variables(model, jax.random.PRNGKey(0), (size, size, 3))
    params = jax.tree_util.tree_map(
      lambda v: jnp.zeros((args.compile_slots, *v.shape), v.dtype) + v, variables
    )
    mask = jnp.arange(args.compile_slots) < 1
    x0 = common.random_images(jax.random.PRNGKey(1), args.batch, size)
    for mode in sampler.MODES:
      smp = synthesis.make_synthesis_sampler(config, models.make_logit_fn(model), mode)
      _, info = common.compile_jitted(
        smp.run,
        params,
        x0,
        jax.random.PRNGKey(2),
        mask,
        jnp.int32(config.synthesis.max_steps),
      )
      rows.append({"size": size, "mode": mode, "slots": args.compile_slots, **info})
      common.log(
        f"  compile run {size}x{size} {mode}: {info['total_compile_s']:.1f} s "
        f"({info['compile_cpu_s']:.1f} s CPU)"
      )
  return rows


def main():
  """Runs the benchmark and prints its report."""
  args = parse_args()
  bench = common.Bench("run_cascade", args)
  config, state, data = trained_cascade(args)
  model = synthesis.build_model(config)
  logit_fn = energy.make_stage_logit_fn(model, synthesis.geometry(config))
  key = jax.random.PRNGKey(args.seed + 1)
  runs = [
    measure_mode(args, bench, config, model, logit_fn, state, key, mode)
    for mode in sampler.MODES
  ]
  grow = growing(args, config, logit_fn, state, key)
  compiles = compile_times(args, config)

  bench.header(
    "innjax: early-stopped sampler run on a trained cascade",
    f"cascade: configs/svhn.py scaled down (paper network, 32x32x3); {data}",
    f"run: batch {args.batch}, Adam lr {config.synthesis.step_size}, beta1 "
    f"{config.synthesis.beta1}, clip [-1, 1], stop at batch-mean P(real) >= "
    f"{config.synthesis.stop_prob}, cap {config.synthesis.max_steps} steps "
    "(per stage in sequential mode); from fresh N(0, 0.3^2) noise",
  )
  print_report(args, runs, grow, compiles)
  bench.finish(runs=runs, growing=grow, compile_rows=compiles)


def print_report(args, runs, grow, compiles):
  """Prints the report tables below the header."""
  print("## 1. Early-stopped run, all trained stages active\n")
  headers = [
    "mode",
    "T",
    "compile s",
    "compile CPU s",
    "run s",
    "iterations",
    "updates",
    "ms/iteration",
    "ms/step (jitted step)",
    "iteration / step",
    "img*steps/s",
    "GFLOP/s",
    "% peak",
    "P(real) at end",
    "run temp MB",
    "step temp MB",
  ]
  table = [
    [
      r["mode"],
      r["active_stages"],
      common.fmt(r["run_compile"]["total_compile_s"]),
      common.fmt(r["run_compile"]["compile_cpu_s"]),
      common.fmt(r["run_median_s"], 2),
      r["iterations"],
      r["updates"],
      common.fmt(r["per_iteration_s"] * 1e3),
      common.fmt(r["step_median_s"] * 1e3),
      common.fmt(r["per_iteration_vs_step"], 2),
      common.fmt(r["items_per_s"]),
      common.fmt(r["gflops"]),
      common.fmt(r["pct_peak"], 0),
      common.fmt(r["final_p_real"], 3),
      common.fmt(r["run_temp_mb"], 0),
      common.fmt(r["step_temp_mb"], 0),
    ]
    for r in runs
  ]
  print(common.markdown_table(headers, table, align="l" + "r" * 15))
  print(
    f"\nMedians over {args.repeats} rounds after a warm-up round; each round "
    "times the early-stopped run, the runs of part 2 and one jitted step in turn, "
    "so machine load hits all alike. An iteration computes the energy and its "
    "gradient; the one that finds the boundary crossed applies no update. "
    "'temp MB' = XLA temporaries of the compiled executable."
  )

  print(f"\n## 2. Run of N steps vs N jitted steps (stop_prob=None, N={args.n})\n")
  headers = [
    "mode",
    "updates in run(N)",
    "run(N) s",
    "run(2N) s",
    "N x step s",
    "run(N) / (N x step)",
    "(run(2N) - run(N)) / (N x step)",
    "no-overhead value",
  ]
  table = [
    [
      c["mode"],
      c["updates_n"],
      common.fmt(c["run_n_s"], 3),
      common.fmt(c["run_2n_s"], 3),
      common.fmt(c["updates_n"] * c["step_median_s"], 3),
      common.fmt(c["ratio_n"], 3),
      common.fmt(c["marginal_ratio"], 3),
      common.fmt(c["expected_n"], 3),
    ]
    for c in runs
  ]
  print(common.markdown_table(headers, table, align="l" + "r" * 7))
  print(
    "\nThe same executable runs N and 2N steps (the cap is a traced argument). "
    "'no-overhead value' = 1 + 0.5/N: the run's extra forward pass for the final "
    "P(real). In sequential mode every active stage gets N steps."
  )

  print("\n## 3. One jitted run as the cascade grows (mask of k active slots)\n")
  headers = ["mode", "k active", "XLA compilations", "compile s", "call s"]
  table = [
    [
      g["mode"],
      g["active"],
      g["compiles"],
      common.fmt(g["compile_s"]),
      common.fmt(g["call_s"], 2),
    ]
    for g in grow
  ]
  print(common.markdown_table(headers, table, align="lrrrr"))
  print(
    "\nEvery XLA compilation in the process during the call is counted; the "
    "step cap also changes from call to call (max_steps + k)."
  )

  print("\n## 4. Compile time of the jitted run, paper network\n")
  headers = [
    "size",
    "mode",
    "slots",
    "trace+lower s",
    "XLA compile s",
    "total s",
    "compile CPU s",
  ]
  table = [
    [
      f"{c['size']}x{c['size']}",
      c["mode"],
      c["slots"],
      common.fmt(c["trace_lower_s"]),
      common.fmt(c["compile_s"]),
      common.fmt(c["total_compile_s"]),
      common.fmt(c["compile_cpu_s"]),
    ]
    for c in compiles
  ]
  print(common.markdown_table(headers, table, align="llrrrrr"))

  print("\nTargets:")
  for c in runs:
    # One-sided: a run cheaper than N separate steps has no per-step overhead (each
    # separate call also allocates the step's temporaries afresh; the loop reuses them).
    ok = c["ratio_n"] <= 1.10 * c["expected_n"] and c["marginal_ratio"] <= 1.10
    print(
      f"- no host round trip per step, {c['mode']}: run(N) / (N x step) = "
      f"{c['ratio_n']:.3f} (no-overhead value {c['expected_n']:.3f}), marginal "
      f"{c['marginal_ratio']:.3f} (target: at most 10% above those): "
      f"{common.verdict(ok)}"
    )
  later = [g for g in grow if g["active"] > 1]
  print(
    f"- no recompilation between stages: {sum(g['compiles'] for g in later)} XLA "
    f"compilations after the first call, over {len(later)} calls: "
    f"{common.verdict(not any(g['compiles'] for g in later))}"
  )
  for c in compiles + [dict(size=32, mode=r["mode"], **r["run_compile"]) for r in runs]:
    print(
      f"- compile of run < 10 s, {c['size']}x{c['size']} {c['mode']}: "
      f"{c['total_compile_s']:.1f} s wall, {c['compile_cpu_s']:.1f} s CPU: "
      f"{common.verdict(c['total_compile_s'] < 10)} (wall)"
      + (
        ""
        if c["total_compile_s"] < 10
        else f", {common.verdict(c['compile_cpu_s'] < 10)} (CPU time)"
      )
    )
  for r in runs:
    ratio = (r["run_temp_mb"] or 0) / max(r["step_temp_mb"] or 1e-9, 1e-9)
    print(
      f"- no per-step activations kept, {r['mode']}: the run's temporaries are "
      f"{common.fmt(r['run_temp_mb'], 0)} MB for up to {r['cap']} steps per stage, "
      f"one step's {common.fmt(r['step_temp_mb'], 0)} MB ({ratio:.2f}x; keeping "
      f"every step's would be ~{r['cap']}x): {common.verdict(ratio < 2)}"
    )


if __name__ == "__main__":
  main()
