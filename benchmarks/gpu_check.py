"""The GPU check: every figure the performance docs want from a GPU, in one run.

Run it through `benchmarks/gpu_check.sh` (which brings the wheels of the packages a
GPU machine may lack); see docs/performance.md. It measures, on the default JAX
backend, and writes `gpu_check.json` and `gpu_check.md` into --out:

* `matmul`: the float32 and bfloat16 matmul rates (the peak the other figures are
  read against);
* `sampler`: 50 images of 64x64 through a 20-stage cascade of the paper's network,
  100 steps per stage, no early stop, in sum mode (100 steps of the 20 summed
  stages) and sequential mode (100 steps of each stage in turn): the same 2000
  stage-steps of work; float32 and bfloat16 activations (the image and Adam's
  moments stay float32). The paper reports about 10 s on its GPU;
* `texture`: one 256x256 texture through the patch head at configs/texture_paper.py's
  settings (64x64 patches, 10 per image, Adam 0.1), 20 stages x 100 steps,
  sequential, no early stop. The paper reports about 30 s;
* `train`: the classifier training chunk of configs/svhn.py at 32x32 and 64x64, in
  images per second;
* `svhn`: 2 stages of configs/svhn.py end to end through the command line's code
  (`innjax.cli.run`) on random uint8 images shaped like SVHN, then `--mode=sample`,
  then the bfloat16 check: the trained cascade sampled with bf16 activations must
  cross the newest classifier's boundary (P(real) > 0.5, judged in float32) about
  as often as float32 sampling does;
* `texture_stage`: 1 stage of configs/texture.py end to end.

The cascades of `sampler` and `texture` are untrained (distinct random stages with
non-trivial BatchNorm statistics), which is all a timing needs. Every section is
timed with its compilation (first call) and without (the median of the later calls);
a failing section is recorded and the others still run; the exit code is 1 if any
failed. The JSON file is rewritten after every section, so a run cut short keeps
what it measured.

--dry_run shrinks every size (small networks, a few images and steps) so that the
whole script runs on a CPU in a minute or two; tests/test_gpu_check.py runs it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
import types

import common  # Puts the repository root on sys.path; imports jax.
import jax
import jax.numpy as jnp
import numpy as np

from innjax import cascade, cli, generate, models, sampler, synthesis  # noqa: E402
from innjax import energy as energy_lib  # noqa: E402

PAPER_SECONDS = {"sampler": 10.0, "texture": 30.0}
TARGET_S = 1.0

# (full, dry run) sizes.
SIZES = {
  "matmul_n": (8192, 256),
  "images": (50, 2),
  "image_size": (64, 32),
  "stages": (20, 2),
  "steps": (100, 2),
  "texture_size": (256, 64),
  "texture_stages": (20, 2),
  "texture_steps": (100, 2),
  "train_sizes": ((32, 64), (32,)),
  "train_updates": (20, 2),
  "svhn_updates": (500, 2),
  "svhn_negatives": (2000, 8),
  "svhn_max_steps": (200, 2),
  "svhn_images": (10000, 64),
  "sample_num": (100, 4),
  "texture_updates": (200, 2),
  "texture_negatives": (50, 2),
  "texture_max_steps": (200, 2),
  "repeats": (3, 1),
}
DRY_FEATURES = (8, 16, 32, 64)


def parse_args(argv=None):
  """The command line; see the module docstring."""
  p = argparse.ArgumentParser(
    description=__doc__.split("\n")[0],
    epilog=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument(
    "--dry_run",
    action="store_true",
    help="tiny sizes and networks: checks that every section runs",
  )
  p.add_argument(
    "--out", default="gpu_check_out", help="folder for gpu_check.json and gpu_check.md"
  )
  p.add_argument(
    "--only",
    default="",
    help="comma-separated sections to run (default all): " + ",".join(SECTIONS),
  )
  args = p.parse_args(argv)
  for name, (full, dry) in SIZES.items():
    setattr(args, name, dry if args.dry_run else full)
  args.only = [s for s in args.only.split(",") if s] or list(SECTIONS)
  unknown = sorted(set(args.only) - set(SECTIONS))
  if unknown:
    p.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
  return args


def timed(fn, repeats: int) -> dict:
  """First call (with compilation) and the median of `repeats` later calls."""
  t0 = time.perf_counter()
  common.block(fn())
  first = time.perf_counter() - t0
  timing = common.time_calls(fn, repeats=repeats, warmup=0)
  return {
    "first_call_s": first,
    "median_s": timing["median_s"],
    "times_s": timing["times_s"],
  }


def paper_model(args, dtype=None) -> models.Classifier:
  """The paper's network (small channels in a dry run)."""
  features = DRY_FEATURES if args.dry_run else (64, 128, 256, 512)
  return models.Classifier(features=features, dtype=dtype)


