"""The reusable sampler refuses arguments that used to give wrong answers silently.

Each case is refused in Python, before the chain runs, with a message naming the
argument, or accepted when it is valid (numpy scalars, a legacy key, a patch head's
k logits per example). The energies are analytic and tiny, so every test is quick.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from innjax import sampler


def gaussian_logit(params, x):
  """logit(x) = b - |x - mu|^2 / 2 for one stage's params."""
  return params["b"] - 0.5 * jnp.sum((x - params["mu"]) ** 2, axis=-1)


def one_energy():
  """The params of a single Gaussian energy: no stage axis."""
  return {"mu": jnp.array([1.0, -1.0]), "b": jnp.array(1.0)}


def calls_counted(fn):
  """`fn` with a list that grows each time it is traced or called."""
  calls = []

  def counted(params, x):
    calls.append(1)
    return fn(params, x)

  return counted, calls


# --------------------------------------------------------------------------------------
# Params: the single-energy path is explicit.


def test_single_adds_the_stage_axis_and_runs_one_energy():
  s = sampler.make_sampler(
    gaussian_logit, step_size=0.05, max_steps=400, stop_prob=None, clip=None
  )
  stacked = sampler.single(one_energy())
  assert stacked["mu"].shape == (1, 2) and stacked["b"].shape == (1,)
  x, info = jax.jit(s.run)(stacked, jnp.zeros((4, 2)), jax.random.key(0))
  np.testing.assert_allclose(x, np.broadcast_to([1.0, -1.0], (4, 2)), atol=2e-3)
  assert int(info.steps) == 400


@pytest.mark.parametrize(
  "params",
  [
    {"mu": jnp.zeros((2, 2)), "b": jnp.zeros((3,))},  # leading sizes disagree
    {"mu": jnp.zeros((2,)), "b": jnp.array(1.0)},  # a scalar leaf: no stage axis
  ],
)
def test_params_without_a_stage_axis_name_the_wrapper(params):
  s = sampler.make_sampler(gaussian_logit)
  with pytest.raises(ValueError, match=r"params: .*innjax\.sampler\.single\(params\)"):
    s.run(params, jnp.zeros((1, 2)), jax.random.key(0))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes: Python 3.11")
def test_a_trace_error_on_unstacked_params_names_the_wrapper():
  """One energy's (2, 5) weight read as 2 stages gives logit_fn a (5,) vector."""
  s = sampler.make_sampler(lambda p, x: jnp.sum(x @ p["w"], axis=-1))
  with pytest.raises(TypeError) as caught:
    s.run({"w": jnp.ones((2, 5))}, jnp.zeros((3, 2)), jax.random.key(0))
  assert any(
    "innjax.sampler.single(params)" in note
    for note in getattr(caught.value, "__notes__", [])
  )


def test_a_mask_of_the_wrong_length_is_refused_in_both_modes():
  params = sampler.single(one_energy())
  for mode in sampler.MODES:
    s = sampler.make_sampler(gaussian_logit, mode=mode)
    with pytest.raises(ValueError, match=r"mask must have shape \(1,\)"):
      s.run(params, jnp.zeros((2, 2)), jax.random.key(0), jnp.array([True, False]))
  state = s.init(jnp.zeros((2, 2)), jax.random.key(0))
  with pytest.raises(ValueError, match="mask must have shape"):
    s.step(params, state, jnp.array([True, True, True]))


# --------------------------------------------------------------------------------------
# Logits: one per example.


@pytest.mark.parametrize(
  "logit_fn, shape",
  [
    (lambda p, x: jnp.sum(gaussian_logit(p, x)), "()"),  # one for the batch
    (lambda p, x: gaussian_logit(p, x)[:3], r"\(3,\)"),  # 3 for a batch of 8
    (lambda p, x: gaussian_logit(p, x)[None], r"\(1, 8\)"),  # batch on the wrong axis
  ],
)
def test_logits_that_are_not_one_per_example_are_refused(logit_fn, shape):
  s = sampler.make_sampler(logit_fn, stop_prob=0.5, clip=None)
  params, x0 = sampler.single(one_energy()), jnp.zeros((8, 2))
  with pytest.raises(
    ValueError,
    match=rf"logit_fn must return one logit per example: "
    rf"shape \(8,\).*got shape {shape}",
  ):
    jax.jit(s.run)(params, x0, jax.random.key(0))
  with pytest.raises(ValueError, match="one logit per example"):
    s.step(params, s.init(x0, jax.random.key(0)))


