"""Orbax checkpoints of training, cascade apart from the rest; config compatibility checks.

Each completed stage is saved as one Orbax step, `checkpoints/<stage>/`, of three
items: `cascade`, the stacked classifier variables and the mask of trained slots;
`state`, the rest of the `TrainState` (classifier, optimizer state, pool, negatives,
PRNG key, stage index); and `meta`, JSON holding the config it was trained with.
Training restores both arrays items; sampling, style transfer, evaluation and
export read the cascade alone, a small part of the step when the pool is large.
Steps written before the cascade had its own item (`FORMAT` 1: the whole TrainState
in `state`) still load, for training and for sampling. Orbax writes every step to a
temporary folder and renames it when complete, so a run killed at any moment leaves
the previous steps loadable; nothing here writes anywhere else in the checkpoint
folder. Temporary folders that a killed run left behind are removed when training
starts again (never by a reader such as `--mode=sample`, which may run beside a
training run).

A workdir is tied to the settings that fix the shapes of the saved state (model,
image size, variant, stage count, pool size); resuming with different ones is refused
with a message naming them. The one exception is a larger `num_stages`: the run is
extended, its preallocated cascade growing by empty slots on restore
(`grow_cascade`), and it ends exactly where a run trained to that many stages at once
would. Other settings (learning rates, step caps, logging) may
change between runs, which is how a diverged run is resumed with a lower rate. A
training run also saves a fingerprint of its training images with each step
(`innjax.data.fingerprint`), and resuming on other images is refused unless
`data.allow_new_data` is set; the fingerprint depends on the pixels, not the path.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp

from innjax import data as data_lib
from innjax import errors
from innjax import outputs

# Config entries that determine the shapes of the saved state.
STRUCTURAL_KEYS = (
  "variant",
  "num_stages",
  "keep_every",
  "model.features",
  "model.kernel_size",
  "data.image_size",
  "data.channels",
  "pool.capacity",
  "pool.negatives_per_stage",
  "patch.size",
)


# The items of a checkpoint step: "state" (the TrainState but its cascade), "cascade"
# (the stacked variables and the mask of trained slots: all that sampling reads) and
# "meta" (JSON: the config, the stage, the data fingerprint, the format).
ITEMS = ("state", "cascade", "meta")
# The layout of the steps written now. 1: before the cascade had its own item, "state"
# held the whole TrainState, with `active` and `group_start`; such steps still load.
FORMAT = 2


class IncompatibleCheckpointError(errors.CheckpointError, ValueError):
  """The workdir holds a checkpoint trained with a different architecture."""


class CorruptCheckpointError(errors.CheckpointError, ValueError):
  """The newest checkpoint step is incomplete or damaged on disk and cannot be read."""


class CheckpointSaveError(errors.CheckpointError, OSError):
  """Writing a checkpoint failed (disk full, permissions, ...); earlier steps are intact.

  `errno` is the underlying OS error number when there is one (errno.ENOSPC for a
  full disk).
  """


# Substrings of the errors that TensorStore (which writes the arrays) reports for
# OS-level write failures; it does not raise OSError itself.
_IO_FAILURES = (
  "No space left on device",
  "Disk quota exceeded",
  "Read-only file system",
  "Permission denied",
)


def _io_failure(err: BaseException) -> tuple[bool, int | None]:
  """Whether `err` (or what caused it) is an I/O failure, and its errno if known."""
  seen = set()
  node = err
  while node is not None and id(node) not in seen:
    seen.add(id(node))
    if isinstance(node, OSError):
      return True, node.errno
    text = str(node)
    if "No space left on device" in text:
      return True, errno.ENOSPC
    if any(failure in text for failure in _IO_FAILURES):
      return True, None
    node = node.__cause__ or node.__context__
  return False, None


def _first_line(err: BaseException, limit: int = 200) -> str:
  """A short description of `err` for a message (TensorStore errors run to pages)."""
  text = (str(err).strip().splitlines() or [""])[0]
  text = text if len(text) <= limit else text[:limit] + "..."
  return f"{type(err).__name__}: {text}"


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


def extends(saved: dict, current: dict) -> bool:
  """Whether `current` asks for more stages than the checkpoint's run had.

  Such a run is extended: the preallocated cascade grows on resume
  (`grow_cascade`).
  """
  before, after = _lookup(saved, "num_stages"), _lookup(current, "num_stages")
  return before is not None and after is not None and int(after) > int(before)


def structural_differences(saved: dict, current: dict) -> list[str]:
  """Lines "key: saved -> current" for each structural key that differs.

  More stages than the checkpoint's is not a difference (the run is extended);
  fewer is.
  """
  diffs = []
  for key in STRUCTURAL_KEYS:
    if (
      key == "keep_every"
      and current.get("variant") != "inng_compressed"
      and saved.get("variant") != "inng_compressed"
    ):
      continue
    if key == "num_stages" and extends(saved, current):
      continue
    a, b = _lookup(saved, key), _lookup(current, key)
    if a != b:
      diffs.append(f"{key}: {a!r} in the checkpoint, {b!r} now")
  return diffs


def ensure_writable(workdir: str) -> None:
  """Creates `workdir` and checks that files can be written there, with clear errors."""
  outputs.ensure_writable(workdir, f"workdir {workdir!r}", "choose a writable --workdir")


def _items(state) -> dict:
  """A TrainState (concrete or abstract) as the checkpoint items "state" and "cascade".

  "cascade" holds the stacked variables and the mask of trained slots, all that
  sampling needs; "state" holds every other field, with typed PRNG keys as their raw
  uint32 data (a `group_start` that the variant does not keep is left out).
  """
  fields = {
    field.name: getattr(state, field.name)
    for field in dataclasses.fields(state)
    if field.metadata.get("pytree_node", True)
  }
  cascade = fields.pop("cascade")
  if fields.get("group_start") is None:
    fields.pop("group_start", None)
  if isinstance(fields["stage"], jax.ShapeDtypeStruct):
    slots = jax.tree_util.tree_leaves(cascade)[0].shape[0]
    active = jax.ShapeDtypeStruct(
      (slots,), jnp.bool_, sharding=getattr(fields["stage"], "sharding", None)
    )
    key = jax.eval_shape(jax.random.key_data, fields["key"])
    # The key keeps its own sharding (a template from innjax.sharding.with_shardings).
    sharding = getattr(fields["key"], "sharding", None)
    fields["key"] = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=sharding)
  else:
    active = state.active
    fields["key"] = jax.random.key_data(fields["key"])
  return {"state": fields, "cascade": {"variables": cascade, "active": active}}


def _restore_target(items: dict) -> dict:
  """Abstract `items` with a sharding on every leaf, as Orbax restores them.

  A template with shardings (innjax.sharding.with_shardings) restores each array
  straight onto the current mesh, whatever mesh saved it. Leaves without one go to
  this process's first device, as a one-device run placed them: left to Orbax, they
  would need the devices that saved them.
  """
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree_util.tree_map(
    lambda a: (
      a
      if getattr(a, "sharding", None) is not None
      else jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device)
    ),
    items,
  )


def _state(items: dict, template):
  """The TrainState of restored `items`, with the static fields of `template`."""
  fields = dict(items["state"])
  fields["key"] = jax.random.wrap_key_data(fields["key"])
  return template.replace(cascade=items["cascade"]["variables"], **fields)


def _slots(config: dict) -> int:
  """The cascade slots of a run with the saved `config` (a dict)."""
  from innjax import train  # pylint: disable=g-import-not-at-top  (train imports us)

  return train.num_slots(
    ml_collections.ConfigDict(
      {
        "variant": config["variant"],
        "num_stages": int(config["num_stages"]),
        "keep_every": int(config.get("keep_every") or 1),
      }
    )
  )


def _resize_cascade(target: dict, slots: int) -> dict:
  """Restore `target` (abstract items) with `slots` cascade slots instead of its own."""

  def resize(leaf):
    return jax.ShapeDtypeStruct(
      (slots, *leaf.shape[1:]), leaf.dtype, sharding=getattr(leaf, "sharding", None)
    )

  return dict(target, cascade=jax.tree_util.tree_map(resize, target["cascade"]))


def grow_cascade(cascade: dict, like: dict) -> dict:
  """Extends a restored cascade item to the slots of `like` (inactive, zero).

  Training a run further than its checkpoint's `num_stages` keeps every trained
  slot and appends empty ones: the new stages fill them as a longer run would have,
  and the empty slots are skipped by the mask meanwhile.

  Args:
    cascade: a restored {"variables", "active"} item with fewer slots.
    like: the abstract item of the longer run (shapes, shardings).
  """

  def grow(leaf, target):
    pad = [(0, target.shape[0] - leaf.shape[0])] + [(0, 0)] * (leaf.ndim - 1)
    grown = jnp.pad(leaf, pad)
    sharding = getattr(target, "sharding", None)
    return grown if sharding is None else jax.device_put(grown, sharding)

  return jax.tree_util.tree_map(grow, cascade, like)


class Manager:
  """Saves and restores a run's TrainState under `workdir/checkpoints`.

  Args:
    workdir: the run's folder.
    config: the run's config (saved beside every step as JSON).
    read_only: for readers (sampling, evaluation): creates no folder and leaves
      temporary folders alone, since a training run may be writing beside it.
    data: training: the `innjax.data.fingerprint` of the training images, saved
      with every step; resuming on images with another fingerprint is refused
      unless `config.data.allow_new_data` is set.
  """

  def __init__(
    self,
    workdir: str,
    config: ml_collections.ConfigDict,
    read_only: bool = False,
    data: dict | None = None,
  ):
    checkpoints = os.path.join(workdir, "checkpoints")
    # Orbax reaches gs:// and other storage through etils.epath: only a local path is
    # made absolute ("gs://b" would become "$PWD/gs:/b").
    self.directory = (
      checkpoints if outputs.is_uri(checkpoints) else os.path.abspath(checkpoints)
    )
    self.config = config
    self.read_only = read_only
    self.data = data
    if read_only:
      options = ocp.CheckpointManagerOptions(
        create=False, enable_async_checkpointing=False
      )
    else:
      options = ocp.CheckpointManagerOptions(
        max_to_keep=int(config.checkpoint.max_to_keep) or None,
        enable_async_checkpointing=bool(config.checkpoint.async_save),
        # Folders of saves that a kill interrupted are never loaded; removing them
        # keeps repeated preemptions from filling the disk.
        cleanup_tmp_directories=True,
        create=True,
      )
    self._manager = ocp.CheckpointManager(
      self.directory, options=options, item_names=ITEMS
    )
    self._unconfirmed_step = None  # an asynchronous save not yet known to be committed
    self._reported = (None, None)  # (Orbax's error, our CheckpointSaveError for it)

  def latest_step(self):
    """The newest complete step, or None."""
    return self._manager.latest_step()

  def saved_meta(self, step=None) -> dict | None:
    """The JSON stored with `step` (default: the latest): its config, stage and
    data fingerprint (absent from checkpoints written before it was recorded)."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    restored = self._manager.restore(
      step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
    )
    return restored["meta"]

  def saved_config(self, step=None) -> dict | None:
    """The config JSON stored with `step` (default: the latest), or None."""
    meta = self.saved_meta(step)
    return None if meta is None else meta["config"]

  def check_compatible(self, meta: dict | None = None) -> None:
    """Raises IncompatibleCheckpointError if the saved run has another architecture.

    Args:
      meta: the `saved_meta` of the step to check (default: the latest step's).
    """
    meta = self.saved_meta() if meta is None else meta
    if meta is None:
      return
    diffs = structural_differences(meta["config"], config_to_dict(self.config))
    if diffs:
      raise IncompatibleCheckpointError(
        f"The checkpoint in {self.directory} was trained with a different "
        "configuration:\n  "
        + "\n  ".join(diffs)
        + "\nUse a new --workdir for this config, or run with the original settings "
        "to resume. Nothing was changed on disk."
      )
    self._check_same_data(meta.get("data"))

  def _check_same_data(self, saved: dict | None) -> None:
    """Refuses to resume on other training images than the checkpoint's."""
    if saved is None or self.data is None:
      return
    change = data_lib.fingerprint_change(saved, self.data)
    if change is None or self.config.data.get("allow_new_data", False):
      return
    raise IncompatibleCheckpointError(
      f"The checkpoint in {self.directory} was trained on other data ({change}); "
      "resuming would train the rest of the cascade on these images. Point the "
      "config back at the original data (its path may change), use a new "
      "--workdir, or set --config.data.allow_new_data=True to go on with the new "
      "data. Nothing was changed on disk."
    )

  def _format(self, step: int) -> int:
    """The layout of `step` (see FORMAT); 1 when its meta cannot be read."""
    try:
      return int(self.saved_meta(step).get("format", 1))
    except Exception:  # pylint: disable=broad-except  (damaged: reported elsewhere)
      return 1

  def _missing_parts(self, step: int) -> list[str]:
    """What a committed Orbax step has but `step`'s folder lacks."""
    path = os.path.join(self.directory, str(step))
    parts = (
      "_CHECKPOINT_METADATA",
      *(ITEMS if self._format(step) >= 2 else ("state", "meta")),
    )
    return [name for name in parts if not outputs.exists(os.path.join(path, name))]

  def _damaged(self, step: int, err: BaseException) -> CorruptCheckpointError:
    path = os.path.join(self.directory, str(step))
    missing = self._missing_parts(step)
    why = f"missing {', '.join(missing)}" if missing else _first_line(err)
    earlier = [s for s in self._manager.all_steps() if s < step]
    if earlier:
      fix = (
        f"To resume from step {max(earlier)}, the newest complete one, move the "
        f"damaged step aside (`mv {path} {path}.damaged`) and rerun."
      )
    else:
      fix = (
        f"There is no earlier step: move {path} aside to start over, or use a "
        "new --workdir."
      )
    return CorruptCheckpointError(
      f"Checkpoint step {step} in {self.directory} is incomplete or damaged and "
      f"cannot be read ({why}); it was not written by a completed save (a copy "
      f"cut short, or storage without atomic renames). {fix} Nothing was changed "
      "on disk."
    )

  def _read(self, step: int, target: dict, names: tuple[str, ...]) -> dict:
    """Restores the items `names` of `step` into `target` (abstract items).

    A step of FORMAT 1 holds the whole TrainState, `active` and `group_start`
    included, as its "state" item; it is read into today's items. The cascade alone
    is then read by a partial restore, which leaves the pool and negatives unread.
    """
    if self._format(step) >= 2:
      restored = self._manager.restore(
        step,
        args=ocp.args.Composite(
          **{name: ocp.args.StandardRestore(target[name]) for name in names}
        ),
      )
      return {name: restored[name] for name in names}
    cascade = target["cascade"]
    legacy = {"cascade": cascade["variables"], "active": cascade["active"]}
    if "state" not in names:
      with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as checkpointer:
        restored = checkpointer.restore(
          os.path.join(self.directory, str(step), "state"),
          args=ocp.args.PyTreeRestore(
            item=legacy,
            partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args(legacy),
          ),
        )
      return {"cascade": {"variables": restored["cascade"], "active": restored["active"]}}
    fields = target["state"]
    # Format 1 kept `group_start` in every variant: read it, and keep it only where
    # the variant uses it.
    legacy.update(fields, group_start=fields.get("group_start", fields["negatives"]))
    restored = self._manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(legacy))
    )["state"]
    return {
      "state": {name: restored[name] for name in fields},
      "cascade": {"variables": restored["cascade"], "active": restored["active"]},
    }

  def _previous_step_loads(self, step: int, target: dict, names: tuple[str, ...]) -> bool:
    """Whether the newest step before `step` restores into `target`."""
    earlier = [s for s in self._manager.all_steps() if s < step]
    if not earlier:
      return False
    try:
      self._read(max(earlier), target, names)
    except Exception:  # pylint: disable=broad-except
      return False
    return True

  def _restore_newest(self, template, names: tuple[str, ...]):
    """(step, restored items `names`) of the newest step, or (None, None).

    Args:
      template: an abstract TrainState (`jax.eval_shape` of the initial state).
      names: the items to read ("state", "cascade").

    Raises:
      IncompatibleCheckpointError: the step was trained with another architecture.
      CorruptCheckpointError: the step's files are incomplete or unreadable.
    """
    step = self.latest_step()
    if step is None:
      return None, None
    try:
      meta = self.saved_meta(step)
      self.check_compatible(meta)
    except IncompatibleCheckpointError:
      raise
    except (OSError, ValueError, KeyError, TypeError) as err:  # unreadable config JSON
      raise self._damaged(step, err) from err
    saved_config = meta["config"]
    full_target = _restore_target(_items(template))
    grown = extends(saved_config, config_to_dict(self.config))
    target = _resize_cascade(full_target, _slots(saved_config)) if grown else full_target
    try:
      restored = self._read(step, target, names)
    except (ValueError, KeyError, TypeError) as err:
      if self._missing_parts(step) or self._previous_step_loads(step, target, names):
        # The same config and code read the step before it: this one is damaged.
        raise self._damaged(step, err) from err
      raise IncompatibleCheckpointError(
        f"Checkpoint step {step} in {self.directory} does not match this config's "
        f"state ({_first_line(err)}); it was written by another architecture or "
        "another version of innjax, or its files are damaged. Use a new --workdir. "
        "Nothing was changed on disk."
      ) from err
    except Exception as err:  # pylint: disable=broad-except
      # TensorStore reports unreadable array files (truncated, missing chunks) as a
      # bare Exception; with a matching config that can only mean damaged files.
      raise self._damaged(step, err) from err
    if grown:
      if not self.read_only:
        logging.info(
          "Extending the run from %d to %d stages.",
          int(saved_config["num_stages"]),
          int(self.config.num_stages),
        )
      restored["cascade"] = grow_cascade(restored["cascade"], full_target["cascade"])
    return step, restored

  def restore_latest(self, template) -> Any:
    """Restores the newest step's TrainState into the structure of `template`.

    Args:
      template: an abstract TrainState (`jax.eval_shape` of the initial state).

    Returns:
      The TrainState, or None when there is no checkpoint.

    Raises:
      IncompatibleCheckpointError: the step was trained with another architecture.
      CorruptCheckpointError: the step's files are incomplete or unreadable.
    """
    _, restored = self._restore_newest(template, ("state", "cascade"))
    return None if restored is None else _state(restored, template)

  def restore_latest_cascade(self, template):
    """Restores only the newest step's cascade: what sampling needs.

    The pool and the negatives, most of a step's bytes, are not read.

    Args:
      template: an abstract TrainState (`jax.eval_shape` of the initial state); only
        its cascade (shapes, shardings) is used.

    Returns:
      (stacked variables, (num_slots,) bool mask of trained slots, completed stages),
      or None when there is no checkpoint.

    Raises:
      IncompatibleCheckpointError: the step was trained with another architecture.
      CorruptCheckpointError: the step's files are incomplete or unreadable.
    """
    step, restored = self._restore_newest(template, ("cascade",))
    if restored is None:
      return None
    return restored["cascade"]["variables"], restored["cascade"]["active"], step

  def _save_failed(self, step: int | None, err: BaseException) -> BaseException:
    """A CheckpointSaveError for I/O failures; any other error is returned as is.

    Args:
      step: the step being saved when `err` was raised; an asynchronous save still
        in flight is the one that failed if there is one.
      err: what Orbax raised.
    """
    if err is self._reported[0]:
      # Orbax raises a failed asynchronous save again on every later wait; keep the
      # first message, which names the stage.
      return self._reported[1]
    is_io, code = _io_failure(err)
    if not is_io:
      return err
    failed = self._unconfirmed_step if self._unconfirmed_step is not None else step
    self._unconfirmed_step = None
    complete = [
      s for s in self._manager.all_steps(read=True) if failed is None or s < failed
    ]
    kept = (
      f"step {max(complete)} is the newest complete checkpoint and is intact"
      if complete
      else "no earlier checkpoint exists"
    )
    cause = (
      "the disk is full; free space"
      if code == errno.ENOSPC
      else "check that the workdir's disk is writable and has space"
    )
    what = f"the checkpoint of stage {failed}" if failed is not None else "a checkpoint"
    error = CheckpointSaveError(
      f"Saving {what} to {self.directory} failed "
      f"({_first_line(err)}): {cause}, then rerun the same command to resume. "
      f"Nothing else was lost: {kept} (unfinished temporary folders are removed "
      "on the next start)."
    )
    error.errno = code
    self._reported = (err, error)
    return error

  def save(self, step: int, state) -> None:
    """Saves `state` as `step` (asynchronously when configured).

    Raises:
      CheckpointSaveError: this save, or the previous asynchronous one, could not be
        written; the steps committed before it are untouched.
    """
    meta = {"config": config_to_dict(self.config), "stage": int(step), "format": FORMAT}
    if self.data is not None:
      meta["data"] = self.data
    items = _items(state)
    try:
      self._manager.save(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardSave(items["state"]),
          cascade=ocp.args.StandardSave(items["cascade"]),
          meta=ocp.args.JsonSave(meta),
        ),
      )
    except Exception as err:  # pylint: disable=broad-except
      translated = self._save_failed(step, err)
      if translated is err:
        raise
      raise translated from err
    self._unconfirmed_step = step if self.config.checkpoint.async_save else None

  def wait_until_finished(self) -> None:
    """Blocks until pending asynchronous saves are committed.

    Raises:
      CheckpointSaveError: a pending save could not be written.
    """
    try:
      self._manager.wait_until_finished()
    except Exception as err:  # pylint: disable=broad-except
      translated = self._save_failed(None, err)
      if translated is err:
        raise
      raise translated from err
    self._unconfirmed_step = None

  def reached_preemption(self, step: int) -> bool:
    """Whether JAX's multi-host preemption service asks to stop at `step`.

    Always False in a single-process run, where SIGTERM is handled by
    `innjax.preemption.SignalGuard` instead.
    """
    return bool(self._manager.reached_preemption(step))

  def close(self) -> None:
    self._manager.close()
