"""One lever at a time: train a CPU-sized texture model with config overrides, measure it.

The "What was tried" table of docs/texture_quality.md comes from this script. It trains
configs/texture_paper.py scaled to a 2-core CPU (128x128 exemplar, 32x32 patches, a
32-64-128 classifier, 10 stages of 60 updates on 32 + 32 patches, 16 negatives,
synthesis cap 60), with the overrides given on the command line, samples 2 images of
128x128 from fresh noise, and prints one JSON line: training seconds and the
exemplar-referenced SWD (x 1e3, 3 pyramid levels, whole images against the whole
exemplar) of the samples, of the last stage's negatives, of random phase and of noise.
The row of images (exemplar, 2 samples, 2 negatives, random phase) goes to
`--out/NAME.png`, and the JSON line is appended to `--out/results.jsonl`.

Usage:
  python benchmarks/texture_levers.py NAME IMAGE [FIELD=VALUE ...]
  python benchmarks/texture_levers.py winn ../shared/data/textures/dtd_braided_0002.jpg \
      objective=wasserstein train.gradient_penalty=10.0 train.optimizer=adam \
      train.learning_rate=0.001 synthesis.step_size=0.01 synthesis.max_steps=100 \
      sample.max_steps=100
"""

import argparse
import ast
import json
import os
import shutil
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
from absl import logging  # noqa: E402

from configs import texture_paper  # noqa: E402
from innjax import baselines  # noqa: E402
from innjax import cli  # noqa: E402
from innjax import data as data_lib  # noqa: E402
from innjax import energy as energy_lib  # noqa: E402
from innjax import generate  # noqa: E402
from innjax import images as images_lib  # noqa: E402
from innjax import metrics  # noqa: E402
from innjax import synthesis  # noqa: E402
from innjax import train  # noqa: E402

# configs/texture_paper.py scaled to a 2-core CPU; the command line overrides these.
CPU_SCALE = {
  "num_stages": 10,
  "model.features": (32, 64, 128),
  "data.image_size": 128,
  "patch.size": 32,
  "train.steps_per_stage": 60,
  "train.pos_batch": 32,
  "train.neg_batch": 32,
  "train.log_every": 60,
  "pool.negatives_per_stage": 16,
  "pool.capacity": 80,
  "synthesis.batch_size": 16,
  "synthesis.max_steps": 60,
  "synthesis.step_size": 0.1,
  "sample.max_steps": 60,
  "grid_size": 16,
}


def parse_value(text):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("name")
  p.add_argument("image")
  p.add_argument("overrides", nargs="*", metavar="FIELD=VALUE")
  p.add_argument("--out", default="/tmp/texture_levers")
  args = p.parse_args(argv)
  overrides = dict(CPU_SCALE)
  overrides.update(
    {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.overrides)}
  )
  config = texture_paper.get_config()
  config.data.image = args.image
  cli.with_overrides(config, overrides)
  workdir = os.path.join(args.out, args.name)
  shutil.rmtree(workdir, ignore_errors=True)
  logging.set_verbosity(logging.INFO)
  t0 = time.perf_counter()
  state = train.train(config, workdir)
  train_seconds = time.perf_counter() - t0
  stacked, active, _ = generate.load_cascade(config, workdir)
  side = int(config.data.image_size)
  samples, _ = synthesis.synthesize_images(
    config, stacked, active, 2, jax.random.key(1), (side, side)
  )
  exemplar = np.asarray(data_lib.to_float(data_lib.load_dataset(config.data).images[0]))
  rng = np.random.default_rng(0)
  methods = {
    "samples": samples,
    "negatives": np.asarray(
      energy_lib.crop_to_target(synthesis.geometry(config), state.negatives[:2])
    ),
    "random_phase": baselines.random_phase_noise(
      exemplar, (side, side), rng=rng, num_samples=2
    ).astype(np.float32),
    "noise": np.clip(
      0.3 * rng.standard_normal((2, side, side, exemplar.shape[-1])), -1, 1
    ).astype(np.float32),
  }
  swd = {
    name: 1e3 * metrics.swd(exemplar, x, levels=3, normalize="reference", rng=0)["mean"]
    for name, x in methods.items()
  }
  record = {
    "name": args.name,
    "image": args.image,
    "overrides": args.overrides,
    "train_seconds": round(train_seconds, 1),
    "swd_ref": {k: round(v, 1) for k, v in swd.items()},
  }
  print(json.dumps(record))
  os.makedirs(args.out, exist_ok=True)
  row = np.concatenate(
    [exemplar[None], samples, methods["negatives"], methods["random_phase"][:1]]
  )
  images_lib.save_grid(row, os.path.join(args.out, f"{args.name}.png"))
  with open(os.path.join(args.out, "results.jsonl"), "a") as f:
    f.write(json.dumps(record) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