def svhn_config(args, overrides: dict):
  """configs/svhn.py with the check's sizes (and small channels in a dry run)."""
  config = common.load_config("svhn")
  if args.dry_run:
    config.model.features = DRY_FEATURES
  return cli.with_overrides(config, overrides)


# ----------------------------------------------------------------------------------
# Sections: each returns a dict of results (rows for the table under "rows").


def section_matmul(args, key):
  """float32 and bfloat16 square matmul rates."""
  rows = []
  for dtype in (jnp.float32, jnp.bfloat16):
    n = args.matmul_n
    a = jax.random.normal(key, (n, n), dtype)
    b = jax.random.normal(jax.random.fold_in(key, 1), (n, n), dtype)
    mm = jax.jit(jnp.matmul)
    t = timed(lambda: mm(a, b), max(args.repeats, 3))
    rows.append(
      {
        "what": f"matmul {n}x{n} {jnp.dtype(dtype).name}",
        "first_call_s": t["first_call_s"],
        "median_s": t["median_s"],
        "figure": f"{2 * n**3 / t['median_s'] / 1e12:.1f} TFLOP/s",
      }
    )
  return {"rows": rows, "tflops_f32": 2 * args.matmul_n**3 / rows[0]["median_s"] / 1e12}


def section_sampler(args, key):
  """The 64x64, 20-stage synthesis in sum and sequential mode, float32 and bf16."""
  rows = []
  size, n = args.image_size, args.images
  stacked = common.stacked_variables(paper_model(args), size, args.stages, key)
  x0 = common.random_images(jax.random.fold_in(key, 1), n, size)
  flops = common.grad_step_flops(
    paper_model(args), size, size, n, args.stages * args.steps
  )
  for dtype_name, dtype in (("float32", None), ("bfloat16", jnp.bfloat16)):
    logit_fn = models.make_logit_fn(paper_model(args, dtype))
    for mode in ("sum", "sequential"):
      smp = sampler.make_sampler(
        logit_fn,
        step_size=0.02,
        beta1=0.5,
        stop_prob=None,
        max_steps=args.steps,
        mode=mode,
        clip=(-1.0, 1.0),
      )
      run = jax.jit(smp.run)
      t = timed(lambda run=run: run(stacked, x0, jax.random.PRNGKey(1))[0], args.repeats)
      rows.append(
        {
          "what": f"sampler {n} x {size}x{size}, {args.stages} stages x {args.steps} "
          f"steps, {mode}, {dtype_name}",
          "first_call_s": t["first_call_s"],
          "median_s": t["median_s"],
          "figure": f"{flops / t['median_s'] / 1e12:.1f} TFLOP/s; paper ~"
          f"{PAPER_SECONDS['sampler']:.0f} s",
          "target": f"< {TARGET_S:g} s: " + common.verdict(t["median_s"] < TARGET_S),
        }
      )
  return {"rows": rows}


def section_texture(args, key):
  """One texture through the patch head at the paper's settings."""
  config = common.load_config("texture_paper")
  side = args.texture_size
  config.num_stages = args.texture_stages
  config.data.image_size = side
  if args.dry_run:
    config.model.features = DRY_FEATURES
    config.patch.size = 16
  config.synthesis.stop_prob = 0.0  # no early stop: a fixed amount of work
  config.sample.max_steps = args.texture_steps
  config.sample.mode = "sequential"
  model = synthesis.build_model(config)
  stacked = common.stacked_variables(
    model, int(config.patch.size), args.texture_stages, key
  )
  active = jnp.ones((args.texture_stages,), bool)
  # What synthesis.make_image_synthesizer runs, built here on one fixed image of
  # noise, so that the timed calls reuse one compiled program.
  geometry = synthesis.geometry(config)
  shape = energy_lib.negative_shape(geometry, (side, side))
  logit_fn = energy_lib.make_stage_logit_fn(model, geometry, shape[:2])
  run = synthesis.jit_run(
    synthesis.make_synthesis_sampler(config, logit_fn, "sequential", args.texture_steps)
  )
  x0 = synthesis.initial_negatives(
    jax.random.fold_in(key, 1), 1, shape, float(config.pool.init_std)
  )
  t = timed(lambda: run(stacked, x0, jax.random.PRNGKey(2), active)[0], args.repeats)
  return {
    "rows": [
      {
        "what": f"texture {side}x{side}, patch head, {args.texture_stages} stages x "
        f"{args.texture_steps} steps, sequential",
        "first_call_s": t["first_call_s"],
        "median_s": t["median_s"],
        "figure": f"paper ~{PAPER_SECONDS['texture']:.0f} s",
        "target": f"< {TARGET_S:g} s: " + common.verdict(t["median_s"] < TARGET_S),
      }
    ]
  }


