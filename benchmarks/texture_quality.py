"""How close are INNg and WINN textures to their exemplars, beside baselines?

Question: on the shared texture exemplars, do the introspective recipes, INNg (the
paper's cross-entropy cascade, configs/texture_paper.py) and WINN
(configs/winn_texture.py), trained and sampled through the real
`train.train` and `generate.generate`, produce textures whose local
statistics are closer to the exemplar's than the classical parametric baseline,
random-phase noise? And how does that change as the cascade grows?

No pretrained network is available offline, so quality is measured with statistics
that need none (innjax/metrics.py, innjax/c2st.py), always beside baselines:

* SWD, exemplar-referenced (the headline): the multi-scale sliced Wasserstein distance
  of Progressive GAN. 7x7 neighbourhoods are drawn from every level of a Laplacian
  pyramid (PGGAN's level rule: halve while the coarsest level keeps >= 16 px),
  standardised per channel with the statistics of the exemplar's set for both sets,
  and compared with 512 random 1-D projections; the value is the mean over levels
  (x 1e3 in the tables, as PGGAN reports it). Lost contrast, a colour cast or leftover
  noise change the descriptors' spread and so count.
* SWD, PGGAN (secondary): the same with each set standardised with its own
  statistics, PGGAN's choice. That normalisation hides exactly the failures above
  (a washed-out, tinted or noisy sample is rescaled to the exemplar's spread), so it
  only measures structure.
* C2ST: a classifier two-sample test. A fresh small CNN (innjax/c2st.py, fixed
  recipe and seed) learns to tell crops of the exemplar's top half from crops of a
  method's images, training on the cells of one colour of a checkerboard (cells
  twice the crop) and testing on the other colour;
  its held-out accuracy is the statistic (0.5 = indistinguishable). Whatever differs,
  a critic can learn, so no normalisation flatters it.
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
* random phase (the classical parametric baseline): `baselines.random_phase_noise`,
  the exemplar's Fourier amplitudes with uniformly random phases (Galerne et al. 2011);
* <recipe> 1x: samples from fresh noise at the exemplar's size, one column per
  recipe; <first recipe> 2x: at twice the exemplar's side (skipped with --num_2x 0);
* crops (floor): crops of one half of the exemplar against crops of the other half
  (top | bottom and left | right, averaged), i.e. what two pieces of the real texture
  that share no pixel score against each other. It includes the exemplar's own
  inhomogeneity, so a strongly non-stationary exemplar has a high floor. For C2ST the
  floor is the exemplar's top half against its bottom half.

The whole-image SWDs of each method against the full exemplar are also reported
(`swd_ref_whole`, `swd_whole`); they have no floor to compare with.

Quality against training time: after training, each recipe's cascade is also sampled
at 1x through only its first k classifiers, for a few k (--curve_stages), and each
result is scored with the whole-image exemplar-referenced SWD and C2ST. Training time
at stage k is the recorded training time shared out over the stages in proportion to
the per-stage times in the workdir's TensorBoard events (k / stages of it when those
cannot be read). Written as tables and docs/texture_quality_curve.png.

Recipes (--recipes, default inng,winn): each texture is trained once per recipe, in
OUT/<recipe>/<texture>. The preset's fields apply to every recipe; the Adam steps of
synthesis and sampling are the recipe config's own (0.1 INNg, 0.01 WINN) unless
--step_size / --sample_step_size set them. Then `--set KEY=VALUE` (a dotted config
field, e.g. train.learning_rate=1e-4, or a preset field such as sample_step_size)
applies to every recipe and `--set_<recipe> KEY=VALUE` to that recipe only.

Presets: `paper` is the paper's setting (256x256 exemplar, 64x64 patches, 4-layer
64..512 classifier, 20 stages of 500 classifier updates, 200 negatives of 320x320,
500-step synthesis cap), hours per texture on a CPU. `cpu` (default) is sized so that
one recipe on all eight shared textures takes about an hour on a busy 2-core CPU: the
exemplar resized to 128x128, 32x32 patches, a (32, 64, 128) classifier, 10 stages of
60 updates on 32 + 32 patches, 16 negatives per stage, a 60-step synthesis and
sampling cap; "1x / 2x" are then 128 and 256 px, not the paper's 256 and 512. Every
preset field can be overridden (--stages, --max_steps, ...). C2ST adds about a dozen
critic trainings per texture (--c2st_steps updates each; cached in
OUT/<texture>_c2st.json).

Run (results, model workdirs and samples go under --out; re-running skips textures
whose JSON is there with the same settings, reuses trained workdirs, samples and
per-recipe records OUT/<recipe>/<texture>.json, and only re-measures when e.g. the
recipe list changed):
  python benchmarks/texture_quality.py                      # all textures, cpu preset
  python benchmarks/texture_quality.py --only dtd_bubbly_0038 --stages 2
  python benchmarks/texture_quality.py --recipes winn --set_winn train.learning_rate=1e-3
  python benchmarks/texture_quality.py --report_only        # table + docs from JSONs
  python benchmarks/texture_quality.py --preset paper --out /tmp/tq_paper
  python benchmarks/texture_quality.py --style starry_night --content chelsea
Writes docs/texture_quality.md, docs/texture_contact_sheet.png and
docs/texture_quality_curve.png (unless --no_docs), prints the markdown tables, and
with --json PATH writes every result to one file. The hand-written text of
docs/texture_quality.md is kept; only the generated block between its markers is
replaced. `--style` instead trains the first recipe on one image of
../shared/data/style and renders a content image in that style (paper 4.2) into
docs/style_example.png.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import glob
import hashlib
import json
import os
import shlex
import statistics
import sys
import time

import numpy as np

import common  # benchmarks/common.py (the script's folder is on sys.path)
from charts import CURVE_COLOURS, dashed_line as _dashed, font as _font, nice_ticks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import logging  # noqa: E402
import jax  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from configs import ebm_texture as ebm_config  # noqa: E402
from configs import texture as innjax_config  # noqa: E402
from configs import texture_paper as inng_config  # noqa: E402
from configs import winn_texture as winn_config  # noqa: E402
from innjax import baselines  # noqa: E402
from innjax import c2st  # noqa: E402
from innjax import cli  # noqa: E402
from innjax import config_checks  # noqa: E402
from innjax import data as data_lib  # noqa: E402
from innjax import generate  # noqa: E402
from innjax import metrics  # noqa: E402
from innjax import style as style_lib  # noqa: E402
from innjax import synthesis  # noqa: E402
from innjax import train  # noqa: E402

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Recipe name -> (config module, title in the tables).
RECIPES = {
  "inng": (inng_config, "INNg"),
  "winn": (winn_config, "WINN"),
  "innjax": (innjax_config, "innjax"),
  "ebm": (ebm_config, "EBM"),
}
BASELINE_TITLES = {
  "noise": "noise",
  "random_phase": "random phase",
  "crops": "crops (floor)",
}
# Averaged over the four reference halves (with a spread); C2ST is measured once.
METRICS = ("swd_ref", "swd", "spectrum", "histogram")
SWD_SCALE = 1e3  # PGGAN reports SWD x 1e3

# Every field a preset sets; command-line flags of the same name override them. The
# Adam steps of synthesis and sampling are not here: they come from each recipe's
# config (INNg 0.1, WINN 0.01) unless --step_size / --sample_step_size are given.
PRESETS = {
  "cpu": dict(
    image_size=128,
    patch=32,
    features=(32, 64, 128),
    channels=3,
    stages=10,
    steps_per_stage=60,
    batch=32,
    negatives=16,
    max_steps=60,
    sample_max_steps=60,
    num_1x=2,
    num_2x=1,
  ),
  "paper": dict(
    image_size=256,
    patch=64,
    features=(64, 128, 256, 512),
    channels=3,
    stages=20,
    steps_per_stage=500,
    batch=50,
    negatives=200,
    max_steps=500,
    sample_max_steps=500,
    num_1x=4,
    num_2x=1,
  ),
}
STEP_FIELDS = ("step_size", "sample_step_size")
# Settings that change the trained model: a recipe workdir trained with other values
# cannot be reused (the others only change sampling and measuring).
TRAIN_FIELDS = (
  "image_size",
  "patch",
  "features",
  "channels",
  "stages",
  "steps_per_stage",
  "batch",
  "negatives",
  "max_steps",
  "step_size",
  "seed",
  "recipe",
  "config_digest",
  "overrides",
)
# Config sections whose overrides only change how a trained cascade is sampled or
# used: they are left out of TRAIN_FIELDS' "overrides" (`training_settings`).
SAMPLING_SECTIONS = ("sample.", "style.")


def parse_args(argv=None):
  """The command line; preset fields can be overridden one by one."""
  p = argparse.ArgumentParser(
    description=__doc__.split("\n")[0],
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument(
    "--textures_dir",
    default=os.path.join(REPO, "..", "shared", "data", "textures"),
    help="folder of exemplar images (default ../shared/data/textures)",
  )
  p.add_argument(
    "--out",
    default="/tmp/texture_quality",
    help="work folder: per-texture JSON, model workdirs, samples",
  )
  p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
  p.add_argument(
    "--recipes",
    type=common.parse_str_list,
    default=["inng", "winn", "innjax"],
    help=f"comma list of recipes to train and compare, of "
    f"{', '.join(RECIPES)} (default inng,winn,innjax; the first one also gets "
    "the 2x column)",
  )
  p.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="after the preset, set a config field (dotted, e.g. "
    "train.learning_rate=1e-4) or a preset field (e.g. "
    "sample_step_size=0.05) for every recipe; repeatable. VALUE is a "
    "Python literal, else a string",
  )
  for recipe, (_, title) in RECIPES.items():
    p.add_argument(
      f"--set_{recipe}",
      action="append",
      default=[],
      metavar="KEY=VALUE",
      help=f"as --set, for {title} only (applied after --set)",
    )
  p.add_argument(
    "--only",
    action="append",
    default=None,
    metavar="NAME",
    help="run only this texture (file stem; repeatable)",
  )
  p.add_argument(
    "--json",
    default=None,
    metavar="PATH",
    help="also write all results (and the machine) to this JSON file",
  )
  p.add_argument(
    "--docs",
    default=os.path.join(REPO, "docs"),
    help="where texture_quality.md and the PNGs go",
  )
  p.add_argument("--no_docs", action="store_true", help="print the tables only")
  p.add_argument(
    "--report_only",
    action="store_true",
    help="train nothing: build the tables and docs from existing JSONs",
  )
  p.add_argument(
    "--crops", type=int, default=16, help="crops per set in every comparison (default 16)"
  )
  p.add_argument(
    "--curve_stages",
    type=common.parse_int_list,
    default=None,
    help="stage counts k of the quality-vs-training-time curve, e.g. "
    "2,5,10 (those <= --stages are used; default 4 evenly spaced values "
    "ending at the last stage)",
  )
  p.add_argument(
    "--c2st_steps",
    type=int,
    default=400,
    help="Adam updates of each C2ST critic (default 400)",
  )
  p.add_argument("--seed", type=int, default=0, help="seed of the model and metrics")
  p.add_argument(
    "--style",
    default=None,
    metavar="IMAGE",
    help="instead of the texture table: train the first recipe on this "
    "style image (a path, or a name in --style_dir) and render --content "
    "in it to docs/style_example.png",
  )
  p.add_argument(
    "--style_dir", default=os.path.join(REPO, "..", "shared", "data", "style")
  )
  p.add_argument(
    "--content",
    default="chelsea",
    help="content image for --style: a path or a scikit-image name",
  )
  p.add_argument(
    "--content_size",
    type=int,
    default=256,
    help="longer side of the content image for --style (default 256)",
  )
  p.add_argument(
    "--style_steps",
    type=int,
    default=200,
    help="Adam steps of the style transfer (default 200)",
  )
  ints = (
    "image_size",
    "patch",
    "channels",
    "stages",
    "steps_per_stage",
    "batch",
    "negatives",
    "max_steps",
    "sample_max_steps",
    "num_1x",
    "num_2x",
  )
  for name in ints:
    p.add_argument(
      f"--{name}", type=int, default=None, help=f"override the preset's {name}"
    )
  p.add_argument(
    "--step_size",
    type=float,
    default=None,
    help="Adam step of training-time synthesis for every recipe (default: "
    "each recipe config's synthesis.step_size)",
  )
  p.add_argument(
    "--sample_step_size",
    type=float,
    default=None,
    help="Adam step when sampling from fresh noise, for every recipe "
    "(default: the recipe's synthesis step)",
  )
  p.add_argument(
    "--features",
    type=common.parse_int_list,
    default=None,
    help="override the classifier widths, e.g. 32,64,128",
  )
  return p.parse_args(argv)


def parse_override(text: str) -> tuple[str, object]:
  """'train.learning_rate=1e-4' -> ('train.learning_rate', 0.0001).

  The value is read as a Python literal (numbers, tuples, True, None, quoted
  strings); anything else, e.g. `objective=wasserstein`, is kept as a string.
  """
  if "=" not in text:
    raise SystemExit(f"--set expects KEY=VALUE, got {text!r}.")
  key, raw = text.split("=", 1)
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    value = raw
  return key.strip(), value


def settings_from_args(args) -> dict:
  """The preset with the command line's overrides applied, for all recipes together.

  Each recipe's own settings (with its overrides and resolved Adam steps) come from
  `recipe_settings`.
  """
  settings = dict(PRESETS[args.preset])
  for name in settings:
    value = getattr(args, name, None)
    if value is not None:
      settings[name] = tuple(value) if name == "features" else value
  settings["features"] = list(settings["features"])
  for name in STEP_FIELDS:  # None: the recipe config's own step
    settings[name] = getattr(args, name)
  settings["preset"] = args.preset
  settings["seed"] = args.seed
  settings["crops"] = args.crops
  unknown = [r for r in args.recipes if r not in RECIPES]
  if unknown or not args.recipes:
    raise SystemExit(
      f"--recipes: unknown {unknown or 'empty list'}; choose from {', '.join(RECIPES)}."
    )
  settings["recipes"] = list(dict.fromkeys(args.recipes))
  overrides = {"all": dict(parse_override(t) for t in args.set)}
  for recipe in settings["recipes"]:
    overrides[recipe] = dict(parse_override(t) for t in getattr(args, f"set_{recipe}"))
  settings["overrides"] = overrides
  settings["curve_stages"] = args.curve_stages
  settings["c2st_steps"] = args.c2st_steps
  for recipe in settings["recipes"]:
    recipe_settings(settings, recipe)  # a misspelt --set field fails now, not later
  return settings


def recipe_settings(settings: dict, recipe: str) -> dict:
  """What one recipe trains, samples and measures with (stored in its records).

  Preset fields named in its overrides replace the shared values; the remaining
  (dotted) overrides are config fields, applied by `make_config` after the preset.
  The Adam steps are resolved to the values the config ends up with; only the first
  recipe samples at 2x.
  """
  s = {k: v for k, v in settings.items() if k not in ("recipes", "overrides", "crops")}
  s["recipe"] = recipe
  overrides = {**settings["overrides"]["all"], **settings["overrides"].get(recipe, {})}
  config_overrides = {}
  for key, value in overrides.items():
    if key in s and key not in ("recipe", "preset", "curve_stages"):
      s[key] = list(value) if key == "features" else value
    else:
      config_overrides[key] = value
  # with_overrides would add a misspelt field silently; training would ignore it.
  fields = config_checks.config_fields(RECIPES[recipe][0].get_config()) | set(
    config_checks.OPTIONAL_FIELDS
  )
  unknown = sorted(set(config_overrides) - fields)
  if unknown:
    raise SystemExit(
      f"--set / --set_{recipe}: {', '.join(unknown)} is neither a "
      f"config field of {RECIPES[recipe][1]} nor a preset field "
      f"({', '.join(PRESETS[settings['preset']])}, "
      f"{', '.join(STEP_FIELDS)})."
    )
  s["overrides"] = config_overrides
  # An edit of the recipe's config file changes the model as much as a flag does;
  # the style-transfer fields only change how a trained model is used.
  recipe_config = RECIPES[recipe][0].get_config().to_dict()
  recipe_config.pop("style", None)
  s["config_digest"] = hashlib.sha1(
    json.dumps(recipe_config, sort_keys=True, default=str).encode()
  ).hexdigest()[:12]
  if recipe != settings["recipes"][0]:
    s["num_2x"] = 0
  config = make_config(s, "")
  s["step_size"] = float(config.synthesis.step_size)
  if s["sample_step_size"] is None:
    s["sample_step_size"] = s["step_size"]  # the sampler runs config.synthesis
  s["sample_step_size"] = float(s["sample_step_size"])
  return s


def make_config(settings: dict, image_path: str):
  """The recipe's config with the settings and overrides applied; the exemplar is
  `image_path`.

  `settings` are a recipe's (`recipe_settings`); a missing recipe means INNg and a
  None step size the config's own.
  """
  module = RECIPES[settings.get("recipe", "inng")][0]
  config = module.get_config()
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
  if settings.get("step_size") is not None:
    config.synthesis.step_size = float(settings["step_size"])
  config.sample.max_steps = int(settings["sample_max_steps"])
  # generate.generate builds its sampler from config.synthesis, so the sampling step
  # is applied to a copy of the config there (sampling_config), not here.
  config.sample.seed = int(settings["seed"]) + 1
  config.grid_size = min(16, negatives)
  # Last, so that --set / --set_<recipe> win over the preset, as --config.X does.
  return cli.with_overrides(config, dict(settings.get("overrides", {})))


# ----------------------------------------------------------------------------------
# Images.


def find_textures(folder: str) -> list[str]:
  """Exemplar image files in `folder`, sorted by name."""
  paths = [
    p
    for p in glob.glob(os.path.join(folder, "*"))
    if p.lower().endswith(IMAGE_EXTENSIONS)
  ]
  return sorted(paths)


def load_exemplar(config) -> np.ndarray:
  """The exemplar exactly as training sees it: float32 (H, W, C) in [-1, 1]."""
  dataset = data_lib.load_dataset(config.data)
  return np.asarray(data_lib.to_float(dataset.images[0]), np.float32)


def gaussian_noise(
  rng: np.random.Generator, num: int, side: int, channels: int, std: float
) -> np.ndarray:
  """N(0, std^2) clipped to [-1, 1]: the distribution the sampler starts from."""
  return np.clip(std * rng.standard_normal((num, side, side, channels)), -1.0, 1.0)


def random_crops(
  rng: np.random.Generator, images: np.ndarray, side: int, num: int
) -> np.ndarray:
  """`num` uniformly placed side x side crops of (N, H, W, C) images, taken in turn."""
  crops = []
  for i in range(num):
    image = images[i % len(images)]
    h, w = image.shape[:2]
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    crops.append(image[y : y + side, x : x + side])
  return np.stack(crops)


def exemplar_halves(exemplar: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
  """The exemplar cut at its middle along `axis` (0: top | bottom, 1: left | right)."""
  mid = exemplar.shape[axis] // 2
  return (
    np.take(exemplar, np.arange(mid), axis=axis),
    np.take(exemplar, np.arange(mid, exemplar.shape[axis]), axis=axis),
  )


def pyramid_levels(side: int, patch: int = 7) -> int:
  """PGGAN's rule: halve while the coarsest level keeps >= max(16, patch) pixels."""
  levels = 1
  while (side + 1) // 2 >= max(16, patch):
    side = (side + 1) // 2
    levels += 1
  return levels


