"""Tests for innjax.pool: ring-buffer order, age-weighted draws, float32 storage."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from innjax import pool as pool_lib


def _pool_with_stages(capacity, per_stage, stages):
  pool = pool_lib.create(capacity, (2, 2, 1))
  for s in range(stages):
    pool = pool_lib.add(pool, jnp.full((per_stage, 2, 2, 1), s + 0.25), s)
  return pool


def test_oldest_negatives_are_dropped_first():
  pool = _pool_with_stages(capacity=6, per_stage=4, stages=3)
  assert int(pool_lib.size(pool)) == 6
  # 12 negatives through 6 slots: stage 0 is gone, stage 1 keeps its last 2.
  assert sorted(np.asarray(pool.stage).tolist()) == [1, 1, 2, 2, 2, 2]


def test_negatives_stay_float32_unquantised():
  pool = pool_lib.create(4, (1, 1, 1))
  value = jnp.array([[[[0.123456789]]]], jnp.float32)
  pool = pool_lib.add(pool, value, 0)
  assert pool.images.dtype == jnp.float32
  assert float(pool.images[0, 0, 0, 0]) == float(value[0, 0, 0, 0])


@pytest.mark.parametrize("decay", [0.5, 1.0])
def test_age_weighted_draw_frequencies(decay):
  pool = _pool_with_stages(capacity=30, per_stage=10, stages=3)
  draws = jax.jit(lambda k: pool_lib.sample(pool, k, 20000, decay))(jax.random.key(0))
  stages = np.round(np.asarray(draws[:, 0, 0, 0]) - 0.25).astype(int)
  freq = np.bincount(stages, minlength=3) / len(stages)
  weights = np.array([decay**2, decay, 1.0])
  np.testing.assert_allclose(freq, weights / weights.sum(), atol=0.02)


def test_empty_slots_are_never_drawn():
  pool = _pool_with_stages(capacity=100, per_stage=5, stages=1)
  draws = pool_lib.sample(pool, jax.random.key(1), 500, 0.5)
  assert bool(jnp.all(draws == 0.25))


def test_bad_capacity():
  with pytest.raises(ValueError, match="capacity"):
    pool_lib.create(0, (2, 2, 1))