def section_train(args, key):
  """The classifier training chunk (benchmarks/train_step.py) at each size."""
  import train_step  # pylint: disable=import-outside-toplevel

  targs = types.SimpleNamespace(
    updates=args.train_updates,
    repeats=args.repeats,
    warmup=1,
    cell_budget=None,
    min_repeats=1,
  )
  bench = types.SimpleNamespace(peak_gflops=None)
  rows = []
  for size in args.train_sizes:
    if args.dry_run:  # train_step builds configs/svhn.py's network: keep it small
      orig = common.load_config
      common.load_config = lambda name, orig=orig: cli.with_overrides(
        orig(name), {"model.features": DRY_FEATURES}
      )
    try:
      r = train_step.measure(targs, bench, size, "auto", jax.random.fold_in(key, size))
    finally:
      if args.dry_run:
        common.load_config = orig
    rows.append(
      {
        "what": f"classifier training step {size}x{size}, batch {r['batch']}",
        "first_call_s": r["total_compile_s"],
        "median_s": r["per_update_s"],
        "figure": f"{r['items_per_s']:,.0f} images/s",
      }
    )
  return {"rows": rows}


def section_svhn(args, key):
  """configs/svhn.py end to end: 2 stages, --mode=sample, the bf16 boundary check."""
  work = tempfile.mkdtemp(prefix="innjax_gpu_check_")
  data = os.path.join(work, "svhn_like.npz")
  rng = np.random.default_rng(0)
  np.savez(data, x=rng.integers(0, 256, (args.svhn_images, 32, 32, 3), np.uint8))
  workdir = os.path.join(work, "svhn")
  config = svhn_config(
    args,
    {
      "data.source": "npz",
      "data.path": data,
      "num_stages": 2,
      "train.steps_per_stage": args.svhn_updates,
      "train.log_every": max(1, args.svhn_updates // 2),
      "pool.negatives_per_stage": args.svhn_negatives,
      "pool.capacity": 3 * args.svhn_negatives,
      "synthesis.max_steps": args.svhn_max_steps,
      "synthesis.batch_size": min(100, args.svhn_negatives),
      "sample.max_steps": args.svhn_max_steps,
      "sample.num": args.sample_num,
      "sample.batch_size": min(100, args.sample_num),
      "grid_size": min(64, args.svhn_negatives),
    },
  )
  rows = []
  for mode in ("train", "sample"):
    t0 = time.perf_counter()
    code = cli.run(mode, config, workdir)
    seconds = time.perf_counter() - t0
    if code:
      raise RuntimeError(f"--mode={mode} exited with {code}")
    what = (
      f"configs/svhn.py, 2 stages ({args.svhn_updates} updates, "
      f"{args.svhn_negatives} negatives each)"
      if mode == "train"
      else f"--mode=sample, {args.sample_num} images"
    )
    rows.append(
      {"what": what, "first_call_s": seconds, "median_s": None, "figure": "ran"}
    )
  # bfloat16 sampling of the trained cascade, judged by the float32 classifiers.
  stacked, active, stages = generate.load_cascade(config, workdir)
  newest = cascade.get_stage(stacked, stages - 1)
  judge = models.make_logit_fn(synthesis.build_model(config))
  crossed = {}
  for dtype in ("float32", "bfloat16"):
    cfg = cli.with_overrides(config.copy_and_resolve_references(), {"model.dtype": dtype})
    x, _ = synthesis.synthesize_images(
      cfg, stacked, active, args.sample_num, jax.random.PRNGKey(3)
    )
    p = jax.nn.sigmoid(judge(newest, jnp.asarray(x)))
    crossed[dtype] = float(jnp.mean(p > 0.5))
  ok = crossed["bfloat16"] >= crossed["float32"] - 0.1
  rows.append(
    {
      "what": "bf16 sampling crosses the newest boundary (share of images, "
      "judged in float32)",
      "first_call_s": None,
      "median_s": None,
      "figure": f"float32 {crossed['float32']:.2f}, bfloat16 {crossed['bfloat16']:.2f}",
      "target": "bf16 within 0.1 of float32: " + common.verdict(ok),
    }
  )
  return {"rows": rows, "crossed": crossed, "bf16_ok": ok}


def section_texture_stage(args, key):
  """1 stage of configs/texture.py end to end."""
  config = common.load_config("texture")
  if args.dry_run:
    config.model.features = DRY_FEATURES[:3]
    config.data.image_size = 64
    config.patch.size = 16
  cli.with_overrides(
    config,
    {
      "num_stages": 1,
      "train.steps_per_stage": args.texture_updates,
      "train.log_every": max(1, args.texture_updates // 2),
      "pool.negatives_per_stage": args.texture_negatives,
      "pool.capacity": 2 * args.texture_negatives,
      "synthesis.batch_size": args.texture_negatives,
      "synthesis.max_steps": args.texture_max_steps,
      "grid_size": args.texture_negatives,
    },
  )
  workdir = tempfile.mkdtemp(prefix="innjax_gpu_check_texture_")
  t0 = time.perf_counter()
  code = cli.run("train", config, workdir)
  if code:
    raise RuntimeError(f"configs/texture.py exited with {code}")
  return {
    "rows": [
      {
        "what": f"configs/texture.py, 1 stage ({args.texture_updates} updates, "
        f"{args.texture_negatives} negatives)",
        "first_call_s": time.perf_counter() - t0,
        "median_s": None,
        "figure": "ran",
      }
    ]
  }


SECTIONS = {
  "matmul": section_matmul,
  "sampler": section_sampler,
  "texture": section_texture,
  "train": section_train,
  "svhn": section_svhn,
  "texture_stage": section_texture_stage,
}


def report(results: dict, info: dict, total_s: float) -> str:
  """The markdown report: machine, then one table of every section's rows."""
  lines = [
    "# innjax GPU check",
    "",
    common.machine_markdown(info),
    f"- total wall time {total_s:.0f} s, compilation included",
    "",
  ]
  table = []
  for name, res in results.items():
    if "error" in res:
      table.append([name, "FAILED: " + res["error"], "-", "-", "-", "-"])
      continue
    for r in res["rows"]:
      table.append(
        [
          name,
          r["what"],
          common.fmt(r.get("first_call_s"), 2),
          common.fmt(r.get("median_s"), 3),
          r.get("figure", ""),
          r.get("target", ""),
        ]
      )
  lines.append(
    common.markdown_table(
      ["section", "what", "first call s (compile incl.)", "median s", "figure", "target"],
      table,
      align="llrrll",
    )
  )
  lines += [
    "",
    "median s: the median of the calls after the first; the training "
    "step row is per update. Cascades of `sampler` and `texture` are "
    "untrained; no early stop there.",
  ]
  return "\n".join(lines)


def main(argv=None) -> int:
  """Runs the sections and writes the JSON file and the markdown table."""
  args = parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  t_start = time.perf_counter()
  info = common.machine_info()
  key = jax.random.PRNGKey(0)
  results = {}
  json_path = os.path.join(args.out, "gpu_check.json")
  for i, name in enumerate(args.only):
    common.log(f"[{time.perf_counter() - t_start:6.0f} s] {name} ...")
    t0 = time.perf_counter()
    try:
      results[name] = SECTIONS[name](args, jax.random.fold_in(key, i))
    except Exception as err:  # pylint: disable=broad-except
      traceback.print_exc()
      results[name] = {"error": f"{type(err).__name__}: {err}".splitlines()[0][:300]}
    results[name]["section_s"] = time.perf_counter() - t0
    common.write_json(
      json_path,
      {
        "dry_run": args.dry_run,
        "machine": info,
        "results": results,
        "total_s": time.perf_counter() - t_start,
      },
    )
  text = report(results, info, time.perf_counter() - t_start)
  with open(os.path.join(args.out, "gpu_check.md"), "w") as f:
    f.write(text + "\n")
  print(text)
  return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
  sys.exit(main())
