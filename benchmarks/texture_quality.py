"""How close are INNg textures to their exemplars, next to training-free baselines?

Question: on the shared texture exemplars, does an INNg model (configs/texture.py,
trained and sampled through the real `train.train_and_evaluate` and
`generate.generate`) produce textures whose local statistics are closer to the
exemplar's than the classical parametric baseline, random-phase noise?

No pretrained network is available offline, so quality is measured with statistics
that need none (innjax/metrics.py), always beside baselines:

* SWD: the multi-scale sliced Wasserstein distance of Progressive GAN. 7x7
  neighbourhoods are drawn from every level of a Laplacian pyramid (PGGAN's level rule:
  halve while the coarsest level keeps >= 16 px), standardised per channel within each
  set, and compared with 512 random 1-D projections; the value is the mean over levels
  (x 1e3 in the tables, as PGGAN reports it). It sees local structure at several
  scales, and is insensitive to global contrast and colour (measured below instead).
* spectrum: mean absolute difference of the radially averaged log10 power spectra
  (Hann-windowed; in decades, averaged over frequency and channels). Second-order
  statistics only.
* histogram: per-channel 1-D Wasserstein distance between pixel values (in [-1, 1]
  units). First-order (colour) statistics only.

Protocol: every distance compares two sets of `--crops` crops of the same size, half
the exemplar's side (64x64 for the CPU preset): crops of the image under test against
one fixed set of crops of the exemplar. One estimator then serves everything,
including the floor, which can only be measured on pieces of the exemplar:

* noise (ceiling): N(0, 0.3^2) clipped to [-1, 1], the training's first
  pseudo-negatives and the sampler's starting point;
* random phase (the classical parametric baseline): `metrics.random_phase_noise`,
  the exemplar's Fourier amplitudes with uniformly random phases (Galerne et al. 2011);
* INNg 1x / 2x: samples from fresh noise at the exemplar's size and at twice its side;
* crops (floor): crops of one half of the exemplar against crops of the other half
  (top | bottom and left | right, averaged), i.e. what two pieces of the real texture
  that share no pixel score against each other. It includes the exemplar's own
  inhomogeneity, so a strongly non-stationary exemplar has a high floor.

The whole-image SWD of each method against the full exemplar is also stored in the
JSON (`swd_whole`); it has no floor to compare with.

Presets: `paper` is the paper's setting (256x256 exemplar, 64x64 patches, 4-layer
64..512 classifier, 20 stages of 500 classifier updates, 200 negatives of 320x320,
500-step synthesis cap), hours per texture on a CPU. `cpu` (default) is sized so that
all eight shared textures take about an hour on a busy 2-core CPU: the exemplar
resized to 128x128, 32x32 patches, a (32, 64, 128) classifier, 10 stages of 60
updates on 32 + 32 patches, 16 negatives per stage, a 60-step synthesis and sampling
cap; "1x / 2x" are then 128 and 256 px, not the paper's 256 and 512. Every preset
field can be overridden (--stages, --max_steps, ...).

Run (results, model workdirs and samples go under --out; re-running skips textures
whose JSON is there and reuses trained workdirs):
  python benchmarks/texture_quality.py                      # all textures, cpu preset
  python benchmarks/texture_quality.py --only dtd_bubbly_0038 --stages 2
  python benchmarks/texture_quality.py --report_only        # table + docs from JSONs
  python benchmarks/texture_quality.py --preset paper --out /tmp/tq_paper
  python benchmarks/texture_quality.py --style starry_night --content chelsea
Writes docs/texture_quality.md and docs/texture_contact_sheet.png (unless --no_docs),
prints the markdown table, and with --json PATH writes every result to one file.
The hand-written text of docs/texture_quality.md is kept; only the generated block
between its markers is replaced. `--style` instead trains the preset on one image of
../shared/data/style and renders a content image in that style (paper 4.2) into
docs/style_example.png.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import shlex
import statistics
import sys
import time

import numpy as np

import common  # benchmarks/common.py (the script's folder is on sys.path)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import logging  # noqa: E402
import jax  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from configs import texture as texture_config  # noqa: E402
from innjax import cli  # noqa: E402
from innjax import data as data_lib  # noqa: E402
from innjax import generate  # noqa: E402
from innjax import metrics  # noqa: E402
from innjax import style as style_lib  # noqa: E402
from innjax import train  # noqa: E402

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
METHODS = ("noise", "random_phase", "inng_1x", "inng_2x", "crops")
METHOD_TITLES = {"noise": "noise", "random_phase": "random phase",
                 "inng_1x": "INNg 1x", "inng_2x": "INNg 2x", "crops": "crops (floor)"}
METRICS = ("swd", "spectrum", "histogram")
SWD_SCALE = 1e3  # PGGAN reports SWD x 1e3

# Every field a preset sets; command-line flags of the same name override them.
PRESETS = {
    "cpu": dict(image_size=128, patch=32, features=(32, 64, 128), channels=3,
                stages=10, steps_per_stage=60, batch=32, negatives=16, max_steps=60,
                step_size=0.1, sample_step_size=0.1, sample_max_steps=60, num_1x=2,
                num_2x=1),
    "paper": dict(image_size=256, patch=64, features=(64, 128, 256, 512), channels=3,
                  stages=20, steps_per_stage=500, batch=50, negatives=200, max_steps=500,
                  step_size=0.1, sample_step_size=0.1, sample_max_steps=500, num_1x=4,
                  num_2x=1),
}


def parse_args(argv=None):
  """The command line; preset fields can be overridden one by one."""
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--textures_dir", default=os.path.join(REPO, "..", "shared", "data",
                                                        "textures"),
                 help="folder of exemplar images (default ../shared/data/textures)")
  p.add_argument("--out", default="/tmp/texture_quality",
                 help="work folder: per-texture JSON, model workdirs, samples")
  p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
  p.add_argument("--only", action="append", default=None, metavar="NAME",
                 help="run only this texture (file stem; repeatable)")
  p.add_argument("--json", default=None, metavar="PATH",
                 help="also write all results (and the machine) to this JSON file")
  p.add_argument("--docs", default=os.path.join(REPO, "docs"),
                 help="where texture_quality.md and texture_contact_sheet.png go")
  p.add_argument("--no_docs", action="store_true", help="print the table only")
  p.add_argument("--report_only", action="store_true",
                 help="train nothing: build the table and docs from existing JSONs")
  p.add_argument("--crops", type=int, default=16,
                 help="crops per set in every comparison (default 16)")
  p.add_argument("--seed", type=int, default=0, help="seed of the model and metrics")
  p.add_argument("--style", default=None, metavar="IMAGE",
                 help="instead of the texture table: train the preset on this style "
                 "image (a path, or a name in --style_dir) and render --content in it "
                 "to docs/style_example.png")
  p.add_argument("--style_dir", default=os.path.join(REPO, "..", "shared", "data",
                                                     "style"))
  p.add_argument("--content", default="chelsea",
                 help="content image for --style: a path or a scikit-image name")
  p.add_argument("--content_size", type=int, default=256,
                 help="longer side of the content image for --style (default 256)")
  p.add_argument("--style_steps", type=int, default=200,
                 help="Adam steps of the style transfer (default 200)")
  ints = ("image_size", "patch", "channels", "stages", "steps_per_stage", "batch",
          "negatives", "max_steps", "sample_max_steps", "num_1x", "num_2x")
  for name in ints:
    p.add_argument(f"--{name}", type=int, default=None, help=f"override the preset's {name}")
  p.add_argument("--step_size", type=float, default=None,
                 help="override the preset's Adam step of training-time synthesis")
  p.add_argument("--sample_step_size", type=float, default=None,
                 help="override the preset's Adam step when sampling from fresh noise")
  p.add_argument("--features", type=common.parse_int_list, default=None,
                 help="override the classifier widths, e.g. 32,64,128")
  return p.parse_args(argv)


def settings_from_args(args) -> dict:
  """The preset with the command line's overrides applied."""
  settings = dict(PRESETS[args.preset])
  for name in settings:
    value = getattr(args, name, None)
    if value is not None:
      settings[name] = tuple(value) if name == "features" else value
  settings["features"] = list(settings["features"])
  settings["preset"] = args.preset
  settings["seed"] = args.seed
  settings["crops"] = args.crops
  return settings