def test_k_logits_per_example_are_accepted():
  """A patch head returns one logit per patch: (batch * k,), example by example."""
  s = sampler.make_sampler(
    lambda p, x: jnp.repeat(gaussian_logit(p, x), 3),
    step_size=0.05,
    max_steps=5,
    stop_prob=None,
    clip=None,
  )
  x, info = s.run(sampler.single(one_energy()), jnp.zeros((4, 2)), jax.random.key(0))
  assert x.shape == (4, 2) and int(info.steps) == 5


# --------------------------------------------------------------------------------------
# x0 and key.


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.bool_])
def test_a_non_float_x0_is_refused(dtype):
  logit_fn, calls = calls_counted(gaussian_logit)
  s = sampler.make_sampler(logit_fn)
  x0 = np.full((2, 2), 1, dtype)
  with pytest.raises(
    TypeError, match=r"x0 must be a float array.*innjax\.data\.to_float"
  ):
    s.run(sampler.single(one_energy()), x0, jax.random.key(0))
  with pytest.raises(TypeError, match="x0 must be a float array"):
    s.init(x0, jax.random.key(0))
  assert not calls


@pytest.mark.parametrize("key", [0, np.int32(3), jnp.arange(2), "seed"])
def test_a_key_that_is_not_a_prng_key_is_refused(key):
  logit_fn, calls = calls_counted(gaussian_logit)
  s = sampler.make_sampler(logit_fn)
  with pytest.raises(TypeError, match=r"key must be a PRNG key, e\.g\. jax\.random\.key"):
    s.run(sampler.single(one_energy()), jnp.zeros((2, 2)), key)
  assert not calls


def test_a_legacy_raw_key_is_accepted():
  s = sampler.make_sampler(gaussian_logit, max_steps=3, stop_prob=None, clip=None)
  x, info = s.run(sampler.single(one_energy()), jnp.zeros((2, 2)), jax.random.PRNGKey(0))
  assert int(info.steps) == 3


# --------------------------------------------------------------------------------------
# Which logit_fn gets a key.


def test_keyword_only_kwargs_and_defaulted_parameters_are_not_keys():
  def keyword_only(p, x, *, temperature=2.0):
    return gaussian_logit(p, x) / temperature

  def with_kwargs(p, x, **kwargs):
    return gaussian_logit(p, x)

  def defaulted(p, x, temperature=2.0):
    return gaussian_logit(p, x) / temperature

  for fn in (keyword_only, with_kwargs, defaulted):
    s = sampler.make_sampler(fn, max_steps=2, stop_prob=None, clip=None)
    x, _ = s.run(sampler.single(one_energy()), jnp.zeros((2, 2)), jax.random.key(0))
    assert x.shape == (2, 2), fn.__name__


def test_needs_key_says_it_explicitly():
  seen = []

  def defaulted_key(p, x, key=None):
    seen.append(key is not None)
    return gaussian_logit(p, x)

  s = sampler.make_sampler(
    defaulted_key, needs_key=True, max_steps=2, stop_prob=None, clip=None
  )
  s.run(sampler.single(one_energy()), jnp.zeros((2, 2)), jax.random.key(0))
  assert seen and all(seen)


@pytest.mark.parametrize(
  "logit_fn, needs_key, match",
  [
    (gaussian_logit, True, r"needs_key=True, but logit_fn takes only 2 positional"),
    (gaussian_logit, "yes", r"needs_key must be True or False"),
    ("not a function", False, r"logit_fn must be a function"),
  ],
)
def test_needs_key_that_contradicts_the_signature_is_refused(logit_fn, needs_key, match):
  with pytest.raises((ValueError, TypeError), match=match):
    sampler.make_sampler(logit_fn, needs_key=needs_key)


