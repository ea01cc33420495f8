"""Artistic style transfer with a cascade trained on a style image (paper 4.2).

Starting from the content image I_content, the image I is optimised to minimise

    gamma * scale * mean_pixels (I - I_content)^2  -  (1 - gamma) * ln p_style(I)

with ln p_style(I) = sum over kept classifiers of the mean over random patches of
ln sigmoid(logit), i.e. the log-probability that the cascade takes I's patches for the
style. The log-sigmoid saturates once a patch looks like the style, so the content
term keeps the picture recognisable instead of being swamped by growing logits.

`style.content_unit` sets `scale`, i.e. what the content term and the logits are
weighed in. "pixel" (scale 1, the paper's INNg setting): the mean squared difference
per pixel. "patch" (scale = the pixels of one patch, channels included): the squared
L2 distance of a patch, the unit a Wasserstein critic's logit is measured in. The
gradient penalty makes such a critic about 1-Lipschitz in a patch's L2 norm, so each
logit's pull on a pixel is about 1 / sqrt(patch pixels) whatever the image; against the
per-pixel mean (thousands of times smaller) the style term would win everywhere and
erase the content. In patch units a pixel settles where 2 gamma |I - I_content| meets
(1 - gamma) times the critics' pull, a fraction of the pixel range for gamma = 0.3.
The same anysize patch head as texture synthesis is used, so content images of any
size work; they are padded by half a patch per side (reflected) so that border pixels
are covered as often as the centre, and the padding is cropped at the end.
"""

from __future__ import annotations

import functools
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from innjax import cascade
from innjax import data as data_lib
from innjax import config_checks
from innjax import energy as energy_lib
from innjax import errors
from innjax import generate
from innjax import images
from innjax import outputs
from innjax import patches
from innjax import sharding
from innjax import synthesis


def load_content(config) -> np.ndarray:
  """The content image as float32 (H, W, C) in [-1, 1], scaled to `style.max_size`."""
  channels = int(config.data.channels)
  image = data_lib.load_named_image(config.style.content, channels)
  max_size = int(config.style.max_size)
  h, w = image.shape[:2]
  if max_size > 0 and max(h, w) > max_size:
    scale = max_size / max(h, w)
    image = data_lib.resize(image, (max(1, round(h * scale)), max(1, round(w * scale))))
  side = synthesis.geometry(config).patch_size
  if min(image.shape[:2]) < side:
    raise errors.DataError(
      f"The content image {config.style.content!r} is {image.shape[0]}x"
      f"{image.shape[1]}, smaller than the {side}x{side} patches the style model "
      "sees; use a larger image or a larger --config.style.max_size."
    )
  return np.asarray(data_lib.to_float(image), np.float32)


def content_unit_scale(config) -> float:
  """The content term's weight per unit of mean squared pixel difference.

  1 for `style.content_unit="pixel"`; the number of values in one patch
  (`patch.size`^2 x channels) for "patch" (see the module docstring).
  """
  unit = config.style.get("content_unit", "pixel")
  if unit not in config_checks.CONTENT_UNITS:
    raise errors.ConfigError(
      f"Bad config: style.content_unit must be one of {config_checks.CONTENT_UNITS}, got {unit!r}."
    )
  if unit == "pixel":
    return 1.0
  return float(synthesis.geometry(config).patch_size ** 2 * int(config.data.channels))


