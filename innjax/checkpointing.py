"""Orbax checkpoints of the whole training state, with a config compatibility check.

Each completed stage is saved as one Orbax step: the `TrainState` pytree (cascade,
classifier, optimizer state, pool, negatives, PRNG key, stage index) and, as JSON,
the config it was trained with. Orbax writes every step to a temporary folder and
renames it when complete, so a run killed at any moment leaves the previous steps
loadable; nothing here writes anywhere else in the checkpoint folder.

A workdir is tied to the settings that fix the shapes of the saved state (model,
image size, variant, stage count, pool size); resuming with different ones is refused
with a message naming them. Other settings (learning rates, step caps, logging) may
change between runs, which is how a diverged run is resumed with a lower rate.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from typing import Any

from absl import logging
import jax
import ml_collections
import orbax.checkpoint as ocp

# Config entries that determine the shapes of the saved state.
STRUCTURAL_KEYS = (
    "variant", "num_stages", "keep_every", "model.features", "model.kernel_size",
    "data.image_size", "data.channels", "pool.capacity", "pool.negatives_per_stage",
)


class IncompatibleCheckpointError(ValueError):
  """The workdir holds a checkpoint trained with a different architecture."""


def _lookup(config: dict, dotted: str):
  node = config
  for part in dotted.split("."):
    if not isinstance(node, dict) or part not in node:
      return None
    node = node[part]
  return list(node) if isinstance(node, (list, tuple)) else node


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  """A JSON-safe dict of the config."""
  return json.loads(config.to_json_best_effort())


def structural_differences(saved: dict, current: dict) -> list[str]:
  """Lines "key: saved -> current" for each structural key that differs."""
  diffs = []
  for key in STRUCTURAL_KEYS:
    if key == "keep_every" and current.get("variant") != "inng_compressed" \
        and saved.get("variant") != "inng_compressed":
      continue
    a, b = _lookup(saved, key), _lookup(current, key)
    if a != b:
      diffs.append(f"{key}: {a!r} in the checkpoint, {b!r} now")
  return diffs


def ensure_writable(workdir: str) -> None:
  """Creates `workdir` and checks that files can be written there, with clear errors."""
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write_test_"):
      pass
  except OSError as err:
    if err.errno == errno.ENOSPC:
      raise OSError(err.errno, f"The disk holding workdir {workdir!r} is full; free "
                    "space or choose another --workdir.") from err
    raise OSError(err.errno, f"Cannot write to workdir {workdir!r} ({err.strerror}); "
                  "choose a writable --workdir.") from err


def _to_saveable(state):
  """Typed PRNG keys are stored as their raw uint32 data."""
  return state.replace(key=jax.random.key_data(state.key))


def _saveable_template(template):
  key_data = jax.eval_shape(jax.random.key_data, template.key)
  return template.replace(key=key_data)


class Manager:
  """Saves and restores a run's TrainState under `workdir/checkpoints`.

  Args:
    workdir: the run's folder.
    config: the run's config (saved beside every step as JSON).
  """

  def __init__(self, workdir: str, config: ml_collections.ConfigDict):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.config = config
    options = ocp.CheckpointManagerOptions(
        max_to_keep=int(config.checkpoint.max_to_keep) or None,
        enable_async_checkpointing=bool(config.checkpoint.async_save),
        create=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "meta"))

  def latest_step(self):
    """The newest complete step, or None."""
    return self._manager.latest_step()

  def saved_config(self, step=None) -> dict | None:
    """The config JSON stored with `step` (default: the latest), or None."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    restored = self._manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))
    return restored["meta"]["config"]

  def check_compatible(self) -> None:
    """Raises IncompatibleCheckpointError if the saved run has another architecture."""
    saved = self.saved_config()
    if saved is None:
      return
    diffs = structural_differences(saved, config_to_dict(self.config))
    if diffs:
      raise IncompatibleCheckpointError(
          f"The checkpoint in {self.directory} was trained with a different "
          "configuration:\n  " + "\n  ".join(diffs) +
          "\nUse a new --workdir for this config, or run with the original settings "
          "to resume. Nothing was changed on disk.")

  def restore_latest(self, template) -> Any:
    """Restores the newest step into the structure of `template`, or returns None.

    Args:
      template: an abstract TrainState (`jax.eval_shape` of the initial state).
    """
    step = self.latest_step()
    if step is None:
      return None
    self.check_compatible()
    target = _saveable_template(template)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target)))
    except (ValueError, KeyError, TypeError) as err:
      raise IncompatibleCheckpointError(
          f"Checkpoint step {step} in {self.directory} does not match this config's "
          f"state ({err}). Use a new --workdir. Nothing was changed on disk.") from err
    state = restored["state"]
    return state.replace(key=jax.random.wrap_key_data(state.key))

  def save(self, step: int, state) -> None:
    """Saves `state` as `step` (asynchronously when configured)."""
    meta = {"config": config_to_dict(self.config), "stage": int(step)}
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_to_saveable(state)),
        meta=ocp.args.JsonSave(meta)))

  def wait_until_finished(self) -> None:
    """Blocks until pending asynchronous saves are committed."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