@pytest.mark.parametrize("needs_key", [{}, {"needs_key": False}, {"needs_key": None}])
def test_a_logit_fn_that_requires_a_key_needs_needs_key(needs_key):
  """The key is never guessed from the signature: a required third parameter without
  needs_key=True is refused before anything is traced, naming the fix."""
  calls = []

  def patch_head(p, x, key):
    calls.append(1)
    return gaussian_logit(p, x)

  with pytest.raises(
    ValueError,
    match=r"logit_fn requires a third argument "
    r"\('key'\).*pass needs_key=True",
  ):
    sampler.make_sampler(patch_head, **needs_key)
  assert not calls
  s = sampler.make_sampler(patch_head, needs_key=True, max_steps=2)
  _, info = s.run(sampler.single(one_energy()), jnp.zeros((2, 2)), jax.random.key(0))
  assert calls and int(info.steps) == 2


# --------------------------------------------------------------------------------------
# Numbers: clip, step caps, numpy scalars.


@pytest.mark.parametrize(
  "clip, match",
  [
    (1.0, r"clip must be a \(low, high\) pair, got 1\.0"),
    ((0.0, 1.0, 2.0), r"clip must be a \(low, high\) pair"),
    ("ab", r"clip must be a \(low, high\) pair"),
    ((0.0, float("nan")), r"clip\[1\] must be a finite number"),
  ],
)
def test_clip_must_be_a_pair(clip, match):
  with pytest.raises(ValueError, match=match):
    sampler.make_sampler(gaussian_logit, clip=clip)


def test_run_max_steps_of_the_wrong_shape_or_type_is_refused():
  params = {"mu": jnp.zeros((3, 2)), "b": jnp.ones((3,))}
  x0, key = jnp.zeros((2, 2)), jax.random.key(0)
  sequential = sampler.make_sampler(gaussian_logit, mode="sequential")
  with pytest.raises(
    ValueError,
    match=r"max_steps must be one integer or one per "
    r"stage \(shape \(3,\).*got shape \(2,\)",
  ):
    sequential.run(params, x0, key, None, jnp.array([5, 5]))
  summed = sampler.make_sampler(gaussian_logit, mode="sum")
  with pytest.raises(ValueError, match=r"max_steps must be one integer in sum mode"):
    summed.run(params, x0, key, None, jnp.array([5, 5, 5]))
  with pytest.raises(TypeError, match=r"max_steps must be an integer"):
    summed.run(params, x0, key, None, 2.5)
  with pytest.raises(ValueError, match=r"max_steps must be >= 1"):
    sequential.run(params, x0, key, None, jnp.array([5, 0, 5]))
  with pytest.raises(ValueError, match=r"max_steps must be >= 1"):
    summed.step(params, summed.init(x0, key), None, 0)


def test_numpy_scalars_are_accepted_and_give_the_same_chain():
  params, x0 = sampler.single(one_energy()), jnp.zeros((4, 2))
  plain = sampler.make_sampler(
    gaussian_logit,
    step_size=0.1,
    max_steps=5,
    stop_prob=None,
    stop_window=2,
    beta1=0.5,
    clip=(-1.0, 1.0),
  )
  numpy = sampler.make_sampler(
    gaussian_logit,
    step_size=np.float32(0.1),
    max_steps=np.int64(5),
    stop_prob=None,
    stop_window=np.int64(2),
    beta1=np.float64(0.5),
    clip=(np.float32(-1), np.int64(1)),
  )
  x, info = plain.run(params, x0, jax.random.key(0))
  xn, infon = numpy.run(params, x0, jax.random.key(0), None, np.int64(5))
  np.testing.assert_array_equal(x, xn)
  assert int(info.steps) == int(infon.steps) == 5


@pytest.mark.parametrize(
  "kwargs, error, match",
  [
    (dict(step_size="0.1"), TypeError, "step_size must be a number"),
    (dict(step_size=float("inf")), ValueError, "step_size must be a finite number"),
    (dict(max_steps=5.0), ValueError, "max_steps must be a positive integer"),
    (dict(max_steps=True), ValueError, "max_steps must be a positive integer"),
    (dict(noise_scale=float("nan")), ValueError, "noise_scale must be a finite number"),
    (dict(beta2=np.float32(1.0)), ValueError, r"beta2 must be in \[0, 1\)"),
  ],
)
def test_numbers_of_the_wrong_kind_name_the_argument(kwargs, error, match):
  with pytest.raises(error, match=match):
    sampler.make_sampler(gaussian_logit, **kwargs)
