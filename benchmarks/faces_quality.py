"""Faces on a CPU: train configs/celeba_cpu.py, sample, and compare with baselines.

Trains on a folder of aligned faces minus a held-back part, samples from fresh noise
through the trained cascade, and compares the samples with the held-back faces next to
two training-free baselines:

* noise: the sampler's starting point, N(0, 0.3^2) clipped;
* Gaussian: the training faces' mean plus their top-k principal components, sampled
  (innjax/baselines.py): smooth average faces, the bar a generator must clear;
* real (floor): training faces against the held-back ones.

Metrics (lower is better for both, see docs/faces_quality.md):
* SWD x 1e3, exemplar-referenced: PGGAN's multi-scale sliced Wasserstein distance
  with both descriptor sets standardised by the held-back faces' statistics;
* C2ST: held-out accuracy of a fresh critic separating held-back faces from the
  method's images, one image one example (innjax/c2st.py; 0.5 = indistinguishable);
  the mean over --c2st_seeds critics, each with its own split and initialisation.

It also finds each sample's nearest training face (pixel L2) against the typical
distance between two training faces, to show that samples are not copies, and writes
a picture: training faces, samples, each sample's nearest training face, Gaussian
samples.

Usage:
  python benchmarks/faces_quality.py                           # ../shared/data/celeba_subset
  python benchmarks/faces_quality.py --faces /path/to/faces --workdir /tmp/faces_cpu
  python benchmarks/faces_quality.py --set num_stages=4 --set train.steps_per_stage=20
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import logging  # noqa: E402

from configs import celeba_cpu  # noqa: E402
from innjax import baselines  # noqa: E402
from innjax import c2st  # noqa: E402
from innjax import cascade  # noqa: E402
from innjax import cli  # noqa: E402
from innjax import data as data_lib  # noqa: E402
from innjax import energy as energy_lib  # noqa: E402
from innjax import generate  # noqa: E402
from innjax import images as images_lib  # noqa: E402
from innjax import metrics  # noqa: E402
from innjax import synthesis  # noqa: E402
from innjax import train  # noqa: E402

SWD_SCALE = 1e3


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument(
    "--faces",
    default=os.path.join(REPO, "..", "shared", "data", "celeba_subset"),
    help="folder of aligned face images",
  )
  p.add_argument("--workdir", default="/tmp/faces_cpu", help="training workdir")
  p.add_argument(
    "--heldout",
    type=int,
    default=200,
    help="faces held back from training (the last ones by file name)",
  )
  p.add_argument("--num", type=int, default=100, help="samples to draw")
  p.add_argument("--pca", type=int, default=64, help="principal components (Gaussian)")
  p.add_argument("--c2st_steps", type=int, default=400)
  p.add_argument(
    "--c2st_seeds",
    type=int,
    default=3,
    help="C2ST critics per comparison, each with its own train/test split and "
    "initialisation; the table gives their mean and range (default 3: one critic's "
    "accuracy on 100 test images varies by about 0.1 from seed to seed)",
  )
  p.add_argument("--seed", type=int, default=0)
  p.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="config override, e.g. num_stages=8 (repeatable)",
  )
  p.add_argument("--picture", default=os.path.join(REPO, "docs", "faces_samples.png"))
  p.add_argument("--json", default=None, help="also write the results here")
  args = p.parse_args(argv)
  if args.c2st_seeds < 1:
    p.error(f"--c2st_seeds must be at least 1, got {args.c2st_seeds}.")
  return args


def parse_value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def make_config(args):
  """configs/celeba_cpu.py on `--faces`, minus the held-back faces."""
  config = celeba_cpu.get_config()
  files = [
    f for f in os.listdir(args.faces) if f.lower().endswith(data_lib.FOLDER_EXTENSIONS)
  ]
  if len(files) <= args.heldout + 10:
    raise SystemExit(
      f"{args.faces} has {len(files)} images: too few to hold back {args.heldout}."
    )
  config.data.path = os.path.abspath(args.faces)
  # The folder loader takes a prefix of the sorted files: the rest is held back.
  config.data.max_examples = len(files) - args.heldout
  cli.with_overrides(
    config, {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
  )
  return config


def all_faces(config) -> np.ndarray:
  """Every face of the folder, preprocessed as training sees it, float in [-1, 1]."""
  data = config.data.copy_and_resolve_references()
  data.max_examples = 0
  return np.asarray(data_lib.to_float(data_lib.load_dataset(data).images), np.float32)


def compare(heldout: np.ndarray, images: np.ndarray, args) -> dict:
  """SWD against the held-back faces, and C2ST over `args.c2st_seeds` critics."""
  swd = metrics.swd(heldout, images, rng=args.seed, normalize="reference")
  tests = [
    c2st.c2st_sets(heldout, images, steps=args.c2st_steps, seed=args.seed + i)
    for i in range(args.c2st_seeds)
  ]
  accuracies = [float(t.accuracy) for t in tests]
  return {
    "swd_ref": SWD_SCALE * swd["mean"],
    "c2st": float(np.mean(accuracies)),
    "c2st_all": accuracies,
    "c2st_train": float(np.mean([t.train_accuracy for t in tests])),
  }


def c2st_text(result: dict) -> str:
  """'0.767 (0.76-0.77)': the mean over the critics and their range."""
  accuracies = result.get("c2st_all", [result["c2st"]])
  if len(accuracies) == 1:
    return f"{result['c2st']:.3f}"
  return f"{result['c2st']:.3f} ({min(accuracies):.2f}-{max(accuracies):.2f})"


def picture(train_faces, samples, nearest, gaussian, path: str, n: int = 12) -> None:
  """Rows: training faces | samples | each sample's nearest training face | Gaussian."""
  rows = [train_faces[:n], samples[:n], nearest[:n], gaussian[:n]]
  images_lib.save_grid(np.concatenate(rows), path, ncol=n)


