"""Tests for innjax.sampler on analytic energies (known answers) and on the CNN."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from innjax import cascade, models, sampler


def gaussian_logit(params, x):
  """logit_a(x) = b_a - |x - mu_a|^2 / 2: maximal at mu_a, positive within sqrt(2 b)."""
  return params["b"] - 0.5 * jnp.sum((x - params["mu"]) ** 2, axis=-1)


def gaussians(mus, b=1.0):
  mus = jnp.asarray(mus, jnp.float32)
  return {"mu": mus, "b": jnp.full((mus.shape[0],), b, jnp.float32)}


# INNg's synthesis settings (paper 4), which the configs pass: the library's defaults
# are neutral (no early stop, no clip, Adam's usual beta1).
INNG = dict(beta1=0.5, stop_prob=0.5)


def step_until_done(s, params, x0, key, mask=None, max_steps=None):
  """A Python loop of jitted `step` calls until the chain is done.

  Returns:
    (x, applied steps per stage, whether the last stage stopped at its boundary,
    the stages the steps followed).
  """
  step = jax.jit(s.step)
  state = s.init(x0, key)
  steps = np.zeros(sampler.cascade.num_stages(params), int)
  stopped, followed = False, []
  while not bool(state.done):
    state, info = step(params, state, mask, max_steps)
    steps[int(info.stage)] += int(info.applied)
    stopped = bool(info.crossed)
    followed.append(int(info.stage))
  return state.x, steps, stopped, followed


@pytest.mark.parametrize("optimizer, lr", [("adam", 0.05), ("sgd", 0.1)])
def test_sum_mode_finds_the_maximum_of_one_gaussian(optimizer, lr):
  s = sampler.make_sampler(
    gaussian_logit,
    step_size=lr,
    optimizer=optimizer,
    max_steps=400,
    stop_prob=None,
    clip=None,
  )
  x0 = jax.random.normal(jax.random.key(0), (8, 2)) * 2
  x, info = jax.jit(s.run)(gaussians([[0.7, -0.3]]), x0, jax.random.key(1))
  np.testing.assert_allclose(
    x, jnp.broadcast_to(jnp.array([0.7, -0.3]), x.shape), atol=2e-3
  )
  assert int(info.steps) == 400 and not bool(info.stopped_early)


def test_sum_of_shifted_gaussians_peaks_at_their_mean():
  mus = [[1.0, 0.0], [0.0, 1.0], [-0.4, -0.4], [0.6, 0.6]]
  s = sampler.make_sampler(
    gaussian_logit, step_size=0.05, max_steps=500, stop_prob=None, clip=None
  )
  x, _ = jax.jit(s.run)(gaussians(mus), jnp.full((3, 2), 3.0), jax.random.key(0))
  np.testing.assert_allclose(
    x, jnp.broadcast_to(jnp.mean(jnp.array(mus), 0), x.shape), atol=2e-3
  )


@pytest.mark.parametrize("strategy", cascade.STRATEGIES)
def test_strategies_give_the_same_chain(strategy):
  s = sampler.make_sampler(
    gaussian_logit,
    step_size=0.05,
    max_steps=50,
    stop_prob=None,
    strategy=strategy,
    clip=None,
  )
  ref = sampler.make_sampler(
    gaussian_logit, step_size=0.05, max_steps=50, stop_prob=None, clip=None
  )
  params = gaussians([[1.0, 0.0], [0.0, 1.0]])
  x0 = jnp.full((2, 2), 2.0)
  np.testing.assert_allclose(
    s.run(params, x0, jax.random.key(0))[0],
    ref.run(params, x0, jax.random.key(0))[0],
    atol=1e-6,
  )


def test_clip_projects_onto_the_box():
  s = sampler.make_sampler(
    gaussian_logit, step_size=0.1, max_steps=200, stop_prob=None, clip=(-1.0, 1.0)
  )
  x, _ = s.run(gaussians([[2.5, -0.5]]), jnp.zeros((4, 2)), jax.random.key(0))
  np.testing.assert_allclose(
    x, jnp.broadcast_to(jnp.array([1.0, -0.5]), x.shape), atol=2e-3
  )
  state = s.init(jnp.full((1, 2), 5.0), jax.random.key(0))
  assert float(state.x.max()) == 1.0  # init also projects


def test_step_can_donate_its_state():
  """A Python loop of steps may jit `step` with the state donated (buffers reused)."""
  s = sampler.make_sampler(gaussian_logit, step_size=0.05, stop_prob=None, clip=None)
  params = gaussians([[0.5, -0.5]])
  x0 = jnp.full((4, 2), 2.0)
  step = jax.jit(s.step, donate_argnums=1)
  state = s.init(x0, jax.random.key(0))
  for _ in range(3):
    state, _ = step(params, state)
  want, kept = s.init(x0, jax.random.key(0)), jax.jit(s.step)
  for _ in range(3):
    want, _ = kept(params, want)
  np.testing.assert_allclose(state.x, want.x, rtol=1e-6)


def test_a_loop_of_steps_is_the_run_in_sum_mode():
  params = gaussians([[1.0, 1.0]], b=0.5)
  s = sampler.make_sampler(gaussian_logit, step_size=0.05, max_steps=300, **INNG)
  x0 = jnp.full((4, 2), -1.0)
  x, info = jax.jit(s.run)(params, x0, jax.random.key(0))
  xs, steps, stopped, _ = step_until_done(s, params, x0, jax.random.key(0))
  assert 0 < int(info.steps) == steps[0] < 300
  assert bool(info.stopped_early) and stopped
  np.testing.assert_allclose(x, xs, atol=1e-6)
  # The stop fired at the first x whose P(real) reached 0.5: just a narrow margin
  # past the boundary, as the paper wants (3.3).
  assert 0.5 <= float(info.mean_prob) < 0.6
  # Without the stop, the loop ends at the step cap, as the run does.
  capped = sampler.make_sampler(gaussian_logit, step_size=0.05, max_steps=7)
  x, info = capped.run(params, x0, jax.random.key(0))
  xs, steps, stopped, _ = step_until_done(capped, params, x0, jax.random.key(0))
  assert int(info.steps) == steps[0] == 7 and not stopped
  np.testing.assert_allclose(x, xs, atol=1e-6)


def test_a_loop_of_steps_is_the_run_in_sequential_mode():
  """Hand-offs included: stage 0 to 2 at the boundary (stage 1 is masked out), then
  2 to 3 at stage 2's cap."""
  params = gaussians([[2.0, 0.0], [9.0, 9.0], [0.0, 2.0], [-2.0, 0.0]], b=0.5)
  mask, caps = jnp.array([True, False, True, True]), jnp.array([400, 400, 10, 400])
  s = sampler.make_sampler(gaussian_logit, step_size=0.05, mode="sequential", **INNG)
  x0 = jnp.zeros((3, 2))
  x, info = jax.jit(s.run)(params, x0, jax.random.key(0), mask, caps)
  xs, steps, stopped, followed = step_until_done(
    s, params, x0, jax.random.key(0), mask, caps
  )
  np.testing.assert_array_equal(info.steps, steps)
  assert steps[1] == 0 and steps[0] > 0 and steps[2] == 10 and steps[3] > 0
  assert sorted(set(followed)) == [0, 2, 3] and followed == sorted(followed)
  assert bool(info.stopped_early) == stopped
  np.testing.assert_allclose(x, xs, atol=1e-5)
  # A finished chain stays where it is.
  state = s.init(x0, jax.random.key(0))
  for _ in range(len(followed) + 3):
    state, last = s.step(params, state, mask, caps)
  assert bool(state.done) and not bool(last.applied)
  np.testing.assert_allclose(state.x, xs, atol=1e-5)


