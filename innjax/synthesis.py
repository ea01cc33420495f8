"""What training, sampling, style transfer and evaluation share: the config mapped onto
the model, the sampler and batched synthesis.

This is the one module that reads the run's config for them (as score_sde's
`get_sampling_fn(config)` does); the layers below take plain arguments:

* `geometry(config)`: whole images or the patch head, as an `energy.Geometry`;
* `build_model(config)`: the classifier of `config.model`;
* `make_synthesis_sampler` / `make_generation_sampler`: `innjax.sampler.make_sampler`
  with every setting of `config.synthesis` (and `config.sample`) passed explicitly;
* `synthesize` (batches through a jitted sampler run, one compiled shape) and
  `make_image_synthesizer` / `synthesize_images` (fresh noise through a loaded
  cascade, as `--mode=sample` makes it);
* `initial_negatives`: the noise every synthesis starts from;
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from innjax import console
from innjax import energy as energy_lib
from innjax import errors
from innjax import models
from innjax import preemption
from innjax import sampler as sampler_lib
from innjax import sharding


def geometry(config: ml_collections.ConfigDict) -> energy_lib.Geometry:
  """Whole images or the patch head (`config.patch`), as plain numbers."""
  patch = config.get("patch")  # configs saved before the patch head have none
  return energy_lib.Geometry(
    image_size=int(config.data.image_size),
    channels=int(config.data.channels),
    patch_size=int(patch.size) if patch else 0,
    patches_per_image=int(patch.patches_per_image) if patch else 0,
    average_overlaps=bool(patch.average_overlaps) if patch else True,
  )


def build_model(config: ml_collections.ConfigDict) -> models.Classifier:
  """The classifier described by `config.model` and `config.data.channels`."""
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.get(config.model.dtype)
  if dtype is None:
    raise ValueError(
      f"config.model.dtype must be 'float32' or 'bfloat16', got {config.model.dtype!r}."
    )
  return models.Classifier(
    features=tuple(config.model.features),
    kernel_size=config.model.kernel_size,
    channels=config.data.channels,
    conv_impl=config.model.conv_impl,
    dtype=dtype,
    norm=config.model.norm,
    activation=config.model.activation,
    pool=config.model.pool,
    spectral_norm=bool(config.model.spectral_norm),
  )


def sampling_stop_window(config) -> int:
  """`sample.stop_window`, or `synthesis.stop_window` for configs saved before it."""
  return int(config.sample.get("stop_window", config.synthesis.stop_window))


def make_synthesis_sampler(
  config,
  logit_fn,
  mode: str,
  max_steps: int | None = None,
  stop_window: int | None = None,
) -> sampler_lib.Sampler:
  """The sampler configured by `config.synthesis`.

  Every setting is passed to `make_sampler` explicitly, INNg's fixed ones included
  (images live in [-1, 1]; Adam's epsilon), so that the library's defaults never
  decide a run. Generation passes its own step cap and stop window from
  `config.sample`.

  Args:
    config: the run's config.
    logit_fn: one stage's logit function; a patch head's takes a PRNG key
      (`fn.needs_key`, set by `energy.make_stage_logit_fn`).
    mode: "sum" or "sequential".
    max_steps: the step cap (default `synthesis.max_steps`).
    stop_window: the early stop's window (default `synthesis.stop_window`).
  """
  syn = config.synthesis
  stop_prob = syn.stop_prob if syn.stop_prob else None
  return sampler_lib.make_sampler(
    logit_fn,
    step_size=float(syn.step_size),
    beta1=float(syn.beta1),
    beta2=float(syn.beta2),
    eps=1e-8,
    max_steps=int(max_steps or syn.max_steps),
    noise_scale=float(syn.noise_scale),
    noise_schedule=syn.noise_schedule,
    stop_prob=stop_prob,
    stop_window=int(stop_window or syn.stop_window),
    clip=(-1.0, 1.0),
    mode=mode,
    optimizer=syn.optimizer,
    strategy=syn.strategy,
    needs_key=bool(getattr(logit_fn, "needs_key", False)),
    stop_on=syn.stop_on,
    grad_clip=float(syn.grad_clip) or None,
  )


def make_generation_sampler(config, logit_fn) -> sampler_lib.Sampler:
  """The sampler `--mode=sample` and `innjax.load` run: `config.synthesis`'s optimiser
  with `config.sample`'s mode, step cap and stop window."""
  return make_synthesis_sampler(
    config,
    logit_fn,
    config.sample.mode,
    int(config.sample.max_steps),
    sampling_stop_window(config),
  )


def jit_run(s: sampler_lib.Sampler, mesh=None):
  """`jax.jit(s.run)`; with a mesh, the batch of images is split over its devices.

  The params (the cascade) come in replicated; the returned images stay batch-sharded
  and the RunInfo replicated. The early-stop test's batch mean of P(real) is then a
  global mean: the compiler adds the all-reduce inside the while loop.
  """
  if mesh is None:
    return jax.jit(s.run)

  def run(params, x0, key, mask=None, max_steps=None):
    return s.run(params, sharding.constrain_batch(x0, mesh), key, mask, max_steps)

  return jax.jit(
    run, out_shardings=(sharding.batch_sharding(mesh), sharding.replicated(mesh))
  )


def make_run_fn(config, logit_fn, mode, mesh=None):
  """Jitted sampler `run` for training-time synthesis (batch-sharded over `mesh`)."""
  return jit_run(make_synthesis_sampler(config, logit_fn, mode), mesh)


def pad_batches(x, batch_size):
  """`x` with its first images repeated up to a whole number of batches, so that every
  sampler call has one shape and compiles once (callers drop the extra outputs)."""
  remainder = (-x.shape[0]) % batch_size
  if remainder:
    x = jnp.concatenate([x, x[:remainder]])
  return x


def synthesize(
  run_fn,
  stacked,
  mask,
  x0,
  key,
  batch_size: int,
  cap,
  should_stop: preemption.StopCheck = None,
  progress=None,
):
  """Runs the sampler over `x0` in batches; returns (x, steps, mean_prob).

  `should_stop` is polled before each batch (preemption.TrainingInterrupted).
  `progress` (an `innjax.console.Progress`) counts each batch once computed.
  """
  outputs, steps, probs = [], [], []
  for i, start in enumerate(range(0, x0.shape[0], batch_size)):
    preemption.raise_if_requested(should_stop)
    x, info = run_fn(
      stacked, x0[start : start + batch_size], jax.random.fold_in(key, i), mask, cap
    )
    outputs.append(x)
    if progress is not None:
      progress.track(x)
    steps.append(jnp.sum(info.steps))
    probs.append(info.mean_prob)
  x = jnp.concatenate(outputs)
  return x, np.asarray(jax.device_get(steps)), np.asarray(jax.device_get(probs))


def sampling_batch(config, num: int, mesh) -> int:
  """The sampler's batch for `num` images; it must split evenly over the mesh."""
  batch = min(int(config.sample.batch_size), num)
  if batch % mesh.size:
    raise errors.ConfigError(
      f"Bad config: a sampling batch of {batch} images (min of sample.batch_size and "
      f"the number of images) does not split over the {mesh.size} devices of the "
      f"mesh; use a multiple of {mesh.size} for sample.batch_size and sample.num, or "
      "--config.mesh.data=1."
    )
  return batch


def make_image_synthesizer(config, size=None, mesh=None):
  """Returns `synthesize(stacked, active, num, key) -> (images, stats)`.

  The function pushes `num` images of fresh noise through a loaded cascade, as
  `--mode=sample` does, and writes nothing. Keep it to sample again: its jitted
  sampler compiles once per batch shape, where `synthesize_images` builds a new one
  at every call.

  Args:
    config: the run's config (`config.sample` controls generation).
    size: (height, width) to synthesise (default `config.sample.size`; (0, 0) is the
      training size). Sizes other than the training size need the patch head.
    mesh: the device mesh (default `sharding.make_mesh(config)`).

  Returns:
    `synthesize(stacked, active, num, key)`, for stacked cascade variables and their
    (num_slots,) mask (as `generate.load_cascade` returns them), a number of images
    and a PRNG key; it returns (float32 images (num, H, W, C) in [-1, 1] on the host,
    dict of statistics).
  """
  geo = geometry(config)
  size = energy_lib.target_hw(geo, config.sample.size if size is None else size)
  shape = energy_lib.negative_shape(geo, size)
  mesh = sharding.make_mesh(config) if mesh is None else mesh
  config = sharding.global_batch_config(config, mesh.size)
  logit_fn = energy_lib.make_stage_logit_fn(build_model(config), geo, shape[:2])
  run = jit_run(make_generation_sampler(config, logit_fn), mesh)

  def synthesize_fn(stacked, active, num: int, key):
    batch = sampling_batch(config, num, mesh)
    if not bool(jnp.any(active)):
      raise errors.CheckpointNotFoundError(
        "The cascade has no trained stage yet: train first."
      )
    noise_key, run_key = jax.random.split(key)
    x0 = initial_negatives(
      noise_key, num, shape, float(config.pool.init_std), config.pool.init
    )
    t0 = time.perf_counter()
    padded = pad_batches(x0, batch)
    with console.Progress(padded.shape[0] // batch, "sampling") as progress:
      x, steps, probs = synthesize(
        run,
        stacked,
        active,
        padded,
        run_key,
        batch,
        int(config.sample.max_steps),
        progress=progress,
      )
    x = sharding.to_host(energy_lib.crop_to_target(geo, x[:num]))
    return x, {
      "size": size,
      "kept_classifiers": int(jnp.sum(active)),
      "seconds": time.perf_counter() - t0,
      "mean_steps_per_batch": float(np.mean(steps)),
      "p_real_last": float(np.mean(probs)),
    }

  return synthesize_fn


def synthesize_images(config, stacked, active, num: int, key, size=None, mesh=None):
  """Pushes `num` images of fresh noise through a loaded cascade; writes nothing.

  One call of `make_image_synthesizer(config, size, mesh)`, which to keep when
  sampling repeatedly.

  Args:
    config: the run's config (`config.sample` controls generation).
    stacked: stacked cascade variables; active: their (num_slots,) mask (as returned
      by `generate.load_cascade`).
    num: number of images.
    key: PRNG key.
    size: (height, width) to synthesise (default `config.sample.size`; (0, 0) is the
      training size). Sizes other than the training size need the patch head.
    mesh: the device mesh (default `sharding.make_mesh(config)`).

  Returns:
    (float32 images (num, H, W, C) in [-1, 1] on the host, dict of statistics).
  """
  return make_image_synthesizer(config, size, mesh)(stacked, active, num, key)


INITS = ("gaussian", "conv_noise")


def initial_negatives(
  key, num: int, image_shape, std: float, kind: str = "gaussian"
) -> jax.Array:
  """Pseudo-negatives of stage 0 (and fresh draws when sampling), clipped to [-1, 1].

  Args:
    key: PRNG key.
    num: how many images.
    image_shape: (H, W, C).
    std: their standard deviation.
    kind: "gaussian": N(0, std^2) per pixel (paper 3.2). "conv_noise": Gaussian noise
      passed through a randomly initialised convolutional network (WINN's option),
      i.e. spatially correlated noise with blobs a few pixels wide, rescaled to `std`.

  Returns:
    (num, H, W, C) float32 images.
  """
  if kind not in INITS:
    raise ValueError(f"pool.init must be one of {INITS}, got {kind!r}.")
  if kind == "conv_noise":
    return jnp.clip(std * _conv_noise(key, num, image_shape), -1.0, 1.0)
  # Drawn flat and reshaped: XLA:CPU compiles a 4-D threefry draw ~10x slower.
  flat = jax.random.normal(key, (num * int(np.prod(image_shape)),))
  return jnp.clip(std * flat.reshape(num, *image_shape), -1.0, 1.0)


def _conv_noise(key, num: int, image_shape) -> jax.Array:
  """Noise at a quarter of the resolution through three random 3x3 convolutions
  (tanh between them), upsampled bilinearly and standardised per image: random
  blobs a few pixels wide rather than independent pixels."""
  h, w, channels = image_shape
  noise_key, net_key = jax.random.split(key)
  small = (num, -(-h // 4), -(-w // 4), channels)
  x = jax.random.normal(noise_key, (int(np.prod(small)),)).reshape(small)
  for i, width in enumerate((16, 16, channels)):
    kernel = jax.random.normal(
      jax.random.fold_in(net_key, i), (3 * 3 * x.shape[-1] * width,)
    )
    kernel = kernel.reshape(3, 3, x.shape[-1], width) / np.sqrt(9 * x.shape[-1])
    x = jax.lax.conv_general_dilated(
      x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    if i < 2:
      x = jnp.tanh(x)
  x = jax.image.resize(x, (num, h, w, channels), "bilinear")
  x = x - jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return x / (jnp.std(x, axis=(1, 2, 3), keepdims=True) + 1e-6)