def make_config(settings: dict, image_path: str):
  """configs/texture.py with the settings applied; the exemplar is `image_path`."""
  config = texture_config.get_config()
  config.seed = int(settings["seed"])
  config.num_stages = int(settings["stages"])
  config.model.features = tuple(settings["features"])
  config.data.image = image_path
  config.data.image_size = int(settings["image_size"])
  config.data.channels = int(settings["channels"])
  config.patch.size = int(settings["patch"])
  steps = int(settings["steps_per_stage"])
  config.train.steps_per_stage = steps
  config.train.pos_batch = int(settings["batch"])
  config.train.neg_batch = int(settings["batch"])
  # One jitted chunk per 100 updates at most; fewer chunks = fewer host round trips.
  config.train.log_every = min(steps, 100)
  negatives = int(settings["negatives"])
  config.pool.negatives_per_stage = negatives
  config.pool.capacity = 5 * negatives  # age weights 0.5 ** age: older ones rarely drawn
  config.synthesis.batch_size = min(negatives, 50)
  config.synthesis.max_steps = int(settings["max_steps"])
  config.synthesis.step_size = float(settings["step_size"])
  config.sample.max_steps = int(settings["sample_max_steps"])
  # generate.generate builds its sampler from config.synthesis, so the sampling step
  # is applied to a copy of the config there (sample_model), not here.
  config.sample.seed = int(settings["seed"]) + 1
  config.grid_size = min(16, negatives)
  return config