def test_the_hand_off_restarts_the_optimizer():
  """The step after a hand-off is Adam's first step again: the moments are reset."""
  params = gaussians([[2.0, 0.0], [0.0, 2.0]], b=0.5)
  s = sampler.make_sampler(
    gaussian_logit, step_size=0.05, max_steps=3, mode="sequential", stop_prob=None
  )
  state = s.init(jnp.zeros((1, 2)), jax.random.key(0))
  for _ in range(3):
    state, _ = s.step(params, state)
  assert int(state.stage) == 1 and int(state.stage_step) == 0
  fresh = s.init(state.x, jax.random.key(0))
  for leaf, want in zip(
    jax.tree_util.tree_leaves(state.opt_state), jax.tree_util.tree_leaves(fresh.opt_state)
  ):
    np.testing.assert_array_equal(leaf, want)


def test_stop_window_delays_the_stop():
  params = gaussians([[1.0, 1.0]], b=0.5)
  x0 = jnp.full((4, 2), -1.0)
  steps = []
  for window in (1, 20):
    s = sampler.make_sampler(
      gaussian_logit, step_size=0.05, max_steps=300, stop_window=window, **INNG
    )
    steps.append(int(s.run(params, x0, jax.random.key(0))[1].steps))
  assert steps[0] < steps[1] < 300


