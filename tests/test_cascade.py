"""Tests for innjax.cascade: stacking, selection and the summed cascade energy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from innjax import cascade, models


def _stages(n, size=16):
  model = models.Classifier(features=(8, 16), conv_impl="xla")  # compiles fastest
  keys = jax.random.split(jax.random.key(0), n)
  return model, [models.init_variables(model, k, (size, size, 3)) for k in keys]


def test_stack_append_count_and_select():
  _, stages = _stages(5)
  stacked = cascade.stack(stages[:3])
  assert cascade.num_stages(stacked) == 3
  grown = cascade.append(cascade.append(stacked, stages[3]), stages[4])
  assert cascade.num_stages(grown) == 5
  assert cascade.num_stages(cascade.append(None, stages[0])) == 1
  unstacked = cascade.unstack(grown)
  assert len(unstacked) == 5
  for i, stage in enumerate(stages):
    jax.tree_util.tree_map(
      np.testing.assert_array_equal, cascade.get_stage(grown, i), stage
    )
    jax.tree_util.tree_map(np.testing.assert_array_equal, unstacked[i], stage)


def test_keep_every_and_keep_last():
  tree = {"w": jnp.arange(7.0)}
  np.testing.assert_array_equal(cascade.keep_every(tree, 3)["w"], [2.0, 5.0, 6.0])
  np.testing.assert_array_equal(
    cascade.keep_every({"w": jnp.arange(6.0)}, 3)["w"], [2.0, 5.0]
  )
  np.testing.assert_array_equal(cascade.keep_every(tree, 1)["w"], np.arange(7.0))
  np.testing.assert_array_equal(cascade.keep_last(tree)["w"], [6.0])
  with pytest.raises(ValueError, match="every"):
    cascade.keep_every(tree, 0)


@pytest.mark.parametrize("n", [1, 4])
def test_strategies_agree_with_the_explicit_sum(n):
  model, stages = _stages(n)
  fn = models.make_logit_fn(model)
  stacked = cascade.stack(stages)
  x = jax.random.normal(jax.random.key(3), (5, 16, 16, 3))
  expected = sum(jax.jit(fn)(s, x) for s in stages)
  grads = []
  for strategy in cascade.STRATEGIES:
    out = jax.jit(lambda s, x: cascade.cascade_logits(fn, s, x, strategy))(stacked, x)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    grads.append(
      jax.jit(jax.grad(lambda x: cascade.cascade_logits(fn, stacked, x, strategy).sum()))(
        x
      )
    )
  for g in grads[1:]:
    np.testing.assert_allclose(g, grads[0], rtol=1e-5, atol=1e-5)
  per_stage = jax.jit(lambda s, x: cascade.stage_logits(fn, s, x))(stacked, x)
  assert per_stage.shape == (n, 5)


def test_mask_drops_inactive_stages_in_every_strategy():
  tree = {"b": jnp.array([1.0, 10.0, 100.0])}
  fn = lambda p, x: p["b"] + x.sum(-1)
  x = jnp.zeros((2, 3))
  mask = jnp.array([True, False, True])
  for strategy in cascade.STRATEGIES:
    np.testing.assert_allclose(
      cascade.cascade_logits(fn, tree, x, strategy, mask), [101.0, 101.0]
    )
  with pytest.raises(ValueError, match="mask"):
    cascade.cascade_logits(fn, tree, x, mask=jnp.array([True, False]))


def test_bad_stacks_are_rejected_with_clear_messages():
  with pytest.raises(ValueError, match="disagree on the stage axis"):
    cascade.num_stages({"a": jnp.zeros((3, 2)), "b": jnp.zeros((4, 2))})
  with pytest.raises(ValueError, match="scalar"):
    cascade.num_stages({"a": jnp.zeros(())})
  with pytest.raises(ValueError, match="at least one"):
    cascade.stack([])
  with pytest.raises(ValueError, match="structure"):
    cascade.stack([{"a": jnp.zeros(2)}, {"b": jnp.zeros(2)}])
  with pytest.raises(ValueError, match="strategy"):
    cascade.cascade_logits(
      lambda p, x: x, {"a": jnp.zeros((1,))}, jnp.zeros(2), strategy="pmap"
    )
