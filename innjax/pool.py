"""The pseudo-negative pool: every stage's negatives, drawn with more weight on recent ones.

The classification step of stage t trains on positives against pseudo-negatives of all
earlier stages ("we also keep a subset of pseudo-negatives from earlier stages to
increase stability", paper 3.2.1), drawing recent stages more often (the authors'
texture code weights a stage of age a by 0.5^a). The pool is a fixed-capacity ring
buffer held on the device as a pytree, so adding and drawing are jittable and the pool
is checkpointed with the rest of the training state. Negatives stay float32: they are
points of an optimisation, and 8-bit quantisation would move them off it.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


class Pool(flax.struct.PyTreeNode):
  """A ring buffer of pseudo-negatives.

  Attributes:
    images: (capacity, H, W, C) float32 negatives.
    stage: (capacity,) int32, the stage that synthesised each slot; -1 = empty.
    next_slot: int32 scalar, where the next negative is written (oldest first).
  """

  images: jax.Array
  stage: jax.Array
  next_slot: jax.Array

  @property
  def capacity(self) -> int:
    return self.images.shape[0]


def create(capacity: int, image_shape) -> Pool:
  """Returns an empty pool.

  Args:
    capacity: the most negatives kept; beyond it the oldest are overwritten.
    image_shape: (H, W, C) of one negative.

  Returns:
    An empty `Pool`.
  """
  if capacity < 1:
    raise ValueError(f"pool capacity must be >= 1, got {capacity}.")
  return Pool(
    images=jnp.zeros((capacity, *image_shape), jnp.float32),
    stage=jnp.full((capacity,), -1, jnp.int32),
    next_slot=jnp.zeros((), jnp.int32),
  )


def add(pool: Pool, negatives: jax.Array, stage) -> Pool:
  """Writes `negatives` (N, H, W, C) from `stage` into the pool, oldest slots first.

  If N exceeds the capacity only the last `capacity` negatives are kept.
  """
  n = negatives.shape[0]
  if n > pool.capacity:
    negatives, n = negatives[-pool.capacity :], pool.capacity
  slots = (pool.next_slot + jnp.arange(n)) % pool.capacity
  return pool.replace(
    images=pool.images.at[slots].set(negatives.astype(jnp.float32)),
    stage=pool.stage.at[slots].set(jnp.asarray(stage, jnp.int32)),
    next_slot=(pool.next_slot + n) % pool.capacity,
  )


def size(pool: Pool) -> jax.Array:
  """The number of filled slots."""
  return jnp.sum(pool.stage >= 0)


def draw_weights(pool: Pool, age_decay: float) -> jax.Array:
  """Per-slot draw probabilities: age_decay ** age, empty slots 0.

  A negative's age is counted in stages back from the newest stage in the pool, so
  the newest negatives have weight 1 whichever stage is training.

  Args:
    pool: the pool.
    age_decay: 1.0 gives the uniform draw; 0.5 is the authors' texture setting.

  Returns:
    (capacity,) probabilities summing to 1 (uniform over filled slots if decay=1).
  """
  filled = pool.stage >= 0
  newest = jnp.max(jnp.where(filled, pool.stage, 0))
  age = (newest - pool.stage).astype(jnp.float32)
  weights = jnp.where(filled, jnp.power(jnp.float32(age_decay), age), 0.0)
  return weights / jnp.maximum(jnp.sum(weights), 1e-30)


def sample(pool: Pool, key: jax.Array, num: int, age_decay: float = 0.5) -> jax.Array:
  """Draws `num` negatives (with replacement) with age-decayed weights.

  Args:
    pool: a non-empty pool.
    key: PRNG key.
    num: how many to draw (static).
    age_decay: weight of a stage of age a is age_decay ** a; 1.0 is uniform.

  Returns:
    (num, H, W, C) float32 negatives.
  """
  probs = draw_weights(pool, age_decay)
  idx = jax.random.choice(key, pool.capacity, (num,), p=probs)
  return pool.images[idx]