# ----------------------------------------------------------------------------------
# Distances.


def set_distances(
  reference: np.ndarray, test: np.ndarray, levels: int, seed: int
) -> dict:
  """SWDs (x 1e3), spectrum and histogram distances between two sets of crops.

  `swd_ref` standardises both descriptor sets with the reference's per-channel
  statistics, so contrast, colour and noise differences count; `swd` is PGGAN's
  per-set standardisation, which rescales them away.
  """
  swd = metrics.swd(reference, test, levels=levels, rng=seed)
  swd_ref = metrics.swd(reference, test, levels=levels, rng=seed, normalize="reference")
  return {
    "swd_ref": SWD_SCALE * swd_ref["mean"],
    "swd_ref_levels": [SWD_SCALE * swd_ref[level] for level in range(levels)],
    "swd": SWD_SCALE * swd["mean"],
    "swd_levels": [SWD_SCALE * swd[level] for level in range(levels)],
    "spectrum": metrics.spectrum_distance(reference, test, window="hann"),
    "histogram": metrics.histogram_distance(reference, test),
  }


def c2st_crop(exemplar: np.ndarray) -> int:
  """C2ST crop side: an eighth of the exemplar's side (16 for the cpu preset).

  The reference is the exemplar's top half, which C2ST tiles into a checkerboard of
  cells twice the crop's side, training on one colour and testing on the other. With
  a quarter of the side (32 px on 128) each colour was a single cell: the critic
  memorised it and the exemplar's own halves scored 0.93 (braided); at an eighth
  they score near 0.5 and noise 1.0.
  """
  return max(8, min(exemplar.shape[:2]) // 8)


def c2st_accuracy(
  reference: np.ndarray,
  images: np.ndarray,
  crop: int,
  steps: int,
  seed: int,
  cache_path: str | None = None,
) -> dict:
  """C2ST held-out and training accuracy of `images` against `reference`, cached.

  A critic takes minutes on a busy CPU, and the same pair comes up more than once
  (the curve's last point is the 1x sample; a re-measure after adding a recipe sees
  the same baselines), so results are kept in a JSON file keyed by a hash of the
  inputs and the recipe.
  """
  reference = np.ascontiguousarray(reference, np.float32)
  images = np.ascontiguousarray(images, np.float32)
  digest = hashlib.sha1()
  for array in (reference, images):
    digest.update(str(array.shape).encode())
    digest.update(array.tobytes())
  digest.update(f"crop={crop},steps={steps},seed={seed}".encode())
  key = digest.hexdigest()
  cache = {}
  if cache_path and os.path.exists(cache_path):
    with open(cache_path) as f:
      cache = json.load(f)
  if key not in cache:
    result = c2st.c2st(reference, images, crop=crop, steps=steps, seed=seed)
    cache[key] = {
      "accuracy": float(result.accuracy),
      "train_accuracy": float(result.train_accuracy),
    }
    if cache_path:
      with open(cache_path, "w") as f:
        json.dump(cache, f, indent=1)
  return cache[key]


def evaluate_methods(
  exemplar: np.ndarray,
  images: dict,
  num_crops: int,
  seed: int,
  c2st_steps: int,
  c2st_cache: str | None = None,
) -> dict:
  """All distances for every method in `images` and for the crop-vs-crop floor.

  The reference is a set of `num_crops` crops (half the exemplar's side) of one half
  of the exemplar; it is compared with as many crops of each method's images and,
  for the floor, of the other half, which shares no pixel with the reference, as a
  synthesis shares none with the exemplar. Distances are averaged over the four
  choices of reference half (top, bottom, left, right). C2ST is measured once per
  method, with the exemplar's top half as the reference (the floor: its bottom half
  as the images).

  Args:
    exemplar: (H, W, C) in [-1, 1], the image the model was trained on.
    images: method name -> (N, h, w, C) images under test (h, w >= a crop).
    num_crops: crops per set.
    seed: seeds the crop positions, the SWD estimator and the C2ST critic.
    c2st_steps: Adam updates of each C2ST critic.
    c2st_cache: JSON file of C2ST results to reuse (see `c2st_accuracy`).

  Returns:
    method name -> {swd_ref, swd, spectrum, histogram} and their spread over the
    four reference halves (`*_std`), `c2st` (held-out accuracy) and `c2st_train`;
    for the methods also `swd_ref_whole` and `swd_whole`, the whole images against
    the whole exemplar (x 1e3).
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
    for k in ("swd_levels", "swd_ref_levels"):
      results[name][k] = np.mean([d[k] for d in splits], axis=0).tolist()
    results[name].update(
      {f"{k}_std": float(np.std([d[k] for d in splits])) for k in METRICS}
    )
  whole_levels = pyramid_levels(min(exemplar.shape[:2]))
  for name, batch in images.items():
    results[name]["swd_ref_whole"] = (
      SWD_SCALE
      * metrics.swd(
        exemplar, batch, levels=whole_levels, rng=seed, normalize="reference"
      )["mean"]
    )
    results[name]["swd_whole"] = (
      SWD_SCALE * metrics.swd(exemplar, batch, levels=whole_levels, rng=seed)["mean"]
    )
  top, bottom = exemplar_halves(exemplar, 0)
  crop = c2st_crop(exemplar)
  for name, batch in {**images, "crops": bottom}.items():
    common.log(f"  C2ST {name}")
    result = c2st_accuracy(top, batch, crop, c2st_steps, seed, c2st_cache)
    results[name]["c2st"] = result["accuracy"]
    results[name]["c2st_train"] = result["train_accuracy"]
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
    state = train.train(config, workdir)
    record["stages"] = int(state.stage)
  finally:
    record["seconds"] += time.perf_counter() - t0
    record["sessions"] += 1
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
      json.dump(record, f)
  return record


def sampling_config(config, num: int, sample_step_size: float):
  """A copy of `config` whose sampler takes `sample_step_size` and `num` images at once.

  `sample_step_size` is the sampler's Adam step; it may differ from the one training
  synthesised its pseudo-negatives with (a smaller step leaves fewer high-frequency
  artefacts but may not carry the noise far enough within the step cap).
  """
  config = config.copy_and_resolve_references()
  config.synthesis.step_size = float(sample_step_size)
  config.sample.num = num
  config.sample.batch_size = num
  return config


def sample_model(
  config, workdir: str, side: int, num: int, sample_step_size: float
) -> tuple[np.ndarray, float]:
  """`num` samples of side x side from fresh noise, cached as an .npz in the workdir."""
  config = sampling_config(config, num, sample_step_size)
  path = os.path.join(
    workdir,
    f"quality_samples_{side}_{sampling_digest(config, int(config.num_stages))}.npz",
  )

  def draw():
    t0 = time.perf_counter()
    images, _ = generate.generate(config, workdir, size=(side, side))
    return images, time.perf_counter() - t0

  return cached_samples(path, num, draw)


def sampling_digest(config, stages: int) -> str:
  """A short hash of what decides a cached sample: the classifiers sampled through
  (`stages`) and every sampling and synthesis setting.

  A workdir extended to more stages, or sampled with another window or step cap,
  then gets new samples instead of the cached ones of the earlier cascade.
  """
  what = {
    "stages": int(stages),
    "sample": config.sample.to_dict(),
    "synthesis": config.synthesis.to_dict(),
  }
  text = json.dumps(what, sort_keys=True, default=str)
  return hashlib.sha1(text.encode()).hexdigest()[:12]


def cached_samples(path: str, num: int, draw) -> tuple[np.ndarray, float]:
  """(images, seconds) from the .npz at `path` if it holds `num` images; otherwise
  `draw()`'s (images, seconds), saved there first."""
  if os.path.exists(path):
    with np.load(path) as cached:
      if cached["images"].shape[0] == num:
        return cached["images"], float(cached["seconds"])
  images, seconds = draw()
  np.savez_compressed(path, images=images, seconds=seconds)
  return images, seconds


def sample_first_stages(
  config, cascade, workdir: str, side: int, num: int, sample_step_size: float, stages: int
) -> tuple[np.ndarray, float]:
  """As `sample_model`, through only the classifiers of the first `stages` stages.

  `cascade` is a function returning `generate.load_cascade`'s (stacked, active,
  stages), loaded once per workdir. The key is the one `generate.generate` uses, so
  the curve's samples differ from the 1x samples only in the classifiers kept.
  """
  config = sampling_config(config, num, sample_step_size)
  path = os.path.join(
    workdir, f"quality_curve_{side}_k{stages}_{sampling_digest(config, stages)}.npz"
  )

  def draw():
    stacked, active, _ = cascade()
    # Slot i holds the classifier of stages [i * group, (i + 1) * group); a group is
    # one stage for INNg and WINN.
    slots = -(-stages // train.group_size(config))
    mask = active.at[slots:].set(False)
    t0 = time.perf_counter()
    images, _ = synthesis.synthesize_images(
      config, stacked, mask, num, jax.random.key(int(config.sample.seed)), (side, side)
    )
    return images, time.perf_counter() - t0

  return cached_samples(path, num, draw)


STAGE_TIME_TAGS = ("time_classification_s", "time_synthesis_s")


def stage_seconds(workdir: str, stages: int) -> list[float] | None:
  """Per-stage classifier + synthesis seconds from the workdir's TensorBoard events.

  A resumed run has several event files (in time order by name); a stage redone
  after an interruption keeps its last value. None when the events cannot be read or
  miss a stage.
  """
  try:
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.util import tensor_util
  except ImportError:
    return None
  times = {}
  try:
    for path in sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))):
      for event in event_file_loader.LegacyEventFileLoader(path).Load():
        for v in event.summary.value:
          if v.tag in STAGE_TIME_TAGS:
            value = (
              v.simple_value
              if v.HasField("simple_value")
              else float(tensor_util.make_ndarray(v.tensor))
            )
            times.setdefault(int(event.step), {})[v.tag] = value
  except Exception as e:  # pylint: disable=broad-except
    common.log(f"could not read the events in {workdir} ({e}); linear stage times")
    return None
  out = []
  for stage in range(1, stages + 1):
    if set(times.get(stage, {})) != set(STAGE_TIME_TAGS):
      return None
    out.append(sum(times[stage].values()))
  return out


