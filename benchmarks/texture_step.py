"""How fast is one texture synthesis step with the anysize patch head?

Question 4 of the performance issue. The energy is the one training and sampling use
for textures, `innjax.energy.make_stage_logit_fn` on configs/texture.py (the paper's
setting, section 4.1): the paper network on 64x64 patches, images synthesised at the
target size plus half a patch of padding per side (256x256 -> 320x320, 512x512 ->
576x576), and at every step `innjax.patches` cuts fresh random patches from every image
(10 per 256x256 target, scaled with the area: 40 at 512x512) and averages the gradients
of overlapping patches. The sampler is the training one
(`synthesis.make_synthesis_sampler`: Adam lr 0.1, beta1 0.5, clip, sequential mode as
in the config), jitted `step`, with the state fed back from call to call; stage
variables are distinct, with non-trivial BatchNorm statistics.

Reported: compile time (wall and process CPU), median ms per step, images x steps/s,
patches/s, GFLOP/s, percent of a float32 matmul measured by the same script, and
XLA's estimate of the step's temporaries.

FLOP convention: per 64x64 patch forward = sum over convs 2*k*k*Cin*Cout*Hout*Wout +
2*D; forward + input gradient = 2x forward; a step = images x patches per image such
passes (sequential mode: one stage). Patch extraction, coverage counting and the
gradient averaging are not counted.

Usage:
  python benchmarks/texture_step.py            # 256 and 512, batch 4: ~4 min
  python benchmarks/texture_step.py --quick    # batch 1: ~2 min
  python benchmarks/texture_step.py --batch 50 --sizes 256   # the paper's synthesis batch
"""

from __future__ import annotations

import jax

import common
from innjax import energy, sampler, synthesis


def parse_args():
  """The command line (see the module docstring), with defaults filled in."""
  p = common.make_parser(__doc__, repeats=3)
  p.add_argument(
    "--sizes",
    type=common.parse_int_list,
    default=[256, 512],
    help="target sizes (before the half-patch padding)",
  )
  p.add_argument(
    "--batch",
    type=int,
    default=None,
    help="images per step (default 4 = configs/texture.py's sample.batch_size; quick 1)",
  )
  p.add_argument("--modes", type=common.parse_str_list, default=["sequential"])
  p.add_argument("--stages", type=int, default=2, help="cascade slots")
  args = p.parse_args()
  common.fill_defaults(args, batch=(4, 1), cell_budget=(30.0, 8.0))
  for m in args.modes:
    if m not in sampler.MODES:
      p.error(f"unknown mode {m!r}; choose from {sampler.MODES}")
  return args


def main():
  """Runs the benchmark and prints its report."""
  args = parse_args()
  bench = common.Bench("texture_step", args)
  config = common.load_config("texture")
  model = synthesis.build_model(config)
  geometry = synthesis.geometry(config)
  side = geometry.patch_size
  key = jax.random.PRNGKey(args.seed)
  params = common.stacked_variables(model, side, args.stages, key)
  rows = []
  for size in args.sizes:
    full = energy.negative_shape(geometry, size)
    per_image = energy.patches_per_step(geometry, full[:2])
    logit_fn = energy.make_stage_logit_fn(model, geometry, full[:2])
    x0 = common.random_images(jax.random.fold_in(key, size), args.batch, full[0], full[2])
    for mode in args.modes:
      smp = synthesis.make_synthesis_sampler(config, logit_fn, mode)
      common.log(f"  {size}x{size} ({full[0]}x{full[1]} padded) {mode}: compiling ...")
      state0 = smp.init(x0, jax.random.fold_in(key, 1))
      compiled, cinfo = common.compile_jitted(smp.step, params, state0)
      timing = common.time_chained(args, compiled, state0, params)
      patches = args.batch * per_image * (args.stages if mode == "sum" else 1)
      flops = common.grad_step_flops(model, side, side, patches, 1, args.grad_factor)
      row = {
        "size": size,
        "padded": full[:2],
        "mode": mode,
        "batch": args.batch,
        "patches_per_image": per_image,
        "patch": side,
        **cinfo,
        "median_s": timing["median_s"],
        "times_s": timing["times_s"],
        "repeats": timing["repeats"],
        "patches_per_s": patches / timing["median_s"],
        **common.rate_fields(flops, timing["median_s"], args.batch, bench.peak_gflops),
        **common.memory_fields(cinfo),
      }
      rows.append(row)
      common.log(
        f"    {timing['median_s'] * 1e3:9.1f} ms/step  {row['gflops']:6.1f} GFLOP/s"
      )

  bench.header(
    "innjax texture synthesis step (anysize patch head)",
    f"configs/texture.py: paper network on {side}x{side} patches, Adam lr "
    f"{config.synthesis.step_size}, overlapping-patch gradients averaged "
    f"({bool(config.patch.average_overlaps)}), {args.stages} cascade slots",
  )
  headers = [
    "target",
    "synthesised",
    "mode",
    "batch",
    "patches/image",
    "compile s",
    "compile CPU s",
    "ms/step",
    "img*steps/s",
    "patches/s",
    "GFLOP/s",
    "% peak",
    "XLA temp MB",
    "n",
  ]
  table = [
    [
      f"{r['size']}x{r['size']}",
      f"{r['padded'][0]}x{r['padded'][1]}",
      r["mode"],
      r["batch"],
      r["patches_per_image"],
      common.fmt(r["total_compile_s"]),
      common.fmt(r["compile_cpu_s"]),
      common.fmt(r["median_s"] * 1e3),
      common.fmt(r["items_per_s"], 2),
      common.fmt(r["patches_per_s"]),
      common.fmt(r["gflops"]),
      common.fmt(r["pct_peak"], 0),
      common.fmt(r["xla_temp_mb"], 0),
      r["repeats"],
    ]
    for r in rows
  ]
  print(common.markdown_table(headers, table, align="lll" + "r" * 11))
  print(
    "\nMedian of n chained calls of the jitted step after one warm-up call. "
    "Each step draws new patch positions. "
    + common.FLOP_NOTE.format(factor=args.grad_factor).replace(
      "per image", "per 64x64 patch"
    )
  )
  bench.finish(rows=rows)


if __name__ == "__main__":
  main()
