"""Which XLA:CPU flags make innjax faster, measured in alternating processes?

XLA reads `XLA_FLAGS` once, when the backend starts, so two flag sets cannot share a
process. This script starts one child process per flag set and round, in turn (A, B,
C, A, B, C, ...), so that load from other processes hits every set about equally, and
reports the median of each figure over the rounds and its ratio to the first set
(the default: no flag).

Each child measures, after compilation:

* `matmul`: float32 2048x2048 @ 2048x2048, GFLOP/s;
* `conv`: XLA's native 5x5 stride-2 "SAME" convolution forward, 100 x 32x32x64 ->
  128 channels (the paper network's second layer at 64x64), GFLOP/s;
* `sampler32`, `sampler64`: the jitted sampler `run` (paper network, conv_impl auto,
  batch 100, 1 stage, Adam + clip, no early stop), ms per step;
* `train32`: the classifier training chunk of configs/svhn.py at 32x32 (50 + 50
  images per update), ms per update;
* `equal`: the largest difference between conv_impl "im2col" and "xla" in logits and
  input gradients (4 images of 32x32), and between this flag set's and the pure
  reference `jax.lax.conv` in float64-free float32: a flag that changes numerics
  shows up here (the equivalence tests in tests/test_models.py are the criterion).

Usage:
  python benchmarks/xla_flags.py                      # 4 flag sets x 2 rounds, ~25 min on a loaded 2-core machine
  python benchmarks/xla_flags.py --rounds 3 --json out.json
  python benchmarks/xla_flags.py --sets "default;--xla_cpu_use_xnnpack=true"
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The person's own XLA_FLAGS, read before `import innjax` adds to them.
USER_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")

DEFAULT_SETS = (
  "",
  "--xla_cpu_use_xnnpack=true",
  "--xla_cpu_experimental_ynn_fusion_type=dot",
  "--xla_cpu_experimental_ynn_fusion_type=individual_convolution",
)

FIGURES = (
  ("matmul", "GFLOP/s", True),
  ("conv", "GFLOP/s", True),
  ("sampler32", "ms/step", False),
  ("sampler64", "ms/step", False),
  ("train32", "ms/update", False),
)


def child() -> dict:
  """Measures every figure under this process's XLA_FLAGS; returns them."""
  sys.path.insert(0, HERE)
  import common  # pylint: disable=import-outside-toplevel
  import jax
  import jax.numpy as jnp
  import numpy as np
  from innjax import models, sampler, synthesis, train

  out = {"matmul": common.matmul_peak(2048, repeats=5)["median_gflops"]}
  key = jax.random.PRNGKey(0)
  x = common.random_images(key, 100, 32, 64)
  kernel = 0.02 * jax.random.normal(key, (5, 5, 64, 128))
  conv = jax.jit(lambda a, k: models.conv2d(a, k, 2, "xla"))
  t = common.time_calls(lambda: conv(x, kernel), repeats=5, warmup=1)
  out["conv"] = 2 * 25 * 64 * 128 * 16 * 16 * 100 / t["median_s"] / 1e9

  model = models.Classifier()
  for size, steps in ((32, 5), (64, 2)):
    stacked = common.stacked_variables(model, size, 1, jax.random.fold_in(key, size))
    smp = sampler.make_sampler(
      models.make_logit_fn(model),
      step_size=0.02,
      beta1=0.5,
      stop_prob=None,
      max_steps=steps,
      clip=(-1.0, 1.0),
    )
    x0 = common.random_images(jax.random.fold_in(key, 7), 100, size)
    run = jax.jit(smp.run)
    t = common.time_calls(
      lambda: run(stacked, x0, jax.random.PRNGKey(1))[0], repeats=3, warmup=1
    )
    out[f"sampler{size}"] = 1e3 * t["median_s"] / (steps + 0.5)

  config = common.load_config("svhn")
  config.train.log_every = 4
  tmodel = synthesis.build_model(config)
  tx = train.make_optimizer(config)
  state = train.init_state(config, tmodel, key)
  positives = jax.random.randint(key, (500, 32, 32, 3), 0, 256).astype(jnp.uint8)
  chunk = jax.jit(train.make_train_chunk(tmodel, config, tx))
  t = common.time_calls(
    lambda: chunk(
      state.params, state.batch_stats, state.opt_state, state.pool, positives, key
    )[3],
    repeats=3,
    warmup=1,
  )
  out["train32"] = 1e3 * t["median_s"] / 4

  variables = common.stacked_variables(model, 32, 1, key)
  from innjax import cascade  # pylint: disable=import-outside-toplevel

  stage = cascade.get_stage(variables, 0)
  xs = common.random_images(jax.random.fold_in(key, 9), 4, 32)
  diffs = {}
  for impl in ("im2col", "xla"):
    fn = models.make_logit_fn(models.Classifier(conv_impl=impl))
    diffs[impl] = (
      np.asarray(fn(stage, xs)),
      np.asarray(jax.grad(lambda a, fn=fn: fn(stage, a).sum())(xs)),
    )
  out["equal_logit"] = float(np.max(np.abs(diffs["im2col"][0] - diffs["xla"][0])))
  out["equal_grad"] = float(np.max(np.abs(diffs["im2col"][1] - diffs["xla"][1])))
  out["logits"] = diffs["xla"][0].tolist()
  return out


