"""A cascade of classifier stages stored as one pytree with a leading stage axis.

INNg keeps a snapshot of the classifier after every stage (paper eq. 9 and 12). Here
the snapshots (params *and* BatchNorm statistics) are stacked leaf by leaf, so a
cascade of T stages is a single pytree whose leaves have shape (T, ...). That keeps
it one jittable, shardable, checkpointable object, and lets the cascade energy

    E(x) = sum_a logit_a(x)        (the log of eq. 12, up to a constant)

be computed by mapping one `logit_fn` over the stage axis. Three strategies do that
mapping and give the same numbers: "scan" (lax.scan, one compiled stage body),
"unrolled" (a Python loop, T copies of the body) and "vmap" (all stages batched;
it holds every stage's activations at once and measured slower per stage on CPU:
benchmarks/cascade_strategies.py, docs/performance.md). An optional boolean `mask` over
stages lets a cascade be preallocated to its final length and filled in as training
proceeds without recompiling anything.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
from jax import lax

STRATEGIES = ("scan", "unrolled", "vmap")
DEFAULT_STRATEGY = "scan"

Pytree = Any


def num_stages(stacked: Pytree) -> int:
  """Returns the length of the stage axis, checking that every leaf agrees.

  Args:
    stacked: a pytree whose leaves all have the same leading (stage) dimension.

  Returns:
    The number of stages.
  """
  leaves = jax.tree_util.tree_leaves(stacked)
  if not leaves:
    raise ValueError("The stacked cascade is an empty pytree (no arrays).")
  sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
  if None in sizes:
    raise ValueError(
      "A leaf of the stacked cascade is a scalar; every leaf needs a leading "
      "stage axis (build it with innjax.cascade.stack)."
    )
  if len(sizes) != 1:
    paths = [
      (jax.tree_util.keystr(path), jnp.shape(leaf)[0])
      for path, leaf in jax.tree_util.tree_leaves_with_path(stacked)
    ]
    raise ValueError(
      "The leaves of the stacked cascade disagree on the stage axis: "
      f"sizes {sorted(sizes)}; e.g. {paths[:4]}."
    )
  return sizes.pop()


def stack(stages: Sequence[Pytree]) -> Pytree:
  """Stacks per-stage variables into one cascade pytree with a leading stage axis.

  Args:
    stages: a non-empty list of pytrees of identical structure and shapes, e.g. the
      `{"params", "batch_stats"}` of each stage's classifier.

  Returns:
    A pytree of the same structure whose leaves have shape (len(stages), ...).
  """
  if not stages:
    raise ValueError("stack() needs at least one stage.")
  first = jax.tree_util.tree_structure(stages[0])
  for i, stage in enumerate(stages[1:], start=1):
    if jax.tree_util.tree_structure(stage) != first:
      raise ValueError(
        f"Stage {i} has a different pytree structure from stage 0; all stages "
        "must come from the same classifier architecture."
      )
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *stages)


def append(stacked: Optional[Pytree], stage: Pytree) -> Pytree:
  """Returns the cascade with `stage` added at the end (`stacked` may be None)."""
  if stacked is None:
    return stack([stage])
  num_stages(stacked)
  try:
    return jax.tree_util.tree_map(
      lambda s, x: jnp.concatenate([s, jnp.asarray(x)[None]]), stacked, stage
    )
  except ValueError as err:
    raise ValueError(
      f"Cannot append a stage whose structure or shapes differ from the cascade's: {err}"
    ) from err


def get_stage(stacked: Pytree, index) -> Pytree:
  """Returns the variables of one stage (index may be traced)."""
  return jax.tree_util.tree_map(
    lambda leaf: lax.dynamic_index_in_dim(leaf, index, keepdims=False), stacked
  )


def unstack(stacked: Pytree) -> list:
  """Returns the list of per-stage pytrees."""
  return [get_stage(stacked, i) for i in range(num_stages(stacked))]


def select(stacked: Pytree, indices) -> Pytree:
  """Returns the cascade restricted to the stages at `indices` (in that order)."""
  indices = jnp.asarray(indices, jnp.int32)
  return jax.tree_util.tree_map(lambda leaf: leaf[indices], stacked)


def keep_every(stacked: Pytree, every: int) -> Pytree:
  """INNg-compressed: keeps the last stage of every group of `every` stages.

  With T stages and every=b this keeps stages b, 2b, ... (1-based), i.e. 0-based
  indices b-1, 2b-1, ...; a trailing incomplete group keeps its last stage too, so
  the newest classifier is never dropped.

  Args:
    stacked: the cascade.
    every: the group size b >= 1.

  Returns:
    The compressed cascade.
  """
  if not isinstance(every, int) or every < 1:
    raise ValueError(f"every must be a positive integer, got {every!r}.")
  total = num_stages(stacked)
  keep = list(range(every - 1, total, every))
  if not keep or keep[-1] != total - 1:
    keep.append(total - 1)
  return select(stacked, keep)


def keep_last(stacked: Pytree) -> Pytree:
  """INNg-single: keeps only the newest stage (stage axis of length 1)."""
  total = num_stages(stacked)
  return select(stacked, [total - 1])


def stage_logits(
  logit_fn: Callable,
  stacked: Pytree,
  x: jax.Array,
  strategy: str = DEFAULT_STRATEGY,
  mask: Optional[jax.Array] = None,
) -> jax.Array:
  """Evaluates every stage on `x`.

  Args:
    logit_fn: pure fn(stage_variables, x) -> logits of shape (batch,).
    stacked: the cascade (leading stage axis).
    x: the input batch.
    strategy: "scan", "unrolled" or "vmap".
    mask: optional boolean (num_stages,); inactive stages give logits of 0 (with
      "scan" they are skipped, not evaluated).

  Returns:
    float32 logits of shape (num_stages, batch) when a mask is given; otherwise in
    `logit_fn`'s dtype.
  """
  _check_strategy(strategy)
  total = num_stages(stacked)
  mask = check_mask(mask, total)
  if strategy == "scan" and mask is not None:
    shape = jax.eval_shape(lambda: logit_fn(get_stage(stacked, 0), x)).shape

    def body(carry, inputs):
      stage, is_active = inputs
      return carry, lax.cond(
        is_active,
        lambda s: logit_fn(s, x).astype(jnp.float32),
        lambda s: jnp.zeros(shape, jnp.float32),
        stage,
      )

    _, out = lax.scan(body, None, (stacked, mask))
    return out
  if strategy == "vmap":
    out = jax.vmap(logit_fn, in_axes=(0, None))(stacked, x)
  elif strategy == "unrolled":
    out = jnp.stack([logit_fn(get_stage(stacked, i), x) for i in range(total)])
  else:
    _, out = lax.scan(lambda c, stage: (c, logit_fn(stage, x)), None, stacked)
  if mask is None:
    return out
  mask = mask.reshape((-1,) + (1,) * (out.ndim - 1))
  return jnp.where(mask, out.astype(jnp.float32), 0.0)


def cascade_logits(
  logit_fn: Callable,
  stacked: Pytree,
  x: jax.Array,
  strategy: str = DEFAULT_STRATEGY,
  mask: Optional[jax.Array] = None,
) -> jax.Array:
  """The cascade energy: the sum of all (active) stages' logits per example.

  This is ln prod_a g_a(x) of paper eq. 12, the quantity the synthesis step ascends.

  Args:
    logit_fn: pure fn(stage_variables, x) -> logits of shape (batch,).
    stacked: the cascade (leading stage axis).
    x: the input batch.
    strategy: "scan" (default), "unrolled" or "vmap"; all give the same numbers.
    mask: optional boolean (num_stages,); stages where it is False contribute 0.
      With "scan" an inactive stage is skipped (no forward or backward pass);
      use it to preallocate a growing cascade without recompiling.

  Returns:
    Summed logits of shape (batch,), float32.
  """
  _check_strategy(strategy)
  total = num_stages(stacked)
  mask = check_mask(mask, total)
  if strategy == "scan":
    # Accumulate in the carry rather than materialising (T, batch) logits.
    batch = jax.eval_shape(lambda: logit_fn(get_stage(stacked, 0), x))
    acc0 = jnp.zeros(batch.shape, jnp.float32)
    if mask is None:

      def body(acc, inputs):
        stage, _ = inputs
        return acc + logit_fn(stage, x).astype(jnp.float32), None
    else:
      # lax.cond skips the forward and backward pass of an inactive slot entirely
      # (under vmap it becomes a select and both branches run, which is still right).
      def body(acc, inputs):
        stage, is_active = inputs
        logits = lax.cond(
          is_active,
          lambda s: logit_fn(s, x).astype(jnp.float32),
          lambda s: jnp.zeros(batch.shape, jnp.float32),
          stage,
        )
        return acc + logits, None

    active = jnp.ones((total,), bool) if mask is None else mask
    out, _ = lax.scan(body, acc0, (stacked, active))
    return out
  logits = stage_logits(logit_fn, stacked, x, strategy, mask).astype(jnp.float32)
  return logits.sum(axis=0)


def check_mask(mask: Optional[jax.Array], total: int) -> Optional[jax.Array]:
  """The mask as a boolean array of shape (total,), or None; refuses other shapes."""
  if mask is None:
    return None
  mask = jnp.asarray(mask, bool)
  if mask.shape != (total,):
    raise ValueError(
      f"mask must have shape ({total},) to match the cascade, got {mask.shape}."
    )
  return mask


def _check_strategy(strategy: str) -> None:
  if strategy not in STRATEGIES:
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