def curve_stage_list(stages: int, requested: list[int] | None) -> list[int]:
  """The k of the curve: the requested ones <= `stages`, or 4 evenly spaced ending
  at `stages`."""
  if requested:
    return sorted({int(k) for k in requested if 1 <= int(k) <= stages})
  return sorted({max(1, int(stages * i / 4 + 0.5)) for i in range(1, 5)})


def quality_curve(
  config,
  workdir: str,
  exemplar: np.ndarray,
  final: np.ndarray,
  timing: dict,
  settings: dict,
  c2st_cache: str,
) -> dict:
  """Whole-image exemplar-referenced SWD and C2ST of 1x samples after k stages.

  Args:
    config: the recipe's config; workdir: its trained run.
    exemplar: (H, W, C) in [-1, 1].
    final: the 1x samples of the whole cascade (the point k = stages).
    timing: `train_model`'s record (seconds, stages).
    settings: the recipe's settings.
    c2st_cache: JSON file of C2ST results.

  Returns:
    {"points": [{stage, train_seconds, swd_ref, c2st, c2st_train, sample_seconds}],
     "time_source": "events" | "linear", "seconds": wall time of the curve}.
  """
  t_start = time.perf_counter()
  stages = int(timing["stages"])
  side, num = int(settings["image_size"]), int(settings["num_1x"])
  seed = int(settings["seed"])
  per_stage = stage_seconds(workdir, stages)
  loaded = {}

  def cascade():
    if not loaded:
      loaded["cascade"] = generate.load_cascade(config, workdir)
    return loaded["cascade"]

  top = exemplar_halves(exemplar, 0)[0]
  levels = pyramid_levels(side)
  points = []
  for k in curve_stage_list(stages, settings.get("curve_stages")):
    if k == stages:
      images, seconds = final, 0.0  # already sampled (and timed) as the 1x column
    else:
      common.log(f"  curve: sampling through the first {k} of {stages} stages")
      images, seconds = sample_first_stages(
        config, cascade, workdir, side, num, float(settings["sample_step_size"]), k
      )
    # Training time up to stage k: the recorded total (compilation and checkpoints
    # included) shared out like the per-stage times, else evenly.
    share = (
      sum(per_stage[:k]) / sum(per_stage)
      if per_stage and sum(per_stage) > 0
      else k / stages
    )
    swd_ref = (
      SWD_SCALE
      * metrics.swd(exemplar, images, levels=levels, rng=seed, normalize="reference")[
        "mean"
      ]
    )
    result = c2st_accuracy(
      top, images, c2st_crop(exemplar), int(settings["c2st_steps"]), seed, c2st_cache
    )
    points.append(
      {
        "stage": k,
        "train_seconds": float(timing["seconds"]) * share,
        "swd_ref": swd_ref,
        "c2st": result["accuracy"],
        "c2st_train": result["train_accuracy"],
        "sample_seconds": seconds,
      }
    )
  return {
    "points": points,
    "time_source": "events" if per_stage else "linear",
    "seconds": time.perf_counter() - t_start,
  }