# ----------------------------------------------------------------------------------
# Images.


def find_textures(folder: str) -> list[str]:
  """Exemplar image files in `folder`, sorted by name."""
  paths = [p for p in glob.glob(os.path.join(folder, "*"))
           if p.lower().endswith(IMAGE_EXTENSIONS)]
  return sorted(paths)


def load_exemplar(config) -> np.ndarray:
  """The exemplar exactly as training sees it: float32 (H, W, C) in [-1, 1]."""
  dataset = data_lib.load_dataset(config.data)
  return np.asarray(data_lib.to_float(dataset.images[0]), np.float32)


def gaussian_noise(rng: np.random.Generator, num: int, side: int, channels: int,
                   std: float) -> np.ndarray:
  """N(0, std^2) clipped to [-1, 1]: the distribution the sampler starts from."""
  return np.clip(std * rng.standard_normal((num, side, side, channels)), -1.0, 1.0)


def random_crops(rng: np.random.Generator, images: np.ndarray, side: int,
                 num: int) -> np.ndarray:
  """`num` uniformly placed side x side crops of (N, H, W, C) images, taken in turn."""
  crops = []
  for i in range(num):
    image = images[i % len(images)]
    h, w = image.shape[:2]
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    crops.append(image[y:y + side, x:x + side])
  return np.stack(crops)