def critic_scores(config, stacked, active, sets: dict) -> dict:
  """Each kept critic's mean logit over each image set, as lists (stage order).

  The logits are the ones the sampler stops on: a WINN critic's bias is shifted so
  that its threshold sits at 0, so a set above 0 passes that critic, and a set
  scored above the real faces looks "more real than real" to it.
  """
  model = synthesis.build_model(config)
  logit_fn = energy_lib.make_stage_logit_fn(model, synthesis.geometry(config))
  score = jax.jit(lambda variables, x: jnp.mean(logit_fn(variables, x)))
  kept = [s for s in range(int(active.shape[0])) if bool(active[s])]
  return {
    name: [float(score(cascade.get_stage(stacked, s), jnp.asarray(x))) for s in kept]
    for name, x in sets.items()
  }


def main(argv=None) -> int:
  args = parse_args(argv)
  logging.set_verbosity(logging.INFO)
  config = make_config(args)
  t0 = time.perf_counter()
  state = train.train(config, args.workdir)
  train_seconds = time.perf_counter() - t0
  faces = all_faces(config)
  n_train = int(config.data.max_examples)
  train_faces, heldout = faces[:n_train], faces[n_train:]
  stacked, active, stages = generate.load_cascade(config, args.workdir)
  t0 = time.perf_counter()
  samples, _ = synthesis.synthesize_images(
    config, stacked, active, args.num, jax.random.key(args.seed + 1)
  )
  sample_seconds = time.perf_counter() - t0
  rng = np.random.default_rng(args.seed)
  gaussian = baselines.sample_pca_gaussian(
    baselines.fit_pca_gaussian(train_faces, args.pca), args.num, rng
  )
  noise = np.clip(
    float(config.pool.init_std) * rng.standard_normal(samples.shape), -1, 1
  ).astype(np.float32)
  negatives = np.asarray(
    energy_lib.crop_to_target(synthesis.geometry(config), state.negatives)
  )[: args.num]
  methods = {
    "noise": noise,
    f"Gaussian (PCA {args.pca})": gaussian,
    "innjax samples": samples,
    "the last stage's pseudo-negatives": negatives,
    "real (floor)": train_faces[rng.permutation(n_train)[: args.num]],
  }
  results = {name: compare(heldout, images, args) for name, images in methods.items()}
  nn = baselines.nearest_neighbours(samples, train_faces)
  nn_gauss = baselines.nearest_neighbours(gaussian, train_faces)
  picture(train_faces, samples, train_faces[nn.indices], gaussian, args.picture)
  print(
    f"\nTrained {int(state.stage)} stages in {train_seconds:.0f} s; "
    f"{args.num} samples in {sample_seconds:.0f} s; {n_train} training faces, "
    f"{len(heldout)} held back.\n"
  )
  print(
    "| method | SWD x 1e3 (held-back referenced) | C2ST accuracy, mean "
    f"(range) of {args.c2st_seeds} critics |"
  )
  print("|---|---:|---:|")
  for name, r in results.items():
    print(f"| {name} | {r['swd_ref']:.1f} | {c2st_text(r)} |")
  print(
    f"\nNearest training face (pixel L2): samples median "
    f"{np.median(nn.distances):.2f} (min {nn.distances.min():.2f}); Gaussian "
    f"median {np.median(nn_gauss.distances):.2f}; two training faces "
    f"(median nearest-other) {nn.typical:.2f}."
  )
  print(f"Picture: {args.picture}")
  scores = critic_scores(
    config,
    stacked,
    active,
    {
      "held-back faces": heldout[: args.num],
      "training faces": train_faces[: args.num],
      "last negatives": negatives,
      "samples": samples,
    },
  )
  print("\nMean logit of each kept critic (its stop threshold at 0):")
  print(
    "| images | " + " | ".join(str(s + 1) for s in range(len(scores["samples"]))) + " |"
  )
  print("|---|" + "---:|" * len(scores["samples"]))
  for name, row in scores.items():
    print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in row) + " |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(
        {
          "results": results,
          "train_seconds": train_seconds,
          "sample_seconds": sample_seconds,
          "stages": int(state.stage),
          "nn_samples": nn.distances.tolist(),
          "nn_typical": nn.typical,
          "nn_gaussian": nn_gauss.distances.tolist(),
          "critic_scores": scores,
        },
        f,
        indent=2,
      )
  return 0


if __name__ == "__main__":
  sys.exit(main())