def run_recipe(
  path: str, recipe: str, settings: dict, out_dir: str, machine: dict
) -> tuple[dict, dict]:
  """Trains, samples and traces the curve of one recipe on one texture.

  The record goes to OUT/<recipe>/<texture>.json and is reused when its settings are
  the same; a workdir trained with other training settings stops the run, one that
  differs only in sampling or measuring is re-sampled and re-measured.

  Returns:
    (the record, {"1x": images, "2x": images or None}).
  """
  name = os.path.splitext(os.path.basename(path))[0]
  title = RECIPES[recipe][1]
  recipe_dir = os.path.join(out_dir, recipe)
  workdir = os.path.join(recipe_dir, name)
  record_path = os.path.join(recipe_dir, f"{name}.json")
  config = make_config(settings, os.path.abspath(path))
  record = None
  if os.path.exists(record_path):
    with open(record_path) as f:
      record = json.load(f)
    old = record["settings"]
    if not same_settings(training_settings(old), training_settings(settings)):
      raise SystemExit(
        f"{record_path} was trained with other settings ({old}); use another --out "
        "for these."
      )
    if not same_settings(old, settings):
      record = None  # same model, other sampling or measuring: redo those
  side = int(settings["image_size"])
  step = float(settings["sample_step_size"])
  if record is None:
    common.log(f"[{name} {title}] training {settings['stages']} stages in {workdir}")
  timing = train_model(config, workdir)
  if record is None:
    common.log(f"[{name} {title}] trained ({timing['seconds']:.0f}s); sampling")
  x_1x, t_1x = sample_model(config, workdir, side, int(settings["num_1x"]), step)
  x_2x, t_2x = None, None
  if int(settings["num_2x"]) > 0:
    x_2x, t_2x = sample_model(config, workdir, 2 * side, int(settings["num_2x"]), step)
  samples = {"1x": x_1x, "2x": x_2x}
  if record is not None:
    return record, samples
  common.log(
    f"[{name} {title}] sampled ({t_1x:.0f}s"
    + (f" + {t_2x:.0f}s" if t_2x is not None else "")
    + "); quality curve"
  )
  exemplar = load_exemplar(config)
  curve = quality_curve(
    config,
    workdir,
    exemplar,
    x_1x,
    timing,
    settings,
    os.path.join(out_dir, f"{name}_c2st.json"),
  )
  record = {
    "texture": name,
    "recipe": recipe,
    "workdir": workdir,
    "settings": settings,
    "train_seconds": timing["seconds"],
    "train_sessions": timing["sessions"],
    "stages": timing["stages"],
    "sample_seconds_1x": t_1x,
    "sample_seconds_2x": t_2x,
    "curve": curve["points"],
    "curve_time_source": curve["time_source"],
    "curve_seconds": curve["seconds"],
    "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    "machine": machine,
  }
  os.makedirs(recipe_dir, exist_ok=True)
  with open(record_path, "w") as f:
    json.dump(record, f, indent=2)
  return record, samples


