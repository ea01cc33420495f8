"""Generation from a trained cascade (paper 3.3): fresh noise through the kept stages.

Starting from N(0, 0.3^2) noise, x is pushed through the kept classifiers in order,
each until it crosses that classifier's decision boundary (`sample.mode="sequential"`,
the paper's procedure), or the summed energy of all of them is ascended at once
(`sample.mode="sum"`). Writes a PNG grid and an `.npz` of float images in [-1, 1].

Patch-head models (textures) synthesise any size (`sample.size`, e.g. 512x512 from a
model trained on 256x256): the noise gets half a patch of padding per side, the number
of patches per step grows with the area, and the padding is cropped away at the end.
"""

from __future__ import annotations

import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from innjax import checkpointing
from innjax import console
from innjax import energy as energy_lib
from innjax import images
from innjax import sharding
from innjax import train


def load_cascade(config, workdir, mesh=None):
  """Restores the trained cascade and its active-slot mask from `workdir`.

  Args:
    config: the run's config.
    workdir: a trained run's folder.
    mesh: restore onto this mesh (default: `sharding.make_mesh(config)`); a checkpoint
      saved on any number of devices restores on any other.

  Returns:
    (stacked variables, active mask, completed stages), replicated over the mesh.

  Raises:
    FileNotFoundError: no checkpoint; ValueError: it holds no trained stage.
  """
  manager = checkpointing.Manager(workdir, config, read_only=True)
  if manager.latest_step() is None:
    raise FileNotFoundError(
        f"No checkpoint in {os.path.join(workdir, 'checkpoints')}: train first with "
        f"`python main.py --config=... --workdir={workdir}`.")
  model = train.build_model(config)
  template = jax.eval_shape(
      lambda: train.init_state(config, model, jax.random.key(0)))
  mesh = sharding.make_mesh(config) if mesh is None else mesh
  state = manager.restore_latest(sharding.with_shardings(
      template, sharding.state_shardings(template, mesh)))
  manager.close()
  if not bool(jnp.any(state.active)):
    raise ValueError(f"The checkpoint in {workdir} has no trained stage yet: train first.")
  return state.cascade, state.active, int(state.stage)


def _sampling_batch(config, num: int, mesh) -> int:
  """The sampler's batch for `num` images; it must split evenly over the mesh."""
  batch = min(int(config.sample.batch_size), num)
  if batch % mesh.size:
    raise ValueError(
        f"Bad config: a sampling batch of {batch} images (min of sample.batch_size and "
        f"the number of images) does not split over the {mesh.size} devices of the "
        f"mesh; use a multiple of {mesh.size} for sample.batch_size and sample.num, or "
        "--config.mesh.data=1.")
  return batch


def synthesize_images(config, stacked, active, num: int, key, size=None, mesh=None):
  """Pushes `num` images of fresh noise through a loaded cascade; writes nothing.

  Args:
    config: the run's config (`config.sample` controls generation).
    stacked: stacked cascade variables; active: their (num_slots,) mask (as returned
      by `load_cascade`).
    num: number of images.
    key: PRNG key.
    size: (height, width) to synthesise (default `config.sample.size`; (0, 0) is the
      training size). Sizes other than the training size need the patch head.
    mesh: the device mesh (default `sharding.make_mesh(config)`).

  Returns:
    (float32 images (num, H, W, C) in [-1, 1] on the host, dict of statistics).
  """
  size = energy_lib.target_hw(config, config.sample.size if size is None else size)
  shape = energy_lib.negative_shape(config, size)
  mesh = sharding.make_mesh(config) if mesh is None else mesh
  config = sharding.global_batch_config(config, mesh.size)
  batch = _sampling_batch(config, num, mesh)
  if not bool(jnp.any(active)):
    raise ValueError("The cascade has no trained stage yet: train first.")
  model = train.build_model(config)
  logit_fn = energy_lib.make_energy(config, model, shape[:2])
  run = train.jit_run(train.make_synthesis_sampler(
      config, logit_fn, config.sample.mode, int(config.sample.max_steps)), mesh)
  noise_key, run_key = jax.random.split(key)
  x0 = train.initial_negatives(noise_key, num, shape, float(config.pool.init_std),
                               config.pool.init)
  t0 = time.perf_counter()
  padded = train._pad_batches(x0, batch)
  with console.Progress(padded.shape[0] // batch, "sampling") as progress:
    x, steps, probs = train.synthesize(
        run, stacked, active, padded, run_key, batch, int(config.sample.max_steps),
        progress=progress)
  x = sharding.to_host(energy_lib.crop_to_target(config, x[:num]))
  return x, {"size": size, "kept_classifiers": int(jnp.sum(active)),
             "seconds": time.perf_counter() - t0,
             "mean_steps_per_batch": float(np.mean(steps)),
             "p_real_last": float(np.mean(probs))}


def generate(config, workdir: str, num: int | None = None, key=None, size=None):
  """Generates `num` images from the cascade in `workdir` and writes them there.

  Args:
    config: the run's config (`config.sample` controls generation).
    workdir: a trained run's folder.
    num: number of images (default config.sample.num).
    key: PRNG key (default from config.sample.seed).
    size: (height, width) to synthesise (default `config.sample.size`; (0, 0) is the
      training size). Sizes other than the training size need the patch head.

  Returns:
    (images float32 (num, H, W, C), dict of output paths and statistics).
  """
  train.validate_config(config)
  size = energy_lib.target_hw(config, config.sample.size if size is None else size)
  energy_lib.negative_shape(config, size)  # checks the size before loading
  mesh = sharding.make_mesh(config)
  num = int(num or config.sample.num)
  _sampling_batch(sharding.global_batch_config(config, mesh.size), num, mesh)
  stacked, active, stages = load_cascade(config, workdir, mesh)
  key = jax.random.key(int(config.sample.seed)) if key is None else key
  x, stats = synthesize_images(config, stacked, active, num, key, size, mesh)
  out_dir = os.path.join(workdir, "samples")
  name = f"samples_stage{stages:03d}"
  if size != energy_lib.target_hw(config):
    name += f"_{size[0]}x{size[1]}"
  png = os.path.join(out_dir, f"{name}.png")
  npz = os.path.join(out_dir, f"{name}.npz")
  if sharding.is_main_process():  # one writer in a multi-host run
    os.makedirs(out_dir, exist_ok=True)
    images.save_grid(x, png)
    np.savez_compressed(npz, images=x)
  stats = {"png": png, "npz": npz, "stages": stages, **stats}
  logging.info("Generated %d images through %d classifiers in %.1fs: %s", num,
               stats["kept_classifiers"], stats["seconds"], png)
  return x, stats