def test_sequential_mode_hands_over_at_each_boundary():
  mus = [[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0]]
  params = gaussians(mus, b=0.5)  # Boundary: distance 1 from each mean.
  s = sampler.make_sampler(
    gaussian_logit, step_size=0.05, max_steps=400, mode="sequential", **INNG
  )
  x0 = jnp.zeros((3, 2))
  x, info = jax.jit(s.run)(params, x0, jax.random.key(0))
  assert info.steps.shape == (3,) and bool(jnp.all(info.steps > 0))
  assert bool(info.stopped_early)
  # Ends just inside the last stage's boundary, not at the sum's optimum.
  dist_last = jnp.linalg.norm(x - jnp.array(mus[2]), axis=-1)
  assert bool(jnp.all(dist_last <= 1.05)) and bool(jnp.all(dist_last > 0.8))
  assert float(info.mean_prob) >= 0.5
  # Replaying stage by stage with one-stage sum samplers gives the same images.
  single = sampler.make_sampler(gaussian_logit, step_size=0.05, max_steps=400, **INNG)
  xr = x0
  for a in range(3):
    xr, one = single.run(cascade.select(params, [a]), xr, jax.random.key(0))
    assert int(one.steps) == int(info.steps[a])
  np.testing.assert_allclose(x, xr, atol=1e-5)


def test_sequential_mask_skips_stages_and_caps_per_stage():
  params = gaussians([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0]], b=0.5)
  s = sampler.make_sampler(
    gaussian_logit, step_size=0.05, max_steps=400, mode="sequential", **INNG
  )
  run = jax.jit(s.run)
  _, info = run(
    params, jnp.zeros((2, 2)), jax.random.key(0), jnp.array([True, False, True])
  )
  assert int(info.steps[1]) == 0 and int(info.steps[0]) > 0 and int(info.steps[2]) > 0
  _, capped = run(
    params, jnp.zeros((2, 2)), jax.random.key(0), None, jnp.array([3, 4, 5])
  )
  np.testing.assert_array_equal(capped.steps, [3, 4, 5])
  assert not bool(capped.stopped_early)


def test_langevin_noise_samples_the_gaussian():
  """SGD with step eps and noise sqrt(2 eps) on logit = -|x|^2/2 samples N(0, 1)."""
  eps = 0.01
  s = sampler.make_sampler(
    gaussian_logit,
    step_size=eps,
    optimizer="sgd",
    noise_scale=float(np.sqrt(2 * eps)),
    noise_schedule="constant",
    max_steps=600,
    stop_prob=None,
    clip=None,
  )
  x, _ = jax.jit(s.run)(
    gaussians([[0.0]], b=0.0), jnp.full((4000, 1), 3.0), jax.random.key(0)
  )
  assert abs(float(x.mean())) < 0.1
  assert 0.85 < float(x.var()) < 1.15
  # The linear schedule anneals the noise away and ends near the mode.
  annealed = sampler.make_sampler(
    gaussian_logit,
    step_size=eps,
    optimizer="sgd",
    noise_scale=float(np.sqrt(2 * eps)),
    noise_schedule="linear",
    max_steps=600,
    stop_prob=None,
    clip=None,
  )
  xa, _ = jax.jit(annealed.run)(
    gaussians([[0.0]], b=0.0), jnp.full((4000, 1), 3.0), jax.random.key(0)
  )
  assert float(xa.var()) < 0.5 * float(x.var())