def run_texture(path: str, settings: dict, out_dir: str, machine: dict) -> dict:
  """Runs every recipe on one texture and measures them all with the baselines.

  Writes and returns the texture's JSON record (OUT/<texture>.json), which holds the
  distances of every method and each recipe's record.
  """
  name = os.path.splitext(os.path.basename(path))[0]
  recipes = settings["recipes"]
  runs, samples = {}, {}
  for recipe in recipes:
    runs[recipe], samples[recipe] = run_recipe(
      path, recipe, recipe_settings(settings, recipe), out_dir, machine
    )
  exemplar = load_exemplar(
    make_config(recipe_settings(settings, recipes[0]), os.path.abspath(path))
  )
  side = int(settings["image_size"])
  rng = np.random.default_rng(int(settings["seed"]))
  num, channels = int(settings["num_1x"]), exemplar.shape[-1]
  init_std = float(make_config(recipe_settings(settings, recipes[0]), "").pool.init_std)
  images = {
    "noise": gaussian_noise(rng, num, side, channels, init_std),
    "random_phase": baselines.random_phase_noise(
      exemplar, (side, side), rng=rng, num_samples=num
    ).astype(np.float32),
  }
  for recipe in recipes:
    images[f"{recipe}_1x"] = samples[recipe]["1x"]
  if samples[recipes[0]]["2x"] is not None:
    images[f"{recipes[0]}_2x"] = samples[recipes[0]]["2x"]
  common.log(f"[{name}] measuring {', '.join(images)} and the floor")
  t0 = time.perf_counter()
  distances = evaluate_methods(
    exemplar,
    images,
    int(settings["crops"]),
    int(settings["seed"]),
    int(settings["c2st_steps"]),
    os.path.join(out_dir, f"{name}_c2st.json"),
  )
  record = {
    "texture": name,
    "path": os.path.abspath(path),
    "settings": settings,
    "exemplar_hw": list(exemplar.shape[:2]),
    "distances": distances,
    "recipes": runs,
    "metric_seconds": time.perf_counter() - t0,
    "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    "machine": machine,
  }
  # First images of each kind, for the contact sheet (uint8 keeps the file small).
  sheet = {
    "exemplar": data_lib.to_uint8(exemplar),
    "random_phase": data_lib.to_uint8(images["random_phase"][0]),
  }
  sheet.update(
    {
      m: data_lib.to_uint8(images[m][0])
      for m in images
      if m not in ("noise", "random_phase")
    }
  )
  np.savez_compressed(os.path.join(out_dir, f"{name}_sheet.npz"), **sheet)
  with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
    json.dump(record, f, indent=2)
  return record


# ----------------------------------------------------------------------------------
# Report.


def upgrade_record(record: dict) -> dict:
  """A record of the INNg-only version of this script in the current layout.

  Those records hold one recipe's timings at the top level and no exemplar-referenced
  SWD, C2ST or curve (shown as "-"), so that --report_only still reads old folders.
  """
  if "recipes" in record:
    return record
  settings = dict(record["settings"], recipes=["inng"])
  keys = (
    "train_seconds",
    "train_sessions",
    "stages",
    "sample_seconds_1x",
    "sample_seconds_2x",
  )
  run = {k: record[k] for k in keys if k in record}
  run.update(
    texture=record["texture"],
    recipe="inng",
    curve=[],
    settings=dict(record["settings"], recipe="inng", overrides={}),
  )
  return dict(record, settings=settings, recipes={"inng": run})


def recipe_title(recipe: str) -> str:
  """'winn' -> 'WINN'."""
  return RECIPES[recipe][1] if recipe in RECIPES else recipe


def method_title(method: str) -> str:
  """'winn_1x' -> 'WINN 1x', 'random_phase' -> 'random phase'."""
  if method in BASELINE_TITLES:
    return BASELINE_TITLES[method]
  recipe, scale = method.rsplit("_", 1)
  return f"{recipe_title(recipe)} {scale}"


def report_methods(settings: dict, with_floor: bool = True) -> list[str]:
  """The compared methods in table order: noise, random phase, recipes, floor."""
  recipes = settings.get("recipes", ["inng"])
  methods = ["noise", "random_phase"] + [f"{r}_1x" for r in recipes]
  if int(settings.get("num_2x", 1)) > 0:
    methods.append(f"{recipes[0]}_2x")
  return methods + (["crops"] if with_floor else [])


def fmt(value: float | None, digits: int = 1) -> str:
  """A number with fixed decimals; '-' where it was not measured."""
  return "-" if value is None else f"{value:.{digits}f}"


def value_of(record: dict, method: str, metric: str) -> float | None:
  """One number of a texture's record, or None where it was not measured."""
  return record["distances"].get(method, {}).get(metric)


def median_of(values) -> float | None:
  """The median of the measured values, or None."""
  values = [v for v in values if v is not None]
  return statistics.median(values) if values else None