def exemplar_halves(exemplar: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
  """The exemplar cut at its middle along `axis` (0: top | bottom, 1: left | right)."""
  mid = exemplar.shape[axis] // 2
  return (np.take(exemplar, np.arange(mid), axis=axis),
          np.take(exemplar, np.arange(mid, exemplar.shape[axis]), axis=axis))


def pyramid_levels(side: int, patch: int = 7) -> int:
  """PGGAN's rule: halve while the coarsest level keeps >= max(16, patch) pixels."""
  levels = 1
  while (side + 1) // 2 >= max(16, patch):
    side = (side + 1) // 2
    levels += 1
  return levels


# ----------------------------------------------------------------------------------
# Distances.


def set_distances(reference: np.ndarray, test: np.ndarray, levels: int,
                  seed: int) -> dict:
  """SWD (x 1e3), spectrum and histogram distances between two sets of crops."""
  swd = metrics.swd(reference, test, levels=levels, rng=seed)
  return {
      "swd": SWD_SCALE * swd["mean"],
      "swd_levels": [SWD_SCALE * swd[level] for level in range(levels)],
      "spectrum": metrics.spectrum_distance(reference, test, window="hann"),
      "histogram": metrics.histogram_distance(reference, test),
  }


def evaluate_methods(exemplar: np.ndarray, images: dict, num_crops: int,
                     seed: int) -> dict:
  """All distances for every method in `images` and for the crop-vs-crop floor.

  The reference is a set of `num_crops` crops (half the exemplar's side) of one half
  of the exemplar; it is compared with as many crops of each method's images and,
  for the floor, of the other half, which shares no pixel with the reference, as a
  synthesis shares none with the exemplar. Distances are averaged over the four
  choices of reference half (top, bottom, left, right).

  Args:
    exemplar: (H, W, C) in [-1, 1], the image the model was trained on.
    images: method name -> (N, h, w, C) images under test (h, w >= a crop).
    num_crops: crops per set.
    seed: seeds the crop positions and the SWD estimator.

  Returns:
    method name -> {swd, spectrum, histogram} and their spread over the four
    reference halves (`*_std`); for the methods also `swd_whole`, the whole images
    against the whole exemplar (x 1e3).
  """
  side = min(exemplar.shape[:2]) // 2
  levels = pyramid_levels(side)
  rng = np.random.default_rng(seed)
  per_split = {name: [] for name in (*images, "crops")}
  for axis in (0, 1):
    halves = exemplar_halves(exemplar, axis)
    for ref_half, other_half in (halves, halves[::-1]):
      reference = random_crops(rng, ref_half[None], side, num_crops)
      tests = {"crops": other_half[None], **images}
      for name, batch in tests.items():
        test = random_crops(rng, batch, side, num_crops)
        per_split[name].append(set_distances(reference, test, levels, seed))
  results = {}
  for name, splits in per_split.items():
    results[name] = {k: float(np.mean([d[k] for d in splits])) for k in METRICS}
    results[name]["swd_levels"] = np.mean([d["swd_levels"] for d in splits],
                                          axis=0).tolist()
    results[name].update({f"{k}_std": float(np.std([d[k] for d in splits]))
                          for k in METRICS})
  whole_levels = pyramid_levels(min(exemplar.shape[:2]))
  for name, batch in images.items():
    results[name]["swd_whole"] = SWD_SCALE * metrics.swd(
        exemplar, batch, levels=whole_levels, rng=seed)["mean"]
  return results


# ----------------------------------------------------------------------------------
# Training and sampling.


def train_model(config, workdir: str) -> dict:
  """Trains (or finishes training) the model in `workdir`; returns its wall time.

  The seconds spent are added to `train_seconds.json` in the workdir, also when
  training is interrupted, so a resumed run still reports its whole training time; a
  workdir that already holds every stage is not touched.
  """
  path = os.path.join(workdir, "train_seconds.json")
  record = {"seconds": 0.0, "sessions": 0, "stages": 0}
  if os.path.exists(path):
    with open(path) as f:
      record = json.load(f)
  if record["stages"] >= int(config.num_stages):
    return record
  t0 = time.perf_counter()
  try:
    state = train.train_and_evaluate(config, workdir)
    record["stages"] = int(state.stage)
  finally:
    record["seconds"] += time.perf_counter() - t0
    record["sessions"] += 1
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
      json.dump(record, f)
  return record


def sample_model(config, workdir: str, side: int, num: int,
                 sample_step_size: float) -> tuple[np.ndarray, float]:
  """`num` samples of side x side from fresh noise, cached as an .npz in the workdir.

  `sample_step_size` is the sampler's Adam step; it may differ from the one training
  synthesised its pseudo-negatives with (a smaller step leaves fewer high-frequency
  artefacts but may not carry the noise far enough within the step cap).
  """
  path = os.path.join(workdir, f"quality_samples_{side}_step{sample_step_size:g}_"
                      f"max{int(config.sample.max_steps)}.npz")
  if os.path.exists(path):
    cached = np.load(path)
    if cached["images"].shape[0] == num:
      return cached["images"], float(cached["seconds"])
  config = config.copy_and_resolve_references()
  config.synthesis.step_size = float(sample_step_size)
  config.sample.num = num
  config.sample.batch_size = num
  t0 = time.perf_counter()
  images, _ = generate.generate(config, workdir, size=(side, side))
  seconds = time.perf_counter() - t0
  np.savez_compressed(path, images=images, seconds=seconds)
  return images, seconds


def run_texture(path: str, settings: dict, out_dir: str, machine: dict) -> dict:
  """Trains, samples and measures one texture; writes and returns its JSON record."""
  name = os.path.splitext(os.path.basename(path))[0]
  workdir = os.path.join(out_dir, name)
  config = make_config(settings, os.path.abspath(path))
  common.log(f"[{name}] training {settings['stages']} stages in {workdir}")
  timing = train_model(config, workdir)
  side = int(settings["image_size"])
  common.log(f"[{name}] trained ({timing['seconds']:.0f}s); sampling")
  step = float(settings["sample_step_size"])
  inng_1x, t_1x = sample_model(config, workdir, side, int(settings["num_1x"]), step)
  inng_2x, t_2x = sample_model(config, workdir, 2 * side, int(settings["num_2x"]), step)
  exemplar = load_exemplar(config)
  rng = np.random.default_rng(int(settings["seed"]))
  num, channels = int(settings["num_1x"]), exemplar.shape[-1]
  images = {
      "noise": gaussian_noise(rng, num, side, channels, float(config.pool.init_std)),
      "random_phase": metrics.random_phase_noise(exemplar, (side, side), rng=rng,
                                                 num_samples=num).astype(np.float32),
      "inng_1x": inng_1x,
      "inng_2x": inng_2x,
  }
  common.log(f"[{name}] sampled ({t_1x:.0f}s + {t_2x:.0f}s); measuring")
  t0 = time.perf_counter()
  distances = evaluate_methods(exemplar, images, int(settings["crops"]),
                               int(settings["seed"]))
  record = {
      "texture": name, "path": os.path.abspath(path), "settings": settings,
      "exemplar_hw": list(exemplar.shape[:2]), "distances": distances,
      "train_seconds": timing["seconds"], "train_sessions": timing["sessions"],
      "stages": timing["stages"], "sample_seconds_1x": t_1x,
      "sample_seconds_2x": t_2x, "metric_seconds": time.perf_counter() - t0,
      "finished": datetime.datetime.now().isoformat(timespec="seconds"),
      "machine": machine,
  }
  # First images of each kind, for the contact sheet (uint8 keeps the file small).
  np.savez_compressed(
      os.path.join(out_dir, f"{name}_sheet.npz"),
      exemplar=data_lib.to_uint8(exemplar), inng_1x=data_lib.to_uint8(inng_1x[0]),
      inng_2x=data_lib.to_uint8(inng_2x[0]),
      random_phase=data_lib.to_uint8(images["random_phase"][0]))
  with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
    json.dump(record, f, indent=2)
  return record


# ----------------------------------------------------------------------------------
# Report.


def fmt(value: float, digits: int = 1) -> str:
  """A number with fixed decimals."""
  return f"{value:.{digits}f}"


def results_table(records: list[dict], metric: str, digits: int,
                  spread: bool = False) -> str:
  """Markdown table: one row per texture, one column per method, then medians.

  With `spread`, each cell also shows the standard deviation over the four
  reference halves (how much the number moves with the part of the exemplar it is
  compared with).
  """
  headers = ["texture"] + [METHOD_TITLES[m] for m in METHODS] + ["INNg 1x < RP"]
  rows = []
  for r in records:
    d = r["distances"]
    wins = "yes" if d["inng_1x"][metric] < d["random_phase"][metric] else "no"
    cells = [fmt(d[m][metric], digits)
             + (f" ±{d[m][metric + '_std']:.0f}" if spread else "") for m in METHODS]
    rows.append([r["texture"]] + cells + [wins])
  if len(records) > 1:
    wins = sum(r["distances"]["inng_1x"][metric] < r["distances"]["random_phase"][metric]
               for r in records)
    rows.append(["**median**"] + [
        fmt(statistics.median(r["distances"][m][metric] for r in records), digits)
        for m in METHODS] + [f"{wins}/{len(records)}"])
  return common.markdown_table(headers, rows, align="l" + "r" * len(METHODS) + "r")


def whole_image_table(records: list[dict]) -> str:
  """Markdown table of the whole-image SWD (x 1e3) against the whole exemplar."""
  methods = ("noise", "random_phase", "inng_1x", "inng_2x")
  headers = ["texture"] + [METHOD_TITLES[m] for m in methods]
  rows = [[r["texture"]] + [fmt(r["distances"][m]["swd_whole"], 1) for m in methods]
          for r in records]
  if len(records) > 1:
    rows.append(["**median**"] + [
        fmt(statistics.median(r["distances"][m]["swd_whole"] for r in records), 1)
        for m in methods])
  return common.markdown_table(headers, rows)


def timing_table(records: list[dict]) -> str:
  """Markdown table of training and sampling wall times per texture."""
  headers = ["texture", "stages", "train (s)", "s / stage", "sample 1x (s)",
             "sample 2x (s)", "metrics (s)"]
  rows = [[r["texture"], r["stages"], fmt(r["train_seconds"], 0),
           fmt(r["train_seconds"] / max(r["stages"], 1), 0),
           fmt(r["sample_seconds_1x"], 0), fmt(r["sample_seconds_2x"], 0),
           fmt(r["metric_seconds"], 0)] for r in records]
  if len(records) > 1:
    rows.append(["**total**", "", fmt(sum(r["train_seconds"] for r in records), 0), "",
                 fmt(sum(r["sample_seconds_1x"] for r in records), 0),
                 fmt(sum(r["sample_seconds_2x"] for r in records), 0),
                 fmt(sum(r["metric_seconds"] for r in records), 0)])
  return common.markdown_table(headers, rows)


def _font(size: int):
  """PIL's bundled font at `size` px where the Pillow version can scale it."""
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1 has one fixed-size default font
    return ImageFont.load_default()


def contact_sheet(records: list[dict], out_dir: str, path: str) -> str:
  """Rows = textures; columns = exemplar | INNg 1x | INNg 2x | random phase.

  Every image is shown at its own pixel size, so the texture's scale is the same in
  every column and the 2x sample simply covers four times the area. The PNG is
  stored with a 256-colour palette to keep it small.
  """
  columns = ("exemplar", "inng_1x", "inng_2x", "random_phase")
  titles = ("exemplar", "INNg 1x", "INNg 2x", "random phase")
  sheets = []
  for r in records:
    sheet_path = os.path.join(out_dir, f"{r['texture']}_sheet.npz")
    if os.path.exists(sheet_path):
      with np.load(sheet_path) as f:
        sheets.append((r["texture"], [f[c] for c in columns]))
  if not sheets:
    return ""
  pad, caption = 6, 16
  widths = [max(s[1][i].shape[1] for s in sheets) for i in range(len(columns))]
  row_h = max(max(im.shape[0] for im in s[1]) for s in sheets)
  total_w = pad + sum(w + pad for w in widths)
  total_h = caption + pad + len(sheets) * (caption + row_h + pad)
  canvas = Image.new("RGB", (total_w, total_h), "white")
  draw = ImageDraw.Draw(canvas)
  font = _font(12)
  x = pad
  for title, w in zip(titles, widths):
    draw.text((x, 2), title, fill="black", font=font)
    x += w + pad
  y = caption + pad
  for name, ims in sheets:
    draw.text((pad, y + 1), name, fill=(90, 90, 90), font=font)
    y += caption
    x = pad
    for im, w in zip(ims, widths):
      if im.ndim == 2 or im.shape[-1] == 1:
        im = np.repeat(im.reshape(im.shape[0], im.shape[1], 1), 3, axis=-1)
      canvas.paste(Image.fromarray(im), (x, y))
      x += w + pad
    y += row_h + pad
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  # Synthesised noise does not compress: as 24-bit RGB the sheet is ~2.5 MB. A
  # 256-colour palette (no dithering) is visually the same at a quarter of the size;
  # the exact samples stay in the .npz files under --out.
  canvas.quantize(256, method=Image.Quantize.FASTOCTREE,
                  dither=Image.Dither.NONE).save(path, optimize=True)
  return path


def markdown_report(records: list[dict], settings: dict, machine: dict,
                    command: str) -> str:
  """The tables (SWD, spectrum, histogram, wall times) with their settings."""
  s = settings
  loads = [r["machine"]["load_average_at_start"][0] for r in records if "machine" in r]
  if loads:
    machine = dict(records[0]["machine"], load_average_at_start=[
        min(loads), statistics.median(loads), max(loads)])
    machine_heading = ("Machine (load average: the 1-minute value when each texture "
                       "started, min, median, max):")
  else:
    machine_heading = "Machine (load average when this report was written):"
  lines = [
      f"Preset `{s['preset']}`: exemplar {s['image_size']}x{s['image_size']} "
      f"({'RGB' if s['channels'] == 3 else 'grey'}), {s['patch']}x{s['patch']} "
      "patches, classifier "
      f"{tuple(s['features'])}, {s['stages']} stages x {s['steps_per_stage']} "
      f"classifier updates on {s['batch']} + {s['batch']} patches, {s['negatives']} "
      "pseudo-negatives per stage, synthesis "
      f"max {s['max_steps']} steps (Adam {s['step_size']:g}), sampling max "
      f"{s['sample_max_steps']} steps per classifier (Adam {s['sample_step_size']:g}). "
      "INNg 1x = "
      f"{s['image_size']}x{s['image_size']} ({s['num_1x']} samples), INNg 2x = "
      f"{2 * s['image_size']}x{2 * s['image_size']} ({s['num_2x']} sample). "
      f"Distances between sets of {s['crops']} crops of {s['image_size'] // 2}x"
      f"{s['image_size'] // 2}; lower is better.",
      "",
      "**SWD x 1e3** (multi-scale sliced Wasserstein, "
      f"{pyramid_levels(int(s['image_size']) // 2)} pyramid levels)",
      "", results_table(records, "swd", 1, spread=True), "",
      "± is the standard deviation over the four reference halves.", "",
      "**Spectrum distance** (mean |log10 radial power difference|, decades)",
      "", results_table(records, "spectrum", 3), "",
      "**Histogram distance** (per-channel W1 of pixel values, [-1, 1] units)",
      "", results_table(records, "histogram", 3), "",
      "**Whole-image SWD x 1e3** (each method's whole images against the whole "
      f"exemplar, {pyramid_levels(int(s['image_size']))} levels; no floor exists "
      "at this size)",
      "", whole_image_table(records), "",
      "**Wall times** (training includes compilation; sampling is from fresh noise "
      "through every kept classifier in turn)",
      "", timing_table(records), "",
      machine_heading, "", common.machine_markdown(machine), "",
      "Command:", "", "```bash", command, "```",
  ]
  return "\n".join(lines)


BEGIN_MARK = "<!-- texture_quality.py: tables begin -->"
END_MARK = "<!-- texture_quality.py: tables end -->"


def update_doc(path: str, report: str) -> str:
  """Writes the generated tables into the doc between the markers, keeping the rest.

  The discussion around the tables is written by hand; re-running the script only
  replaces what lies between BEGIN_MARK and END_MARK (a new doc gets a stub).
  """
  block = f"{BEGIN_MARK}\n{report}\n{END_MARK}"
  text = ""
  if os.path.exists(path):
    with open(path) as f:
      text = f.read()
  if BEGIN_MARK in text and END_MARK in text:
    head, rest = text.split(BEGIN_MARK, 1)
    tail = rest.split(END_MARK, 1)[1]
    text = head + block + tail
  else:
    text = ("# Texture quality: INNg against training-free baselines\n\n"
            "Written by `benchmarks/texture_quality.py`.\n\n" + block + "\n"
            + ("\n" + text if text else ""))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)
  return path