def test_vmap_over_chains_and_single_compile():
  traces = []

  def counting_logit(params, x):
    traces.append(1)
    return gaussian_logit(params, x)

  s = sampler.make_sampler(counting_logit, step_size=0.05, max_steps=300, **INNG)
  params = gaussians([[1.0, 1.0]], b=0.5)
  x0s = jnp.stack([jnp.full((2, 2), -1.0), jnp.full((2, 2), 3.0)])
  keys = jax.random.split(jax.random.key(0), 2)
  xs, infos = jax.jit(jax.vmap(s.run, in_axes=(None, 0, 0)))(params, x0s, keys)
  for i in range(2):
    x, info = s.run(params, x0s[i], keys[i])
    np.testing.assert_allclose(xs[i], x, atol=1e-5)
    assert int(infos.steps[i]) == int(info.steps)
  run = jax.jit(s.run)
  run(params, x0s[0], keys[0])
  before = len(traces)
  run(gaussians([[0.0, 2.0]], b=0.3), x0s[1], keys[1])  # new values, same shapes
  assert len(traces) == before


def test_logit_fn_with_a_key_gets_a_fresh_key_every_step():
  """logit = <x, direction drawn from the key>: SGD with step 1 moves x by that
  direction, so each step's increment shows which key the step was given."""

  def random_slope(params, x, key):
    return jnp.sum(x * jax.random.normal(key, x.shape[1:]), axis=-1) * params["w"]

  s = sampler.make_sampler(
    random_slope, step_size=1.0, optimizer="sgd", max_steps=4, needs_key=True
  )
  params = {"w": jnp.ones((1,))}

  run, step = jax.jit(s.run), jax.jit(s.step)

  def increments(key):
    x, _ = run(params, jnp.zeros((2, 3)), key)
    state, moves = s.init(jnp.zeros((2, 3)), key), []
    for _ in range(4):
      new, _ = step(params, state)
      moves.append(new.x[0] - state.x[0])
      state = new
    np.testing.assert_allclose(x, state.x, atol=1e-6)  # the run's keys too
    return np.stack(moves)

  moves = increments(jax.random.key(0))
  # Every step drew a new direction, and the same key gives the same draws.
  assert np.linalg.matrix_rank(moves) == 3 and np.all(np.abs(moves[1:] - moves[:-1]) > 0)
  np.testing.assert_array_equal(moves, increments(jax.random.key(0)))
  assert np.all(moves != increments(jax.random.key(1)))


def test_on_the_classifier_cascade_ascent_raises_the_probability():
  model = models.Classifier(features=(8, 16), conv_impl="xla")  # compiles fastest
  stages = [
    models.init_variables(model, k, (16, 16, 3))
    for k in jax.random.split(jax.random.key(0), 3)
  ]
  stacked = cascade.stack(stages)
  fn = models.make_logit_fn(model)
  x0 = jnp.clip(0.3 * jax.random.normal(jax.random.key(1), (6, 16, 16, 3)), -1, 1)
  for mode in sampler.MODES:
    s = sampler.make_sampler(
      fn,
      step_size=0.02,
      beta1=0.5,
      max_steps=30,
      stop_prob=0.95,
      clip=(-1.0, 1.0),
      mode=mode,
    )
    energy = jax.jit(lambda s, x: cascade.cascade_logits(fn, s, x))
    start = jnp.mean(jax.nn.sigmoid(energy(stacked, x0)))
    x, info = jax.jit(s.run)(stacked, x0, jax.random.key(2))
    assert x.shape == x0.shape and float(jnp.abs(x).max()) <= 1.0
    end = jnp.mean(jax.nn.sigmoid(energy(stacked, x)))
    assert float(end) > float(start)
    assert float(jnp.abs(x - x0).max()) > 0.01


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(stop_prob=1.5), "stop_prob"),
    (dict(stop_prob=0.0), "stop_prob"),
    (dict(step_size=0.0), "step_size"),
    (dict(step_size=-0.1), "step_size"),
    (dict(max_steps=0), "max_steps"),
    (dict(beta1=1.0), "beta1"),
    (dict(noise_scale=-1.0), "noise_scale"),
    (dict(mode="parallel"), "mode"),
    (dict(optimizer="rmsprop"), "optimizer"),
    (dict(clip=(1.0, -1.0)), "clip"),
    (dict(strategy="pmap"), "strategy"),
    (dict(noise_schedule="exp"), "noise_schedule"),
    (dict(stop_window=0), "stop_window"),
  ],
)
def test_bad_arguments_raise_before_tracing(kwargs, match):
  with pytest.raises(ValueError, match=match):
    sampler.make_sampler(gaussian_logit, **kwargs)