def results_table(
  records: list[dict], metric: str, digits: int, spread: bool = False
) -> str:
  """Markdown table: one row per texture, one column per method, then medians.

  With `spread`, each cell also shows the standard deviation over the four
  reference halves (how much the number moves with the part of the exemplar it is
  compared with). The last columns say whether each recipe's 1x beats random phase.
  """
  methods = report_methods(records[0]["settings"])
  recipes = records[0]["settings"].get("recipes", ["inng"])

  def beats(r, recipe):
    mine, rp = value_of(r, f"{recipe}_1x", metric), value_of(r, "random_phase", metric)
    return None if mine is None or rp is None else mine < rp

  headers = (
    ["texture"]
    + [method_title(m) for m in methods]
    + [f"{recipe_title(r)} 1x < RP" for r in recipes]
  )
  rows = []
  for r in records:
    cells = []
    for m in methods:
      cell = fmt(value_of(r, m, metric), digits)
      std = value_of(r, m, metric + "_std")
      cells.append(cell + (f" ±{std:.0f}" if spread and std is not None else ""))
    wins = [{True: "yes", False: "no", None: "-"}[beats(r, recipe)] for recipe in recipes]
    rows.append([r["texture"]] + cells + wins)
  if len(records) > 1:
    counts = []
    for recipe in recipes:
      outcomes = [beats(r, recipe) for r in records]
      measured = [o for o in outcomes if o is not None]
      counts.append(f"{sum(measured)}/{len(measured)}" if measured else "-")
    rows.append(
      ["**median**"]
      + [fmt(median_of(value_of(r, m, metric) for r in records), digits) for m in methods]
      + counts
    )
  return common.markdown_table(
    headers, rows, align="l" + "r" * (len(methods) + len(recipes))
  )


def whole_image_table(records: list[dict], metric: str) -> str:
  """Markdown table of a whole-image SWD (x 1e3) against the whole exemplar."""
  methods = report_methods(records[0]["settings"], with_floor=False)
  headers = ["texture"] + [method_title(m) for m in methods]
  rows = [
    [r["texture"]] + [fmt(value_of(r, m, metric), 1) for m in methods] for r in records
  ]
  if len(records) > 1:
    rows.append(
      ["**median**"]
      + [fmt(median_of(value_of(r, m, metric) for r in records), 1) for m in methods]
    )
  return common.markdown_table(headers, rows)


def curve_stages_of(records: list[dict], recipe: str) -> list[int]:
  """Every k of the recipe's curve over the textures, sorted."""
  return sorted(
    {p["stage"] for r in records for p in r["recipes"].get(recipe, {}).get("curve", [])}
  )


def curve_point(record: dict, recipe: str, stage: int) -> dict | None:
  """The curve's point at `stage` for one texture and recipe, or None."""
  for p in record["recipes"].get(recipe, {}).get("curve", []):
    if p["stage"] == stage:
      return p
  return None


def curve_table(records: list[dict], recipe: str) -> str:
  """Markdown table of one recipe's curve: textures x stages, 'SWD_ref / C2ST'.

  The random-phase column is the same measurement of the baseline (whole images
  against the whole exemplar); the last rows give the medians and the training time
  each stage count took.
  """
  stages = curve_stages_of(records, recipe)
  if not stages:
    return ""

  def cell(swd, acc):
    return "-" if swd is None else f"{swd:.1f} / {acc:.2f}"

  headers = ["texture", "random phase"] + [
    f"{k} stage{'s' if k > 1 else ''}" for k in stages
  ]
  rows = []
  for r in records:
    row = [
      r["texture"],
      cell(
        value_of(r, "random_phase", "swd_ref_whole"), value_of(r, "random_phase", "c2st")
      ),
    ]
    for k in stages:
      p = curve_point(r, recipe, k)
      row.append(cell(p and p["swd_ref"], p and p["c2st"]))
    rows.append(row)
  if len(records) > 1:
    row = [
      "**median**",
      cell(
        median_of(value_of(r, "random_phase", "swd_ref_whole") for r in records),
        median_of(value_of(r, "random_phase", "c2st") for r in records),
      ),
    ]
    for k in stages:
      points = [p for p in (curve_point(r, recipe, k) for r in records) if p]
      row.append(
        cell(
          median_of(p["swd_ref"] for p in points), median_of(p["c2st"] for p in points)
        )
      )
    rows.append(row)
  train_row = ["training (s, median)", ""]
  for k in stages:
    train_row.append(
      fmt(
        median_of(
          p["train_seconds"] for p in (curve_point(r, recipe, k) for r in records) if p
        ),
        0,
      )
    )
  rows.append(train_row)
  return common.markdown_table(headers, rows)


def curve_summary(records: list[dict]) -> dict:
  """recipe -> [(stage, median training s, median SWD_ref / random phase's, median
  C2ST)] over the textures with both numbers."""
  summary = {}
  for recipe in records[0]["settings"].get("recipes", ["inng"]):
    line = []
    for k in curve_stages_of(records, recipe):
      seconds, ratios, accs = [], [], []
      for r in records:
        p = curve_point(r, recipe, k)
        rp = value_of(r, "random_phase", "swd_ref_whole")
        if p is None or not rp:
          continue
        seconds.append(p["train_seconds"])
        ratios.append(p["swd_ref"] / rp)
        accs.append(p["c2st"])
      if seconds:
        line.append(
          (
            k,
            statistics.median(seconds),
            statistics.median(ratios),
            statistics.median(accs),
          )
        )
    if line:
      summary[recipe] = line
  return summary


