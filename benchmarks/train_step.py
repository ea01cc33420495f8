"""How fast is the classifier training step (paper 3.2.1)?

Question 3 of the performance issue. Times the jitted training chunk of the real
training loop, `innjax.train.make_train_chunk`: `--updates` SGD updates run by
`lax.scan`, each drawing 50 positives and 50 pool negatives (age-weighted), a
forward pass in training mode (BatchNorm batch statistics), sigmoid cross-entropy,
the weight gradients and the SGD update. The network is the paper's (configs/svhn.py
at 32x32, configs/celeba.py's 64x64), positives are random uint8 images (only their
shape matters here) and the pool holds the initial N(0, 0.3^2) negatives. The
convolution implementation is compared: "auto" (im2col on CPU) against XLA's native
convolution ("xla", at --compare-sizes only: it is slow on CPU).

The chunk's outputs (params, BatchNorm statistics, optimizer state) are fed back in
from call to call, as in training. Reported: compile time (wall and process CPU),
the median time per update (chunk time / updates), images per second, GFLOP/s and
percent of a float32 matmul measured by the same script, and XLA's estimate of the
chunk's temporaries.

FLOP convention: per image forward = sum over convs 2*k*k*Cin*Cout*Hout*Wout + 2*D; a
training update = forward + weight gradients (1x forward each) + input gradients of
every layer but the first (the images need none): 3x forward minus the first conv.
BatchNorm, the loss, the pool draw and SGD are not counted.

Usage:
  python benchmarks/train_step.py             # 32 (auto, xla) and 64 (auto): ~6 min
  python benchmarks/train_step.py --quick     # 32x32, auto, 4 updates: ~2 min
  python benchmarks/train_step.py --sizes 32 --impls auto,xla,im2col --json out.json
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import common
from innjax import models, synthesis, train


def parse_args():
  """The command line (see the module docstring), with defaults filled in."""
  p = common.make_parser(__doc__, repeats=3)
  p.add_argument(
    "--sizes",
    type=common.parse_int_list,
    default=None,
    help="image sizes (default 32,64; quick 32)",
  )
  p.add_argument(
    "--impls",
    type=common.parse_str_list,
    default=None,
    help="conv implementations (default auto,xla; quick auto)",
  )
  p.add_argument(
    "--compare-sizes",
    type=common.parse_int_list,
    default=[32],
    help="sizes at which implementations other than auto run",
  )
  p.add_argument(
    "--updates",
    type=int,
    default=None,
    help="SGD updates per jitted chunk (default 10, quick 4)",
  )
  args = p.parse_args()
  common.fill_defaults(
    args,
    sizes=([32, 64], [32]),
    impls=(["auto", "xla"], ["auto"]),
    updates=(10, 4),
    cell_budget=(30.0, 5.0),
  )
  for impl in args.impls:
    if impl not in models.CONV_IMPLS:
      p.error(f"unknown conv impl {impl!r}; choose from {models.CONV_IMPLS}")
  return args


def measure(args, bench, size, impl, key):
  """One cell: compile and time the training chunk for this size and conv impl."""
  config = common.load_config("svhn")
  config.data.image_size = size
  config.model.conv_impl = impl
  config.train.log_every = args.updates
  model = synthesis.build_model(config)
  tx = train.make_optimizer(config)
  k_state, k_pos, k_run = jax.random.split(key, 3)
  state = train.init_state(config, model, k_state)
  positives = jax.random.randint(k_pos, (1000, size, size, 3), 0, 256).astype(jnp.uint8)
  chunk = train.make_train_chunk(model, config, tx)
  common.log(f"  {size}x{size} {impl}: compiling ...")
  compiled, cinfo = common.compile_jitted(
    chunk, state.params, state.batch_stats, state.opt_state, state.pool, positives, k_run
  )
  holder = {"vars": (state.params, state.batch_stats, state.opt_state), "i": 0}

  def call():
    holder["i"] += 1
    params, stats, opt, metrics = compiled(
      *holder["vars"], state.pool, positives, jax.random.fold_in(k_run, holder["i"])
    )
    holder["vars"] = (params, stats, opt)
    return params, metrics

  timing = common.time_cell(args, call)
  per_update = timing["median_s"] / args.updates
  batch = int(config.train.pos_batch) + int(config.train.neg_batch)
  flops = common.train_step_flops(model, size, size, batch)
  row = {
    "size": size,
    "impl": impl,
    "resolved": models.resolve_conv_impl(impl),
    "batch": batch,
    "updates_per_chunk": args.updates,
    **cinfo,
    "chunk_median_s": timing["median_s"],
    "chunk_times_s": timing["times_s"],
    "repeats": timing["repeats"],
    "per_update_s": per_update,
    **common.rate_fields(flops, per_update, batch, bench.peak_gflops),
    **common.memory_fields(cinfo),
  }
  common.log(f"    {per_update * 1e3:8.1f} ms/update  {row['gflops']:6.1f} GFLOP/s")
  return row


def main():
  """Runs the benchmark and prints its report."""
  bench = common.Bench("train_step", parse_args())
  args, rows = bench.args, []
  key = jax.random.PRNGKey(args.seed)
  for size in args.sizes:
    for impl in args.impls:
      if impl != "auto" and size not in args.compare_sizes:
        continue
      rows.append(measure(args, bench, size, impl, jax.random.fold_in(key, size)))
  bench.header(
    "innjax classifier training step",
    "train.make_train_chunk, paper network (configs/svhn.py), 50 positives "
    "+ 50 pool negatives per update, SGD lr 0.01",
  )
  headers = [
    "size",
    "conv impl",
    "batch",
    "compile s",
    "compile CPU s",
    "ms/update",
    "images/s",
    "GFLOP/s",
    "% peak",
    "XLA temp MB",
    "n",
  ]
  table = [
    [
      f"{r['size']}x{r['size']}",
      f"{r['impl']} ({r['resolved']})",
      r["batch"],
      common.fmt(r["total_compile_s"]),
      common.fmt(r["compile_cpu_s"]),
      common.fmt(r["per_update_s"] * 1e3),
      common.fmt(r["items_per_s"]),
      common.fmt(r["gflops"]),
      common.fmt(r["pct_peak"], 0),
      common.fmt(r["xla_temp_mb"], 0),
      r["repeats"],
    ]
    for r in rows
  ]
  print(common.markdown_table(headers, table, align="llr" + "r" * 8))
  print(
    f"\nMedian over n chunks of {args.updates} updates (per update = chunk / "
    "updates) after one warm-up chunk. FLOPs per update = (3 x forward - first "
    "conv) x batch; GFLOP/s = counted FLOPs / median time; '% peak' relative to "
    "the measured float32 matmul."
  )
  bench.finish(rows=rows)


if __name__ == "__main__":
  main()