def _fooled_early_rejected_late():
  """Two Gaussian stages: stage 0 accepts x = 0 with a large logit, stage 1 rejects it.

  The summed logit at x = 0 is 8 + (2 - 0.5 * 9) = 5.5 (P = 0.996) although the newest
  stage gives it P(real) = sigmoid(-2.5) = 0.08: the case where stopping on the sum
  ends synthesis before the newest classifier has moved anything. The newest stage
  accepts |x - (3, 0)| < 2, so ascending the sum crosses its boundary at x = (1, 0).
  """
  params = {"mu": jnp.array([[0.0, 0.0], [3.0, 0.0]]), "b": jnp.array([8.0, 2.0])}
  return params, jnp.zeros((4, 2))


@pytest.mark.parametrize("strategy", cascade.STRATEGIES)
def test_sum_mode_stops_when_the_newest_stage_is_fooled(strategy):
  params, x0 = _fooled_early_rejected_late()
  s = sampler.make_sampler(
    gaussian_logit,
    step_size=0.05,
    max_steps=400,
    stop_prob=0.5,
    clip=None,
    strategy=strategy,
  )
  x, info = jax.jit(s.run)(params, x0, jax.random.key(0))
  newest = jax.nn.sigmoid(gaussian_logit(cascade.get_stage(params, 1), x))
  assert bool(info.stopped_early) and int(info.steps) > 5
  assert float(jnp.mean(newest)) >= 0.5
  np.testing.assert_allclose(float(info.mean_prob), float(jnp.mean(newest)), rtol=1e-5)
  # It moved towards the newest stage's mode and stopped at its boundary (x = 1),
  # not at the summed energy's maximum (x = 1.5).
  assert 0.95 < float(x[0, 0]) < 1.2


def test_sum_mode_stop_on_sum_keeps_the_old_rule():
  params, x0 = _fooled_early_rejected_late()
  s = sampler.make_sampler(
    gaussian_logit, step_size=0.05, max_steps=400, stop_prob=0.5, clip=None, stop_on="sum"
  )
  x, info = jax.jit(s.run)(params, x0, jax.random.key(0))
  assert int(info.steps) == 0 and bool(info.stopped_early)
  np.testing.assert_array_equal(x, x0)


def test_sum_mode_stop_on_all_waits_for_every_stage():
  # Stage 0 peaks at 0, stage 1 at 1.5: both accept the segment around 0.75 only.
  params = {"mu": jnp.array([[0.0, 0.0], [1.5, 0.0]]), "b": jnp.array([0.5, 0.5])}
  x0 = jnp.full((4, 2), -2.0).at[:, 1].set(0.0)
  probs = {}
  for stop_on in ("newest", "all"):
    s = sampler.make_sampler(
      gaussian_logit,
      step_size=0.02,
      max_steps=600,
      stop_prob=0.5,
      clip=None,
      stop_on=stop_on,
    )
    x, info = jax.jit(s.run)(params, x0, jax.random.key(0))
    per_stage = jax.nn.sigmoid(cascade.stage_logits(gaussian_logit, params, x))
    probs[stop_on] = jnp.mean(per_stage, axis=1)
    assert bool(info.stopped_early)
  assert float(probs["all"].min()) >= 0.5
  np.testing.assert_allclose(float(probs["newest"][1]), 0.5, atol=0.05)


def test_stop_on_must_be_known():
  with pytest.raises(ValueError, match="stop_on"):
    sampler.make_sampler(gaussian_logit, stop_on="oldest")


def test_sum_mode_stop_respects_the_mask():
  # Slot 2 is inactive: "newest" means the last *active* stage, slot 1.
  params = {
    "mu": jnp.array([[0.0, 0.0], [3.0, 0.0], [-9.0, 0.0]]),
    "b": jnp.array([8.0, 2.0, 0.5]),
  }
  s = sampler.make_sampler(
    gaussian_logit, step_size=0.05, max_steps=400, stop_prob=0.5, clip=None
  )
  x, info = jax.jit(s.run)(
    params, jnp.zeros((4, 2)), jax.random.key(0), jnp.array([True, True, False])
  )
  assert bool(info.stopped_early)
  assert 0.95 < float(x[0, 0]) < 1.2