def curve_plot(records: list[dict], path: str) -> str:
  """PNG: median SWD_ref / random phase's and median C2ST against training time.

  Two panels, one line per recipe, a marker per stage count (labelled with it);
  dashed lines mark random phase (SWD ratio 1, its median C2ST) and chance (0.5).
  Drawn with PIL, as matplotlib is not installed.
  """
  summary = curve_summary(records)
  if not summary:
    return ""
  rp_c2st = median_of(value_of(r, "random_phase", "c2st") for r in records)
  font, small = _font(12), _font(10)
  pw, ph = 380, 260  # one panel's plotting area
  left, right, top, bottom = 56, 16, 46, 44
  width = 2 * (left + pw + right)
  height = top + ph + bottom
  canvas = Image.new("RGB", (width, height), "white")
  draw = ImageDraw.Draw(canvas)
  max_s = max(p[1] for line in summary.values() for p in line) * 1.05 or 1.0
  ratios = [p[2] for line in summary.values() for p in line]
  accs = (
    [p[3] for line in summary.values() for p in line]
    + [0.5]
    + ([rp_c2st] if rp_c2st is not None else [])
  )
  panels = [
    (
      "SWD_ref / random phase's (median)",
      2,
      (0.0, max(1.2, max(ratios) * 1.1)),
      [(1.0, "random phase")],
    ),
    (
      "C2ST accuracy (median)",
      3,
      (max(0.0, min(accs) - 0.05), 1.02),
      [(0.5, "chance")] + ([(rp_c2st, "random phase")] if rp_c2st is not None else []),
    ),
  ]
  for i, (title, index, (y_lo, y_hi), refs) in enumerate(panels):
    x0 = i * (left + pw + right) + left
    y0 = top

    def to_xy(seconds, value, x0=x0, y0=y0, y_lo=y_lo, y_hi=y_hi):
      return (
        x0 + pw * seconds / max_s,
        y0 + ph * (1 - (value - y_lo) / max(y_hi - y_lo, 1e-9)),
      )

    draw.text((x0, 24), title, fill="black", font=font)
    draw.rectangle([x0, y0, x0 + pw, y0 + ph], outline=(120, 120, 120))
    for t in nice_ticks(0.0, max_s):
      x, _ = to_xy(t, y_lo)
      draw.line([(x, y0 + ph), (x, y0 + ph + 4)], fill="black")
      draw.text((x - 10, y0 + ph + 6), f"{t:g}", fill="black", font=small)
    for t in nice_ticks(y_lo, y_hi):
      _, y = to_xy(0.0, t)
      draw.line([(x0 - 4, y), (x0, y)], fill="black")
      draw.text(
        (x0 - 40, y - 6), f"{t:.2f}".rstrip("0").rstrip("."), fill="black", font=small
      )
    draw.text(
      (x0 + pw // 2 - 60, y0 + ph + 22),
      "training time (s, median)",
      fill="black",
      font=small,
    )
    for value, label in refs:
      _, y = to_xy(0.0, value)
      _dashed(draw, int(y), x0, x0 + pw, (150, 150, 150))
      draw.text((x0 + pw - 80, y - 13), label, fill=(110, 110, 110), font=small)
    for j, (recipe, line) in enumerate(summary.items()):
      colour = CURVE_COLOURS[j % len(CURVE_COLOURS)]
      xy = [to_xy(p[1], p[index]) for p in line]
      if len(xy) > 1:
        draw.line(xy, fill=colour, width=2)
      for (x, y), p in zip(xy, line):
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        draw.text((x + 4, y - 14), str(p[0]), fill=colour, font=small)
  x = left
  for j, recipe in enumerate(summary):  # legend
    colour = CURVE_COLOURS[j % len(CURVE_COLOURS)]
    draw.line([(x, 10), (x + 20, 10)], fill=colour, width=3)
    draw.text((x + 24, 3), recipe_title(recipe), fill="black", font=font)
    x += 90
  draw.text((x, 3), "(labels: stages kept)", fill=(110, 110, 110), font=small)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  canvas.save(path, optimize=True)
  return path


def timing_table(records: list[dict]) -> str:
  """Markdown table of training, sampling, curve and metric wall times."""
  headers = [
    "texture",
    "recipe",
    "stages",
    "train (s)",
    "s / stage",
    "sample 1x (s)",
    "sample 2x (s)",
    "curve (s)",
    "metrics (s)",
  ]
  rows = []
  totals = {"train": 0.0, "1x": 0.0, "2x": 0.0, "curve": 0.0, "metrics": 0.0}
  for r in records:
    for i, (recipe, run) in enumerate(r["recipes"].items()):
      t_2x, t_curve = run.get("sample_seconds_2x"), run.get("curve_seconds")
      rows.append(
        [
          r["texture"] if i == 0 else "",
          recipe_title(recipe),
          run["stages"],
          fmt(run["train_seconds"], 0),
          fmt(run["train_seconds"] / max(run["stages"], 1), 0),
          fmt(run["sample_seconds_1x"], 0),
          fmt(t_2x, 0),
          fmt(t_curve, 0),
          fmt(r["metric_seconds"], 0) if i == 0 else "",
        ]
      )
      totals["train"] += run["train_seconds"]
      totals["1x"] += run["sample_seconds_1x"]
      totals["2x"] += t_2x or 0.0
      totals["curve"] += t_curve or 0.0
    totals["metrics"] += r["metric_seconds"]
  if len(records) > 1:
    rows.append(
      [
        "**total**",
        "",
        "",
        fmt(totals["train"], 0),
        "",
        fmt(totals["1x"], 0),
        fmt(totals["2x"], 0),
        fmt(totals["curve"], 0),
        fmt(totals["metrics"], 0),
      ]
    )
  return common.markdown_table(headers, rows, align="ll" + "r" * 7)


def contact_sheet(records: list[dict], out_dir: str, path: str) -> str:
  """Rows = textures; columns = exemplar | each recipe's 1x | 2x | random phase.

  Every image is shown at its own pixel size, so the texture's scale is the same in
  every column and the 2x sample simply covers four times the area. A texture whose
  sheet lacks a column (an older run) leaves it blank. The PNG is stored with a
  256-colour palette to keep it small.
  """
  columns = ["exemplar"] + report_methods(records[0]["settings"], with_floor=False)
  columns = [c for c in columns if c != "noise"]
  columns = columns[:1] + columns[2:] + columns[1:2]  # random phase last
  titles = ["exemplar"] + [method_title(c) for c in columns[1:]]
  sheets = []
  for r in records:
    sheet_path = os.path.join(out_dir, f"{r['texture']}_sheet.npz")
    if os.path.exists(sheet_path):
      with np.load(sheet_path) as f:
        sheets.append((r["texture"], [f[c] if c in f else None for c in columns]))
  if not sheets:
    return ""
  pad, caption = 6, 16
  widths = [
    max([im.shape[1] for _, ims in sheets if (im := ims[i]) is not None] or [0])
    for i in range(len(columns))
  ]
  row_h = max(im.shape[0] for _, ims in sheets for im in ims if im is not None)
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
      if im is not None:
        if im.ndim == 2 or im.shape[-1] == 1:
          im = np.repeat(im.reshape(im.shape[0], im.shape[1], 1), 3, axis=-1)
        canvas.paste(Image.fromarray(im), (x, y))
      x += w + pad
    y += row_h + pad
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  # Synthesised noise does not compress: as 24-bit RGB the sheet is ~2.5 MB. A
  # 256-colour palette (no dithering) is visually the same at a quarter of the size;
  # the exact samples stay in the .npz files under --out.
  canvas.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
    path, optimize=True
  )
  return path


def recipe_description(recipe: str, run_settings: dict) -> str:
  """'INNg (configs/texture_paper.py): synthesis Adam 0.1, sampling Adam 0.1, ...'."""
  module = RECIPES[recipe][0].__name__.replace(".", "/") if recipe in RECIPES else "?"
  s = run_settings
  text = (
    f"{recipe_title(recipe)} (`{module}.py`): synthesis Adam "
    f"{s['step_size']:g}, sampling Adam {s['sample_step_size']:g}"
  )
  overrides = s.get("overrides") or {}
  if overrides:
    text += ", " + ", ".join(f"`{k}={v!r}`" for k, v in overrides.items())
  return text


