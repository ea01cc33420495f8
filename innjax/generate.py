"""Generation from a trained cascade (paper 3.3): fresh noise through the kept stages.

Starting from N(0, 0.3^2) noise, x is pushed through the kept classifiers in order,
each until it crosses that classifier's decision boundary (`sample.mode="sequential"`,
the paper's procedure), or the summed energy of all of them is ascended at once
(`sample.mode="sum"`). Writes a PNG grid and an `.npz` of float images in [-1, 1],
under a new name each time (earlier samples are never replaced).

Patch-head models (textures) synthesise any size (`sample.size`, e.g. 512x512 from a
model trained on 256x256): the noise gets half a patch of padding per side, the number
of patches per step grows with the area, and the padding is cropped away at the end.

This module loads the cascade and writes the files; the sampling itself
(`synthesis.synthesize_images`) is shared with evaluation.
"""

from __future__ import annotations

import functools
import os

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from innjax import checkpointing
from innjax import config_checks
from innjax import energy as energy_lib
from innjax import errors
from innjax import images
from innjax import outputs
from innjax import sharding
from innjax import synthesis
from innjax import train


def _newest_step(workdir, config):
  """The newest committed step in `workdir`, or None."""
  manager = checkpointing.Manager(workdir, config, read_only=True)
  try:
    return manager.latest_step()
  finally:
    manager.close()


def _restore_newest(workdir, config, target, attempts: int = 3):
  """The newest step's cascade, also while a training run saves beside us.

  Only the cascade item is read (`Manager.restore_latest_cascade`): the pool and the
  negatives, most of a step, are left on disk.

  Training deletes the steps beyond `checkpoint.max_to_keep` as it saves new ones, so
  the step a reader picked can disappear while it is read. That read is then retried
  from the new newest step; a step that cannot be read while it is still the newest is
  damaged, and its error (which says what to do) stands.
  """
  attempt = 1
  while True:
    manager = checkpointing.Manager(workdir, config, read_only=True)
    step = manager.latest_step()
    try:
      return manager.restore_latest_cascade(target)
    except checkpointing.CorruptCheckpointError:
      if attempt == attempts or _newest_step(workdir, config) == step:
        raise
      logging.info(
        "Checkpoint step %s was replaced by a newer one while it was read "
        "(a training run is saving); reading the newest.",
        step,
      )
    finally:
      manager.close()
    attempt += 1


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
    CheckpointNotFoundError (a FileNotFoundError): no checkpoint, or it holds no
      trained stage.
  """
  if _newest_step(workdir, config) is None:
    raise errors.CheckpointNotFoundError(
      f"No checkpoint in {os.path.join(workdir, 'checkpoints')}: train first with "
      f"`python main.py --config=... --workdir={workdir}`."
    )
  model = synthesis.build_model(config)
  template = jax.eval_shape(lambda: train.init_state(config, model, jax.random.key(0)))
  mesh = sharding.make_mesh(config) if mesh is None else mesh
  stacked, active, stages = _restore_newest(
    workdir,
    config,
    sharding.with_shardings(template, sharding.state_shardings(template, mesh)),
  )
  if not bool(jnp.any(active)):
    raise errors.CheckpointNotFoundError(
      f"The checkpoint in {workdir} has no trained stage yet: train first."
    )
  return stacked, active, stages


def write_summary(folder: str, stages: int, name: str, x) -> None:
  """Adds the samples' grid to TensorBoard events in `folder` (process 0 only).

  Its tag is `samples/NAME` and its step the number of trained stages, so that
  `tensorboard --logdir WORKDIR` shows it as the run `samples` beside training's
  negatives.
  """
  writer = images.make_writer(folder)
  writer.write_images(stages, {f"samples/{name}": images.make_grid(x)})
  writer.close()


# Moved to innjax/synthesis.py (shared with evaluation); this name stays for the code
# that docs/library.md shows.
synthesize_images = synthesis.synthesize_images


def sample_name(stages: int, num: int, seed: int | None, size=None) -> str:
  """The file name (without extension) of `num` samples from a `stages`-stage cascade.

  `samples_stage003_n8_seed0`, then `_HxW` when `size` is given (not the training
  size). `seed` is left out when None (a caller's own key).
  """
  name = f"samples_stage{stages:03d}_n{num}"
  if seed is not None:
    name += f"_seed{seed}"
  if size is not None:
    name += f"_{size[0]}x{size[1]}"
  return name


def generate(
  config,
  workdir: str,
  num: int | None = None,
  key=None,
  size=None,
  output_dir: str | None = None,
):
  """Generates `num` images from the cascade in `workdir` and writes them.

  The PNG grid and the `.npz` go to `output_dir` (default `workdir/samples`) as
  `sample_name(...)` plus `.png` and `.npz`; when a file of that name exists, the
  name gets `-2`, `-3`, ... so that no earlier output is replaced. Each file is
  written whole or not at all (innjax/outputs.py).

  Args:
    config: the run's config (`config.sample` controls generation).
    workdir: a trained run's folder (only read).
    num: number of images (default config.sample.num).
    key: PRNG key (default from config.sample.seed).
    size: (height, width) to synthesise (default `config.sample.size`; (0, 0) is the
      training size). Sizes other than the training size need the patch head.
    output_dir: where the files go (default `workdir/samples`).

  Returns:
    (images float32 (num, H, W, C), dict of statistics and the output paths "png"
    and "npz", which are None on the other processes of a multi-host run).

  Raises:
    OSError: the output folder is not writable (checked before sampling).
  """
  config_checks.validate_config(config)
  geometry = synthesis.geometry(config)
  size = energy_lib.target_hw(geometry, config.sample.size if size is None else size)
  energy_lib.negative_shape(geometry, size)  # checks the size before loading
  mesh = sharding.make_mesh(config)
  num = int(num or config.sample.num)
  synthesis.sampling_batch(sharding.global_batch_config(config, mesh.size), num, mesh)
  stacked, active, stages = load_cascade(config, workdir, mesh)
  out_dir = output_dir or os.path.join(workdir, "samples")
  # Before sampling, which can take hours; on every host, so all stop together.
  outputs.ensure_output_dir(out_dir, "the samples")
  name = sample_name(
    stages,
    num,
    int(config.sample.seed) if key is None else None,
    None if size == energy_lib.target_hw(geometry) else size,
  )
  key = jax.random.key(int(config.sample.seed)) if key is None else key
  x, stats = synthesis.synthesize_images(config, stacked, active, num, key, size, mesh)
  paths = {".png": None, ".npz": None}
  if sharding.is_main_process():  # one writer in a multi-host run
    paths = outputs.write_new(
      out_dir,
      name,
      {
        ".png": functools.partial(images.write_png, images.make_grid(x)),
        ".npz": lambda f: np.savez_compressed(f, images=x),
      },
    )
  stats = {"png": paths[".png"], "npz": paths[".npz"], "stages": stages, **stats}
  write_summary(out_dir, stages, name, x)
  logging.info(
    "Generated %d images through %d classifiers in %.1fs: %s",
    num,
    stats["kept_classifiers"],
    stats["seconds"],
    paths[".png"],
  )
  return x, stats