def make_stylizer(config, model, full_hw):
  """Returns jitted `stylize(stacked, mask, content_padded, key) -> (x, info)`.

  `content_padded` is (1, H, W, C) in [-1, 1]; `info` holds the final content loss and
  mean per-stage P(style) over random patches.
  """
  logit_fn = energy_lib.make_stage_logit_fn(model, synthesis.geometry(config), full_hw)
  gamma = float(config.style.gamma)
  content_scale = content_unit_scale(config)
  steps = int(config.style.steps)
  strategy = config.synthesis.strategy
  tx = optax.adam(
    float(config.style.step_size),
    b1=float(config.synthesis.beta1),
    b2=float(config.synthesis.beta2),
  )

  def log_p_style(stacked, mask, x, key):
    fn = lambda variables, xx: jax.nn.log_sigmoid(logit_fn(variables, xx, key))
    return jnp.mean(cascade.cascade_logits(fn, stacked, x, strategy, mask))

  def objective(x, stacked, mask, content, key):
    content_loss = jnp.mean(jnp.square(x - content))
    log_p = log_p_style(stacked, mask, x, key)
    return (
      gamma * content_scale * content_loss - (1.0 - gamma) * log_p,
      (content_loss, log_p),
    )

  @jax.jit
  def stylize(stacked, mask, content, key):
    def body(carry, step_key):
      x, opt_state = carry
      grad, _ = jax.grad(objective, has_aux=True)(x, stacked, mask, content, step_key)
      updates, opt_state = tx.update(grad, opt_state, x)
      x = jnp.clip(optax.apply_updates(x, updates), -1.0, 1.0)
      return (x, opt_state), None

    keys = jax.random.split(key, steps + 1)
    (x, _), _ = jax.lax.scan(body, (content, tx.init(content)), keys[:-1])
    _, (content_loss, log_p) = objective(x, stacked, mask, content, keys[-1])
    num_active = jnp.maximum(jnp.sum(mask), 1)
    return x, {"content_mse": content_loss, "mean_p_style": jnp.exp(log_p / num_active)}

  return stylize


def stylize(config, workdir: str, key=None, output_dir: str | None = None):
  """Renders `config.style.content` in the style the cascade in `workdir` learned.

  Writes `<content>_gamma<g>.png` and `<content>_gamma<g>_with_content.png` (beside the
  content image) to `output_dir` (default `workdir/style`); when either name is in
  use, both get `-2`, `-3`, ... before the suffix, so no earlier render is replaced.

  Args:
    config: the run's config (`config.style`).
    workdir: a patch-head run's folder (only read).
    key: PRNG key of the patches (default from `config.sample.seed`).
    output_dir: where the files go (default `workdir/style`).

  Returns:
    (float32 (H, W, C) image in [-1, 1], dict of statistics and the output paths
    "png" and "side_by_side", None on the other processes of a multi-host run).
  """
  config_checks.validate_config(config)
  side = synthesis.geometry(config).patch_size
  if not side:
    raise errors.ConfigError(
      "Style transfer needs a patch-head model (config.patch.size > 0), trained on "
      "the style image, e.g. `--config=configs/texture.py "
      "--config.data.image=starry_night.jpg`."
    )
  content = load_content(config)
  stacked, active, stages = generate.load_cascade(config, workdir)
  out_dir = output_dir or os.path.join(workdir, "style")
  outputs.ensure_output_dir(out_dir, "the style images")  # before the optimisation
  padded = patches.pad_images(jnp.asarray(content)[None], side)
  model = synthesis.build_model(config)
  run = make_stylizer(config, model, padded.shape[1:3])
  key = jax.random.key(int(config.sample.seed)) if key is None else key
  t0 = time.perf_counter()
  x, info = run(stacked, active, padded, key)
  x = np.asarray(jax.device_get(patches.crop_padding(x, side)))[0]
  seconds = time.perf_counter() - t0
  name = os.path.splitext(os.path.basename(str(config.style.content)))[0]
  name = f"{name}_gamma{float(config.style.gamma):g}"
  paths = {".png": None, "_with_content.png": None}
  if sharding.is_main_process():  # one writer in a multi-host run
    paths = outputs.write_new(
      out_dir,
      name,
      {
        ".png": functools.partial(images.write_png, np.asarray(data_lib.to_uint8(x))),
        "_with_content.png": functools.partial(
          images.write_png, images.make_grid(np.stack([content, x]), ncol=2)
        ),
      },
    )
  png, side_by_side = paths[".png"], paths["_with_content.png"]
  stats = {
    "png": png,
    "side_by_side": side_by_side,
    "stages": stages,
    "seconds": seconds,
    **{k: float(v) for k, v in info.items()},
  }
  logging.info(
    "Stylised %s (%dx%d) through %d classifiers in %.1fs: %s",
    config.style.content,
    x.shape[0],
    x.shape[1],
    int(jnp.sum(active)),
    seconds,
    png,
  )
  return x, stats