def markdown_report(
  records: list[dict], settings: dict, machine: dict, command: str
) -> str:
  """The tables (SWDs, C2ST, spectrum, histogram, curves, wall times) with settings."""
  s = settings
  recipes = s.get("recipes", ["inng"])
  first = records[0]["recipes"]
  loads = [r["machine"]["load_average_at_start"][0] for r in records if "machine" in r]
  if loads:
    machine = dict(
      records[0]["machine"],
      load_average_at_start=[min(loads), statistics.median(loads), max(loads)],
    )
    machine_heading = (
      "Machine (load average: the 1-minute value when each texture "
      "started, min, median, max):"
    )
  else:
    machine_heading = "Machine (load average when this report was written):"
  side = int(s["image_size"])
  crop = max(8, side // 8)
  num_2x = int(s.get("num_2x", 1))
  sizes = (
    f"{recipe_title(recipes[0])} 2x = {2 * side}x{2 * side} ({num_2x} sample)"
    if num_2x > 0
    else "no 2x samples"
  )
  time_sources = {
    run.get("curve_time_source")
    for r in records
    for run in r["recipes"].values()
    if run.get("curve")
  }
  time_note = (
    "the recorded training time (compilation and checkpoints included) "
    "shared out over the stages like the per-stage classifier + synthesis "
    "times of the TensorBoard events (the first stage's includes "
    "compilation)"
    if time_sources == {"events"}
    else "k / stages of the recorded training time (per-stage times could not "
    "be read from the TensorBoard events for every run)"
  )
  lines = [
    f"Preset `{s['preset']}`: exemplar {side}x{side} "
    f"({'RGB' if s['channels'] == 3 else 'grey'}), {s['patch']}x{s['patch']} "
    "patches, classifier "
    f"{tuple(s['features'])}, {s['stages']} stages x {s['steps_per_stage']} "
    f"classifier updates on {s['batch']} + {s['batch']} patches, {s['negatives']} "
    "pseudo-negatives per stage, synthesis "
    f"max {s['max_steps']} steps, sampling max {s['sample_max_steps']} steps per "
    f"classifier. 1x = {side}x{side} ({s['num_1x']} samples), {sizes}. Recipes: "
    + "; ".join(
      recipe_description(r, first[r]["settings"]) for r in recipes if r in first
    )
    + ". "
    f"Distances between sets of {s['crops']} crops of {side // 2}x{side // 2}; "
    "lower is better.",
    "",
    "**SWD x 1e3, exemplar-referenced** (multi-scale sliced Wasserstein, "
    f"{pyramid_levels(side // 2)} pyramid levels, both sets standardised with the "
    "exemplar crops' per-channel statistics)",
    "",
    results_table(records, "swd_ref", 1, spread=True),
    "",
    "± is the standard deviation over the four reference halves.",
    "",
    f"**C2ST accuracy** (a fresh CNN told {crop}x{crop} crops of the exemplar's top "
    "half from crops of each method's images, trained on the cells of one colour of "
    f"a checkerboard of {2 * crop}x{2 * crop} cells and tested on the other; "
    f"{s.get('c2st_steps', 400)} Adam updates; 0.5 = "
    "indistinguishable, lower is better; the floor tests the top half against the "
    "bottom half)",
    "",
    results_table(records, "c2st", 3),
    "",
    "**SWD x 1e3, PGGAN normalisation** (secondary: each set standardised with its "
    "own per-channel statistics, as Progressive GAN does. That rescales a sample's "
    "descriptors to the exemplar's spread, so lost contrast, a colour cast or "
    "leftover noise go unseen; only structure is compared)",
    "",
    results_table(records, "swd", 1, spread=True),
    "",
    "**Spectrum distance** (mean |log10 radial power difference|, decades)",
    "",
    results_table(records, "spectrum", 3),
    "",
    "**Histogram distance** (per-channel W1 of pixel values, [-1, 1] units)",
    "",
    results_table(records, "histogram", 3),
    "",
    "**Whole-image SWD x 1e3, exemplar-referenced** (each method's whole images "
    f"against the whole exemplar, {pyramid_levels(side)} levels; no floor exists "
    "at this size)",
    "",
    whole_image_table(records, "swd_ref_whole"),
    "",
    "**Whole-image SWD x 1e3, PGGAN normalisation**",
    "",
    whole_image_table(records, "swd_whole"),
    "",
  ]
  curves = [(r, curve_table(records, r)) for r in recipes]
  if any(table for _, table in curves):
    lines += [
      "**Quality against training time**: 1x samples through the first k "
      "classifiers of each trained cascade, scored like the last table "
      "(whole-image exemplar-referenced SWD x 1e3 / C2ST accuracy). Training time at "
      f"k stages: {time_note}. docs/texture_quality_curve.png plots the medians "
      "(SWD as a ratio to random phase's).",
      "",
    ]
    for recipe, table in curves:
      if table:
        lines += [f"{recipe_title(recipe)}:", "", table, ""]
  lines += [
    "**Wall times** (training includes compilation; sampling is from fresh noise "
    "through every kept classifier in turn; the curve's sampling and measuring; "
    "metrics include C2ST)",
    "",
    timing_table(records),
    "",
    machine_heading,
    "",
    common.machine_markdown(machine),
    "",
    "Command:",
    "",
    "```bash",
    command,
    "```",
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
    text = (
      "# Texture quality: INNg and WINN against training-free baselines\n\n"
      "Written by `benchmarks/texture_quality.py`.\n\n"
      + block
      + "\n"
      + ("\n" + text if text else "")
    )
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
        records.append(upgrade_record(json.load(f)))
  return records


def training_settings(settings: dict) -> dict:
  """The part of a recipe's settings that decides the trained model.

  Overrides of `sample.*` and `style.*` fields are left out, so that an existing
  workdir can be sampled again with, e.g., another `sample.stop_window` instead of
  being refused as trained with other settings.
  """
  view = {k: settings.get(k) for k in TRAIN_FIELDS}
  view["overrides"] = {
    k: v
    for k, v in (settings.get("overrides") or {}).items()
    if not k.startswith(SAMPLING_SECTIONS)
  }
  return view


def same_settings(a: dict, b: dict) -> bool:
  """Whether two runs used the same preset values (JSON turns tuples into lists)."""
  return json.loads(json.dumps(a)) == json.loads(json.dumps(b))


def find_style_image(spec: str, folder: str) -> str | None:
  """A style image given as a path or as a file stem in `folder`, or None."""
  if os.path.exists(spec):
    return spec
  matches = (
    [p for p in find_textures(folder) if os.path.splitext(os.path.basename(p))[0] == spec]
    if os.path.isdir(folder)
    else []
  )
  return matches[0] if matches else None


def run_style(args, settings: dict) -> int:
  """Trains the first recipe on a style image and renders the content image in its
  style.

  Writes docs/style_example.png: style exemplar (as the model saw it) | content |
  result, and prints the wall times.
  """
  path = find_style_image(args.style, args.style_dir)
  if path is None:
    print(
      f"Skipping: no style image {args.style!r} (looked in "
      f"{os.path.abspath(args.style_dir)})."
    )
    return 0
  name = os.path.splitext(os.path.basename(path))[0]
  recipe = settings["recipes"][0]
  settings = recipe_settings(settings, recipe)
  # INNg keeps the folder name of the INNg-only version of this script.
  workdir = os.path.join(
    args.out, f"style_{name}" if recipe == "inng" else f"style_{recipe}_{name}"
  )
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
    column[: panel.shape[0], : panel.shape[1]] = panel
    strip.append(column)
  strip = np.concatenate(strip, axis=1)[:, :-6]
  out = os.path.join(args.docs, "style_example.png")
  if not args.no_docs:
    os.makedirs(args.docs, exist_ok=True)
    Image.fromarray(strip).save(out, optimize=True)
  record = {
    "style": name,
    "content": args.content,
    "settings": settings,
    "train_seconds": timing["seconds"],
    "stages": timing["stages"],
    "style_seconds": seconds,
    "content_hw": list(content.shape[:2]),
    "gamma": float(config.style.gamma),
    "steps": int(config.style.steps),
    "content_mse": stats["content_mse"],
    "mean_p_style": stats["mean_p_style"],
  }
  with open(
    os.path.join(os.path.dirname(workdir), os.path.basename(workdir) + ".json"), "w"
  ) as f:
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
  """Runs every texture that has no result yet, then writes the tables and docs."""
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
    print(
      f"Skipping: no texture folder at {os.path.abspath(args.textures_dir)} "
      "(pass --textures_dir)."
    )
    return 0
  paths = find_textures(args.textures_dir)
  if args.only:
    wanted = set(args.only)
    paths = [p for p in paths if os.path.splitext(os.path.basename(p))[0] in wanted]
  if not paths:
    print(
      f"Skipping: no exemplar images in {os.path.abspath(args.textures_dir)}"
      + (f" named {', '.join(args.only)}" if args.only else "")
      + "."
    )
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
      if done and same_settings(done[0]["settings"], settings):
        common.log(f"[{name}] done already, skipping")
        continue
      if done:
        # Trained models, samples and curves are reused where their own settings
        # match (run_recipe stops if a model was trained otherwise).
        common.log(
          f"[{name}] settings changed since {args.out}/{name}.json; re-measuring"
        )
      machine = common.machine_info()  # the load when this texture started
      record = run_texture(path, settings, args.out, machine)
      d = record["distances"]
      common.log(
        f"[{name}] SWD_ref x1e3 / C2ST: "
        + ", ".join(
          f"{method_title(m)} {d[m]['swd_ref']:.1f} / {d[m]['c2st']:.2f}"
          for m in report_methods(settings)
        )
      )

  records = load_records(args.out, names)
  if not records:
    print("No results yet.")
    return 0
  command = "python benchmarks/texture_quality.py " + " ".join(
    shlex.quote(a) for a in run_flags(sys.argv[1:] if argv is None else argv)
  )
  report = markdown_report(records, records[0]["settings"], machine, command.strip())
  print(report)
  common.write_json(args.json, {"machine": machine, "results": records})
  if not args.no_docs:
    sheet = contact_sheet(
      records, args.out, os.path.join(args.docs, "texture_contact_sheet.png")
    )
    plot = curve_plot(records, os.path.join(args.docs, "texture_quality_curve.png"))
    doc = update_doc(os.path.join(args.docs, "texture_quality.md"), report)
    common.log(f"wrote {doc}, {sheet}" + (f" and {plot}" if plot else ""))
  return 0


if __name__ == "__main__":
  sys.exit(main())
