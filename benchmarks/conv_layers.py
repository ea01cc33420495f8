"""Per-layer time of the classifier's convolutions: xla vs im2col, forward, dx and dw.

Each 5x5 stride-2 "SAME" convolution of the default `Classifier()` (channels
3->64->128->256->512) is timed alone through `innjax.models.conv2d`, at the input
size it sees for a 32x32 or 64x64 image: the forward, and the gradient with respect
to its input (`jax.vjp` w.r.t. x only, with a random N(0,1) output cotangent; the
forward is not needed for it and XLA drops it), and the gradient with respect to its
kernel (what a training step adds), each jitted alone at the top level. This shows
which layers make the native XLA convolution slow on a given backend, which the
whole-network benchmarks cannot. Inputs are N(0,1) clipped to [-1, 1], kernels
N(0, 0.02^2).

FLOP convention: a convolution costs 2*k*k*Cin*Cout*Hout*Wout per image, forward;
its input gradient (a transposed convolution) is counted as the same number.

Usage:
  python benchmarks/conv_layers.py            # batch 100, 32x32 and 64x64, ~2-4 min
  python benchmarks/conv_layers.py --quick    # batch 20, 32x32
"""

from __future__ import annotations

import jax

import common
from innjax import models


def parse_args():
  """The command line (see the module docstring), with defaults filled in."""
  p = common.make_parser(__doc__, repeats=5)
  p.add_argument("--batch", type=int, default=None, help="default 100 (quick 20)")
  p.add_argument(
    "--sizes",
    type=common.parse_int_list,
    default=None,
    help="image sizes (default 32,64; quick 32)",
  )
  p.add_argument("--impls", type=common.parse_str_list, default=["im2col", "xla"])
  return common.fill_defaults(
    p.parse_args(), batch=(100, 20), sizes=([32, 64], [32]), cell_budget=(10.0, 4.0)
  )


def main():
  """Runs the benchmark and prints its report."""
  args = parse_args()
  bench = common.Bench("conv_layers", args)
  model = models.Classifier()
  key = jax.random.PRNGKey(args.seed)
  rows = []
  for size in args.sizes:
    h, c_in = size, model.channels
    for i, c_out in enumerate(model.features):
      kx, kk = jax.random.split(jax.random.fold_in(key, 100 * size + i))
      x = common.random_images(kx, args.batch, h, c_in)
      kernel = 0.02 * jax.random.normal(kk, (5, 5, c_in, c_out))
      out = -(-h // model.stride)
      # A random output cotangent: a constant one (from .sum()) lets XLA rewrite
      # the transposed convolution into something unrepresentative.
      cotangent = jax.random.normal(
        jax.random.fold_in(kk, 1), (args.batch, out, out, c_out)
      )
      flops = 2 * 25 * c_in * c_out * out * out * args.batch
      for impl in args.impls:
        impl_r = models.resolve_conv_impl(impl)

        def fwd(xx, kern, impl_r=impl_r):
          return models.conv2d(xx, kern, model.stride, impl_r)

        def dx(xx, kern, ct, impl_r=impl_r):
          _, vjp = jax.vjp(lambda a: models.conv2d(a, kern, model.stride, impl_r), xx)
          return vjp(ct)[0]

        def dw(xx, kern, ct, impl_r=impl_r):
          _, vjp = jax.vjp(lambda k: models.conv2d(xx, k, model.stride, impl_r), kern)
          return vjp(ct)[0]

        for direction, fn, fargs in (
          ("forward", fwd, (x, kernel)),
          ("dx", dx, (x, kernel, cotangent)),
          ("dw", dw, (x, kernel, cotangent)),
        ):
          compiled, cinfo = common.compile_jitted(fn, *fargs)
          timing = common.time_cell(args, lambda: compiled(*fargs))
          med = timing["median_s"]
          rows.append(
            {
              "size": size,
              "layer": f"conv{i}",
              "input": f"{h}x{h}x{c_in}",
              "c_out": c_out,
              "impl": impl,
              "direction": direction,
              "batch": args.batch,
              "compile_s": cinfo["total_compile_s"],
              "median_s": med,
              "repeats": timing["repeats"],
              **common.rate_fields(flops, med, args.batch, bench.peak_gflops),
            }
          )
          common.log(
            f"  {size} conv{i} {impl:6s} {direction:7s} {med * 1e3:9.1f} ms "
            f"{flops / med / 1e9:6.1f} GFLOP/s"
          )
      h, c_in = out, c_out

  bench.header("Per-layer convolution time: xla vs im2col", f"batch {args.batch}")
  headers = [
    "image",
    "layer",
    "input",
    "Cout",
    "impl",
    "direction",
    "compile s",
    "ms",
    "GFLOP/s",
    "% peak",
    "n",
  ]
  table = [
    [
      f"{r['size']}x{r['size']}",
      r["layer"],
      r["input"],
      r["c_out"],
      r["impl"],
      r["direction"],
      common.fmt(r["compile_s"]),
      common.fmt(r["median_s"] * 1e3),
      common.fmt(r["gflops"]),
      common.fmt(r["pct_peak"], 0),
      r["repeats"],
    ]
    for r in rows
  ]
  print(common.markdown_table(headers, table, align="lllrllrrrrr"))
  print(
    "\nMedian of n calls after warm-up. FLOPs per layer = "
    "2*k*k*Cin*Cout*Hout*Wout*batch for the forward, the input gradient "
    "('dx', a transposed convolution) and the kernel gradient ('dw', training only)."
  )
  bench.finish(rows=rows)


if __name__ == "__main__":
  main()