def load_records(out_dir: str, names: list[str]) -> list[dict]:
  """Per-texture JSON records present in `out_dir`, in the order of `names`."""
  records = []
  for name in names:
    path = os.path.join(out_dir, f"{name}.json")
    if os.path.exists(path):
      with open(path) as f:
        records.append(json.load(f))
  return records


def same_settings(a: dict, b: dict) -> bool:
  """Whether two runs used the same preset values (JSON turns tuples into lists)."""
  return json.loads(json.dumps(a)) == json.loads(json.dumps(b))


def find_style_image(spec: str, folder: str) -> str | None:
  """A style image given as a path or as a file stem in `folder`, or None."""
  if os.path.exists(spec):
    return spec
  matches = [p for p in find_textures(folder) if os.path.splitext(
      os.path.basename(p))[0] == spec] if os.path.isdir(folder) else []
  return matches[0] if matches else None


def run_style(args, settings: dict) -> int:
  """Trains the preset on a style image and renders the content image in its style.

  Writes docs/style_example.png: style exemplar (as the model saw it) | content |
  result, and prints the wall times.
  """
  path = find_style_image(args.style, args.style_dir)
  if path is None:
    print(f"Skipping: no style image {args.style!r} (looked in "
          f"{os.path.abspath(args.style_dir)}).")
    return 0
  name = os.path.splitext(os.path.basename(path))[0]
  workdir = os.path.join(args.out, f"style_{name}")
  config = make_config(settings, os.path.abspath(path))
  config.style.content = args.content
  config.style.max_size = int(args.content_size)
  config.style.steps = int(args.style_steps)
  common.log(f"[style {name}] training {settings['stages']} stages in {workdir}")
  timing = train_model(config, workdir)
  t0 = time.perf_counter()
  result, stats = style_lib.stylize(config, workdir)
  seconds = time.perf_counter() - t0
  content = style_lib.load_content(config)
  exemplar = load_exemplar(config)
  # Every panel at its own pixel size (the scale the model works at), top-aligned.
  panels = [data_lib.to_uint8(x) for x in (exemplar, content, result)]
  height = max(p.shape[0] for p in panels)
  strip = []
  for panel in panels:
    column = np.full((height, panel.shape[1] + 6, 3), 255, np.uint8)
    column[:panel.shape[0], :panel.shape[1]] = panel
    strip.append(column)
  strip = np.concatenate(strip, axis=1)[:, :-6]
  out = os.path.join(args.docs, "style_example.png")
  if not args.no_docs:
    os.makedirs(args.docs, exist_ok=True)
    Image.fromarray(strip).save(out, optimize=True)
  record = {"style": name, "content": args.content, "settings": settings,
            "train_seconds": timing["seconds"], "stages": timing["stages"],
            "style_seconds": seconds, "content_hw": list(content.shape[:2]),
            "gamma": float(config.style.gamma), "steps": int(config.style.steps),
            "content_mse": stats["content_mse"], "mean_p_style": stats["mean_p_style"]}
  with open(os.path.join(args.out, f"style_{name}.json"), "w") as f:
    json.dump(record, f, indent=2)
  print(json.dumps(record, indent=2))
  if not args.no_docs:
    common.log(f"wrote {out}")
  return 0


