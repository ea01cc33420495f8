"""Checkpoint layout: the cascade as its own item, derived state, older checkpoints.

A step holds the items "state", "cascade" and "meta" (innjax/checkpointing.py).
Sampling reads the cascade item alone; training reads both and resumes exactly.
Steps written before the cascade had its own item (format 1: the whole TrainState,
`active` and `group_start` included, in "state") are written here the way that code
wrote them, and must still sample and resume to the same result.
"""

import os
import shutil
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import tiny
from innjax import checkpointing, cli, generate, synthesis, train


class _TrainStateV1(flax.struct.PyTreeNode):
  """The TrainState that format-1 checkpoints saved, field for field."""

  stage: Any
  params: Any
  batch_stats: Any
  opt_state: Any
  cascade: Any
  active: Any
  pool: Any
  negatives: Any
  group_start: Any
  key: Any


def _config(**overrides):
  config = tiny.get_config()
  config.checkpoint.async_save = False
  return cli.with_overrides(config, overrides)


def _raw(state):
  """`state` with its PRNG key as plain data, so that trees compare leaf by leaf."""
  return state.replace(key=jax.random.key_data(state.key))


def _assert_trees_equal(a, b):
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  jax.tree_util.tree_map(
    lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b
  )


def _restore(workdir, config):
  model = synthesis.build_model(config)
  template = jax.eval_shape(lambda: train.init_state(config, model, jax.random.key(0)))
  manager = checkpointing.Manager(str(workdir), config, read_only=True)
  try:
    return manager.restore_latest(template)
  finally:
    manager.close()


def _write_format_1(workdir, config, state):
  """Saves `state` as the code before the cascade item did: one "state" item."""
  old = _TrainStateV1(
    stage=state.stage,
    params=state.params,
    batch_stats=state.batch_stats,
    opt_state=state.opt_state,
    cascade=state.cascade,
    active=state.active,
    pool=state.pool,
    negatives=state.negatives,
    group_start=(state.negatives if state.group_start is None else state.group_start),
    key=jax.random.key_data(state.key),
  )
  manager = ocp.CheckpointManager(
    os.path.abspath(os.path.join(workdir, "checkpoints")),
    options=ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False),
    item_names=("state", "meta"),
  )
  meta = {"config": checkpointing.config_to_dict(config), "stage": int(state.stage)}
  manager.save(
    int(state.stage),
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(old), meta=ocp.args.JsonSave(meta)
    ),
  )
  manager.wait_until_finished()
  manager.close()


def _copy_steps(source, destination, last):
  """A workdir holding `source`'s checkpoint steps up to `last`."""
  for step in range(1, last + 1):
    shutil.copytree(
      os.path.join(source, "checkpoints", str(step)),
      os.path.join(destination, "checkpoints", str(step)),
    )
  return str(destination)


@pytest.fixture(scope="module", params=["inng", "inng_compressed"])
def reference(request, tmp_path_factory):
  """(config, workdir, final state) of an uninterrupted tiny run of each variant."""
  config = _config(variant=request.param, keep_every=2)
  workdir = tmp_path_factory.mktemp(request.param)
  return config, str(workdir), train.train(config, str(workdir))


def test_the_active_mask_follows_from_the_stage():
  config = _config(variant="inng_compressed", keep_every=2, num_stages=5)
  model = synthesis.build_model(config)
  state = train.init_state(config, model, jax.random.key(0))
  masks = [state.replace(stage=jnp.int32(t)).active.tolist() for t in range(6)]
  # Stages 1-2 train slot 0, 3-4 slot 1, 5 slot 2.
  assert masks == [
    [False] * 3,
    [True, False, False],
    [True, False, False],
    [True, True, False],
    [True, True, False],
    [True] * 3,
  ]


def test_group_start_is_kept_only_by_the_compressed_variant(reference):
  config, workdir, final = reference
  restored = _restore(workdir, config)
  if config.variant == "inng_compressed":
    # Stage 3 opens the second group, which starts from stage 2's negatives.
    assert restored.group_start.shape == final.negatives.shape
    _assert_trees_equal(restored.group_start, final.group_start)
  else:
    assert final.group_start is None and restored.group_start is None
  _assert_trees_equal(_raw(restored), _raw(final))


def test_sampling_reads_the_cascade_item_alone(reference, tmp_path):
  config, workdir, final = reference
  run = _copy_steps(workdir, tmp_path / "run", 3)
  step = os.path.join(run, "checkpoints", "3")
  assert sorted(n for n in os.listdir(step) if not n.startswith(("_", "commit"))) == [
    "cascade",
    "meta",
    "state",
  ]
  # Without the pool, negatives and classifier, the cascade still loads...
  shutil.rmtree(os.path.join(step, "state"))
  stacked, active, stages = generate.load_cascade(config, run)
  assert stages == 3 and bool(jnp.all(active))
  _assert_trees_equal(stacked, final.cascade)
  _assert_trees_equal(active, final.active)
  # ... while resuming training, which needs them, names the step as damaged.
  with pytest.raises(checkpointing.CorruptCheckpointError, match="missing state"):
    _restore(run, config)


def test_a_format_1_checkpoint_samples_the_same_cascade(reference, tmp_path):
  config, _, final = reference
  old = tmp_path / "old"
  _write_format_1(old, config, final)
  assert sorted(os.listdir(old / "checkpoints" / "3")) == [
    "_CHECKPOINT_METADATA",
    "commit_success.txt",
    "meta",
    "state",
  ]
  stacked, active, stages = generate.load_cascade(config, str(old))
  assert stages == 3
  _assert_trees_equal(stacked, final.cascade)
  _assert_trees_equal(active, final.active)


def test_a_format_1_checkpoint_resumes_exactly(reference, tmp_path):
  config, workdir, final = reference
  after_stage_1 = _restore(_copy_steps(workdir, tmp_path / "new", 1), config)
  old = str(tmp_path / "old")
  _write_format_1(old, config, after_stage_1)
  _assert_trees_equal(_raw(_restore(old, config)), _raw(after_stage_1))
  resumed = train.train(config, old)
  _assert_trees_equal(_raw(resumed), _raw(final))
  # The steps that the resumed run wrote have the new layout.
  assert "cascade" in os.listdir(os.path.join(old, "checkpoints", "3"))