def test_langevin_samples_a_gaussian_energys_variance():
  """x += eps * grad log p + sqrt(2 eps) N(0, 1) has p = N(0, sigma^2) as its limit."""
  sigma, eps = 0.5, 0.01
  s = sampler.make_sampler(
    lambda p, x: -0.5 * jnp.sum(jnp.square(x / p["sigma"]), axis=-1),
    step_size=eps,
    optimizer="sgd",
    noise_scale=float(np.sqrt(2 * eps)),
    noise_schedule="constant",
    max_steps=1500,
    stop_prob=None,
    clip=None,
  )
  x, _ = jax.jit(s.run)(
    {"sigma": jnp.array([sigma])}, jnp.full((4000, 1), 2.0), jax.random.key(0)
  )
  # The discretised chain's stationary variance is sigma^2 / (1 - eps / (2 sigma^2)).
  want = sigma**2 / (1 - eps / (2 * sigma**2))
  assert abs(float(jnp.mean(x))) < 0.03
  np.testing.assert_allclose(float(jnp.var(x)), want, rtol=0.06)


def test_grad_clip_bounds_each_pixels_step():
  s = sampler.make_sampler(
    lambda p, x: p["w"] * jnp.sum(x, axis=-1),
    step_size=1.0,
    optimizer="sgd",
    max_steps=1,
    stop_prob=None,
    clip=None,
    grad_clip=0.1,
  )
  x, _ = s.run({"w": jnp.array([50.0])}, jnp.zeros((2, 3)), jax.random.key(0))
  np.testing.assert_allclose(x, 0.1)
  with pytest.raises(ValueError, match="grad_clip"):
    sampler.make_sampler(gaussian_logit, grad_clip=-1.0)


def test_adam_is_the_textbook_update():
  """The default optimizer against Adam written out in numpy (Kingma and Ba, alg. 1)."""
  lr, b1, b2, eps = 0.05, 0.5, 0.999, 1e-8
  params = gaussians([[0.7, -0.3]])
  s = sampler.make_sampler(gaussian_logit, step_size=lr, beta1=b1, max_steps=10)
  x0 = np.asarray(jax.random.normal(jax.random.key(0), (8, 2)) * 2 + 3, np.float64)
  x, _ = s.run(params, jnp.asarray(x0, jnp.float32), jax.random.key(1))
  want, m, v = x0, np.zeros_like(x0), np.zeros_like(x0)
  for t in range(1, 11):
    g = np.array([0.7, -0.3]) - want  # d logit / dx, ascended
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    want = want + lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
  # float32 holds 0.999 ** t as 1 - 0.00099998713 (t = 1): a 6e-6 relative
  # difference in each step, as in any float32 Adam.
  np.testing.assert_allclose(x, want, rtol=1e-5)


def test_an_optax_transformation_can_be_passed_directly():
  params, x0 = gaussians([[1.0, 0.0], [0.0, 1.0]]), jnp.full((3, 2), 2.0)
  by_name = sampler.make_sampler(
    gaussian_logit, step_size=0.1, optimizer="sgd", max_steps=20
  )
  direct = sampler.make_sampler(gaussian_logit, optimizer=optax.sgd(0.1), max_steps=20)
  np.testing.assert_array_equal(
    by_name.run(params, x0, jax.random.key(0))[0],
    direct.run(params, x0, jax.random.key(0))[0],
  )
  # Any transformation: momentum finds the summed energy's peak, the mean of the mus.
  momentum = sampler.make_sampler(
    gaussian_logit, optimizer=optax.sgd(0.05, 0.5), max_steps=200
  )
  x, _ = momentum.run(params, x0, jax.random.key(0))
  np.testing.assert_allclose(x, np.full((3, 2), 0.5), atol=1e-4)


def test_the_defaults_are_neutral():
  """No early stop and no clip by default: a mode at x = 3 is reached, and the chain
  runs to its cap although P(real) passes 0.5 on the way."""
  s = sampler.make_sampler(gaussian_logit)
  x, info = jax.jit(s.run)(gaussians([[3.0, -3.0]]), jnp.zeros((4, 2)), jax.random.key(0))
  np.testing.assert_allclose(x, np.broadcast_to([3.0, -3.0], (4, 2)), atol=1e-2)
  assert not bool(info.stopped_early) and int(info.steps) == 1000