def run_child(flags: str, timeout: float) -> dict:
  """One child process under `flags` (added to any XLA_FLAGS of the environment)."""
  env = dict(os.environ)
  # `import innjax` adds innjax.runtime.CPU_XLA_FLAGS unless XLA_FLAGS names them:
  # name them off here, so that every set is measured as written ("" = XLA's own
  # defaults).
  sys.path.insert(0, os.path.dirname(HERE))
  from innjax import runtime  # pylint: disable=import-outside-toplevel

  named = flags.split() + USER_XLA_FLAGS.split()
  off = [
    f"--{runtime._flag_name(f)}=false"
    for f in runtime.CPU_XLA_FLAGS
    if runtime._flag_name(f) not in {runtime._flag_name(n) for n in named}
  ]
  env["XLA_FLAGS"] = " ".join(f for f in [USER_XLA_FLAGS, flags] + off if f)
  env.setdefault("JAX_PLATFORMS", "cpu")
  t0 = time.perf_counter()
  proc = subprocess.run(
    [sys.executable, __file__, "--child"],
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  if proc.returncode:
    return {"error": proc.stderr.strip().splitlines()[-1:]}
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  result["wall_s"] = time.perf_counter() - t0
  return result


def main() -> int:
  """Alternates the flag sets' child processes and prints the table."""
  import argparse  # pylint: disable=import-outside-toplevel

  p = argparse.ArgumentParser(
    description=__doc__.split("\n")[0],
    epilog=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument(
    "--sets", default=None, help="flag sets separated by ';' ('default' = none)"
  )
  p.add_argument("--timeout", type=float, default=900.0)
  p.add_argument("--json", default=None)
  args = p.parse_args()
  if args.child:
    print(json.dumps(child()))
    return 0
  sets = (
    list(DEFAULT_SETS)
    if args.sets is None
    else ["" if s.strip() == "default" else s.strip() for s in args.sets.split(";")]
  )
  sys.path.insert(0, HERE)
  import common  # pylint: disable=import-outside-toplevel

  load_start = os.getloadavg()
  results = {s: [] for s in sets}
  for r in range(args.rounds):
    for s in sets:
      common.log(f"round {r + 1}/{args.rounds}: {s or 'default'} ...")
      res = run_child(s, args.timeout)
      common.log(f"  {res}")
      results[s].append(res)
  load_end = os.getloadavg()
  print("# XLA:CPU flags, alternating child processes\n")
  print(
    f"- CPU: {common._cpu_model()} ({common._cpu_flags()}), {os.cpu_count()} "
    f"logical CPUs; load average {load_start[0]:.2f} at start, {load_end[0]:.2f} "
    f"at end"
  )
  print(
    f"- {args.rounds} rounds; medians over rounds; 'x' = ratio to the default "
    "(> 1 better for GFLOP/s, < 1 better for ms)\n"
  )
  base = {}
  table = []
  for s in sets:
    ok = [r for r in results[s] if "error" not in r]
    if not ok:
      table.append(
        [s or "default", "error: " + " ".join(results[s][0]["error"])]
        + [""] * (len(FIGURES) + 1)
      )
      continue
    row = [s or "default"]
    for name, unit, _ in FIGURES:
      med = statistics.median(r[name] for r in ok)
      base.setdefault(name, med)
      row.append(f"{med:,.1f} ({med / base[name]:.2f}x)")
    row.append(
      f"{max(r['equal_logit'] for r in ok):.1e} / {max(r['equal_grad'] for r in ok):.1e}"
    )
    table.append(row)
  headers = (
    ["XLA_FLAGS"]
    + [f"{n} {u}" for n, u, _ in FIGURES]
    + ["im2col-xla max diff logit / grad"]
  )
  print(common.markdown_table(headers, table, align="l" + "r" * (len(headers) - 1)))
  ref = [r for r in results[sets[0]] if "error" not in r]
  if ref:
    print(
      "\nLargest logit difference from the default flag set (same images, same "
      "variables):"
    )
    for s in sets[1:]:
      ok = [r for r in results[s] if "error" not in r]
      if ok:
        import numpy as np  # pylint: disable=import-outside-toplevel

        d = max(
          float(np.max(np.abs(np.array(r["logits"]) - np.array(ref[0]["logits"]))))
          for r in ok
        )
        print(f"- {s}: {d:.1e}")
  common.write_json(
    args.json,
    {"sets": sets, "results": results, "load_start": load_start, "load_end": load_end},
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