def run_flags(argv: list[str]) -> list[str]:
  """The flags that decide the results, without the report-only ones."""
  report_flags = {"--report_only", "--no_docs"}
  with_value = {"--json", "--docs"}
  out, skip = [], False
  for arg in argv:
    if skip:
      skip = False
    elif arg in report_flags or arg.split("=", 1)[0] in with_value:
      skip = arg in with_value
    else:
      out.append(arg)
  return out


def main(argv=None) -> int:
  """Runs every texture that has no result yet, then writes the table and docs."""
  args = parse_args(argv)
  settings = settings_from_args(args)
  if args.style:
    os.makedirs(args.out, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", os.path.join(args.out, "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    logging.set_verbosity(logging.INFO)
    cli.quiet_library_logs()
    return run_style(args, settings)
  if not os.path.isdir(args.textures_dir):
    print(f"Skipping: no texture folder at {os.path.abspath(args.textures_dir)} "
          "(pass --textures_dir).")
    return 0
  paths = find_textures(args.textures_dir)
  if args.only:
    wanted = set(args.only)
    paths = [p for p in paths if os.path.splitext(os.path.basename(p))[0] in wanted]
  if not paths:
    print(f"Skipping: no exemplar images in {os.path.abspath(args.textures_dir)}"
          + (f" named {', '.join(args.only)}" if args.only else "") + ".")
    return 0
  names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  os.makedirs(args.out, exist_ok=True)
  # Every texture compiles the same programs (same shapes; the exemplar is an
  # argument), so a persistent cache saves the compilation of all but the first.
  jax.config.update("jax_compilation_cache_dir", os.path.join(args.out, "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  logging.set_verbosity(logging.INFO)
  cli.quiet_library_logs()
  machine = common.machine_info()

  if not args.report_only:
    for path, name in zip(paths, names):
      done = load_records(args.out, [name])
      if done:
        if not same_settings(done[0]["settings"], settings):
          raise SystemExit(
              f"{args.out}/{name}.json was made with other settings "
              f"({done[0]['settings']}); use another --out for these.")
        common.log(f"[{name}] done already, skipping")
        continue
      machine = common.machine_info()  # the load when this texture started
      record = run_texture(path, settings, args.out, machine)
      d = record["distances"]
      common.log(f"[{name}] SWD x1e3: " + ", ".join(
          f"{METHOD_TITLES[m]} {d[m]['swd']:.1f}" for m in METHODS))

  records = load_records(args.out, names)
  if not records:
    print("No results yet.")
    return 0
  command = "python benchmarks/texture_quality.py " + " ".join(
      shlex.quote(a) for a in run_flags(sys.argv[1:] if argv is None else argv))
  report = markdown_report(records, records[0]["settings"], machine, command.strip())
  print(report)
  common.write_json(args.json, {"machine": machine, "results": records})
  if not args.no_docs:
    sheet = contact_sheet(records, args.out,
                          os.path.join(args.docs, "texture_contact_sheet.png"))
    doc = update_doc(os.path.join(args.docs, "texture_quality.md"), report)
    common.log(f"wrote {doc} and {sheet}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
