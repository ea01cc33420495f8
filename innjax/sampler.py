"""The image-space sampler: gradient ascent on x through a cascade of classifiers.

INNg's synthesis step (paper 3.2.2 and 3.3) as a reusable, pure sampler in the style of
blackjax. The pieces are module-level functions over an immutable `SamplerState`:

* `init(settings, x0, key)` starts a chain;
* `transition(settings, params, state, ...)` is one update of the images, the stop at
  the decision boundary and the hand-off between stages included;
* `run(settings, params, x0, key, ...)` repeats `transition` in a `lax.while_loop`
  until the chain is done, with no host round trip per step.

`make_sampler(logit_fn, ...)` checks its arguments, builds the `Settings` and returns
`init`, `step` and `run` closed over them (a `Sampler`), checking their arguments in
Python before anything is traced. A Python loop of `step` until `state.done` gives
what `run` gives. Nothing here is jitted; callers `jax.jit`, `jax.vmap` or shard.

Any pure `logit_fn(params, x)` works (higher = more "real"), with `params` a pytree
whose leaves have a leading stage axis (see `innjax.cascade`; `single(params)` adds
one to the params of a single energy), so the same code drives our CNN cascade, a
patch head or an analytic energy. Two energies:

* ``mode="sum"`` ascends sum_a logit_a(x) over all (active) stages: the log of the
  cascade density of paper eq. 12.
* ``mode="sequential"`` does what the authors' code and paper 3.3 do: stage a moves x
  with its own logit only, starting from stage a-1's output; each stage stops at its
  own decision boundary (or its step cap) and the optimizer state is reset.

The image optimizer is any `optax.GradientTransformation` (Adam by default, SGD, or
one of your own), optionally plus Gaussian (Langevin) noise with an annealed scale;
then x is clipped to the data range, if a range is given. A chain may stop early when
the batch-mean P(real) over the last `stop_window` steps reaches `stop_prob`.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import optax

from innjax import cascade

MODES = ("sum", "sequential")
OPTIMIZERS = ("adam", "sgd")
NOISE_SCHEDULES = ("constant", "linear", "cosine")
# What the early stop in sum mode compares with stop_prob (sequential mode always
# uses the stage being followed): "newest" the batch-mean P(real) of the newest active
# stage (the paper: synthesise until the newest classifier is fooled), "all" the
# smallest of every active stage's, "sum" the sigmoid of the summed logits.
STOP_ON = ("newest", "all", "sum")


class SamplerState(NamedTuple):
  """The sampler's state: a pytree, safe to jit, vmap, shard and checkpoint.

  Attributes:
    x: the images being synthesised.
    opt_state: the image optimizer's state (Adam's moments; reset at each stage).
    key: PRNG key; per-step keys are folded in from it and `step`.
    step: total number of updates applied so far (int32 scalar).
    stage: the stage being followed in sequential mode (always 0 in sum mode).
    stage_step: updates applied in the current stage (drives the noise schedule and
      the step cap; reset when sequential mode moves to the next stage).
    prob_history: the last `stop_window` batch-mean P(real) values (ring buffer).
    done: whether the chain has finished: every stage it follows ended at its
      boundary or its cap. A `step` of a finished chain leaves it as it is.
  """

  x: jax.Array
  opt_state: optax.OptState
  key: jax.Array
  step: jax.Array
  stage: jax.Array
  stage_step: jax.Array
  prob_history: jax.Array
  done: jax.Array


class StepInfo(NamedTuple):
  """What one `step` saw, evaluated at x *before* its update.

  Attributes:
    mean_prob: the batch-mean P(real) the early stop tests (sum mode: as chosen by
      `stop_on`; sequential mode: the current stage's).
    logits: the energy logits (the summed cascade logits in sum mode, the current
      stage's in sequential mode).
    stage: the stage this step followed (0 in sum mode).
    applied: whether x moved: False when the stop fired, or the chain was done.
    crossed: whether the stop fired: the windowed P(real) reached stop_prob at this
      x, so x is kept and the stage ends here.
  """

  mean_prob: jax.Array
  logits: jax.Array
  stage: jax.Array
  applied: jax.Array
  crossed: jax.Array


class RunInfo(NamedTuple):
  """The outcome of `run`.

  Attributes:
    steps: updates applied: a scalar in sum mode, per stage (num_stages,) in
      sequential mode (0 for masked-out stages).
    mean_prob: the stop statistic of the returned images: in sum mode the
      batch-mean P(real) chosen by `stop_on`, in sequential mode the last active
      stage's.
    stopped_early: whether the (last) stage ended at its boundary rather than the cap.
  """

  steps: jax.Array
  mean_prob: jax.Array
  stopped_early: jax.Array


class Settings(NamedTuple):
  """The static part of a sampler, checked by `make_sampler` (see its arguments).

  Python values and functions, not arrays: close over them (`make_sampler` does)
  rather than passing them through `jax.jit`.

  Attributes:
    logit_fn: fn(stage_params, x, key) -> logits; the key is dropped for a logit_fn
      built without `needs_key`.
    mode: "sum" or "sequential".
    strategy: how sum mode maps over the stage axis.
    stop_on: which P(real) sum mode's early stop tests.
    stop_prob: the early-stop threshold, or None.
    stop_window: how many steps' P(real) the stop averages.
    optimizer: the image optimizer (gradient clipping chained in front).
    noise_scale: the std of the Langevin noise; 0 for none.
    noise_schedule: fn(stage_step) -> multiplier of noise_scale.
    clip: (low, high) range of x, or None.
    max_steps: the step cap (per stage in sequential mode).
  """

  logit_fn: Callable
  mode: str
  strategy: str
  stop_on: str
  stop_prob: Optional[float]
  stop_window: int
  optimizer: optax.GradientTransformation
  noise_scale: float
  noise_schedule: Callable
  clip: Optional[tuple]
  max_steps: int


class Sampler(NamedTuple):
  """A sampler: pure functions `init`, `step` and `run` (see `make_sampler`)."""

  init: Callable[..., SamplerState]
  step: Callable[..., tuple]
  run: Callable[..., tuple]


# ----------------------------------------------------------------------------
# The pure pieces: init, one transition, and the run built from it.


def init(settings: Settings, x0: jax.Array, key: jax.Array) -> SamplerState:
  """Starts a chain at x0 (clipped into range) with a fresh optimizer state."""
  x0 = jnp.asarray(x0, jnp.float32)
  if settings.clip is not None:
    x0 = jnp.clip(x0, *settings.clip)
  # A buffer per counter, not one shared: a caller that jits `step` with the state
  # donated (donate_argnums) would otherwise donate the same buffer twice.
  counter = lambda: jnp.zeros((), jnp.int32)
  return SamplerState(
    x=x0,
    opt_state=settings.optimizer.init(x0),
    key=key,
    step=counter(),
    stage=counter(),
    stage_step=counter(),
    prob_history=jnp.zeros((settings.stop_window,), jnp.float32),
    done=jnp.zeros((), bool),
  )


def transition(
  settings: Settings,
  params: Any,
  state: SamplerState,
  mask: Optional[jax.Array] = None,
  max_steps: Any = None,
) -> tuple[SamplerState, StepInfo]:
  """One update of the chain, with the stop and the hand-off between stages.

  The energy and its gradient are evaluated at the current x. If the mean P(real)
  over the window has reached stop_prob, x is kept (the check and the gradient share
  one forward pass, as in the published code) and the followed stage ends; otherwise
  the update is applied, and the stage ends when it reaches its step cap. When a stage
  ends, sequential mode moves to the next active stage with a fresh optimizer state,
  and the chain is done after the last one; sum mode follows the whole cascade as one
  stage, so its chain is then done.

  Args:
    settings: the sampler's `Settings`.
    params: the stacked cascade (leading stage axis).
    state: the chain's state.
    mask: optional (num_stages,) bool, the active stages.
    max_steps: step cap overriding `settings.max_steps`: a scalar, or one per stage
      (sequential mode); may be traced.

  Returns:
    (the new state, the `StepInfo` of the x it started from).
  """
  total = cascade.num_stages(params)
  active = jnp.ones((total,), bool) if mask is None else mask
  cap = settings.max_steps if max_steps is None else max_steps
  cap = jnp.broadcast_to(jnp.asarray(cap, jnp.int32), (total,))
  sequential = settings.mode == "sequential"
  # Sequential mode follows the first active stage from state.stage on.
  stage = _next_active(active, state.stage, total) if sequential else state.stage
  done = state.done | (stage >= total)
  stage = jnp.minimum(stage, total - 1)
  energy_key, noise_key = jax.random.split(jax.random.fold_in(state.key, state.step))
  logits, grad, mean_prob = _logits_and_grad(
    settings, params, state.x, stage, mask, energy_key
  )
  history = jnp.roll(state.prob_history, 1).at[0].set(mean_prob)
  crossed = _reached_stop(settings, history, state.stage_step + 1) & ~done
  x, opt_state = _move(
    settings, state.x, state.opt_state, grad, state.stage_step, noise_key
  )
  moved = state._replace(
    x=x,
    opt_state=opt_state,
    step=state.step + 1,
    stage=stage,
    stage_step=state.stage_step + 1,
    prob_history=history,
  )
  kept = _select(crossed, state._replace(stage=stage, prob_history=history), moved)
  following = _next_active(active, stage + 1, total) if sequential else total
  handed = kept._replace(
    opt_state=settings.optimizer.init(kept.x),
    stage=following if sequential else stage,
    stage_step=jnp.zeros_like(kept.stage_step),
    prob_history=jnp.zeros_like(history),
    done=jnp.asarray(following >= total),
  )
  new_state = _select(crossed | (kept.stage_step >= cap[stage]), handed, kept)
  # A finished chain stays as it is, so a loop of steps may run past its end.
  new_state = _select(done, state._replace(done=jnp.array(True)), new_state)
  info = StepInfo(
    mean_prob=mean_prob,
    logits=logits,
    stage=stage,
    applied=~(crossed | done),
    crossed=crossed,
  )
  return new_state, info


def run(
  settings: Settings,
  params: Any,
  x0: jax.Array,
  key: jax.Array,
  mask: Optional[jax.Array] = None,
  max_steps: Any = None,
) -> tuple[jax.Array, RunInfo]:
  """Runs a chain from x0 until it is done: `transition` in a `lax.while_loop`.

  Args: as `transition`, with the starting images `x0` and PRNG `key` for `init`.

  Returns:
    (the final images, `RunInfo`).
  """
  total = cascade.num_stages(params)

  def advance(carry):
    state, steps, _ = carry
    state, info = transition(settings, params, state, mask, max_steps)
    steps = steps + info.applied * jax.nn.one_hot(info.stage, total, dtype=jnp.int32)
    return state, steps, info.crossed

  start = (init(settings, x0, key), jnp.zeros((total,), jnp.int32), jnp.array(False))
  state, steps, crossed = lax.while_loop(lambda carry: ~carry[0].done, advance, start)
  active = jnp.ones((total,), bool) if mask is None else mask
  final_prob = _final_statistic(
    settings,
    params,
    state.x,
    jnp.maximum(_last_active(active, total), 0),
    mask,
    jax.random.fold_in(state.key, state.step),
  )
  steps = steps if settings.mode == "sequential" else state.step
  return state.x, RunInfo(steps=steps, mean_prob=final_prob, stopped_early=crossed)


def _logits_and_grad(
  settings: Settings,
  params: Any,
  x: jax.Array,
  stage: jax.Array,
  mask: Optional[jax.Array],
  key: jax.Array,
) -> tuple:
  """The logits being ascended at x, their gradient, and the stop statistic.

  Sum mode ascends the summed logits of the active stages, sequential mode the logits
  of `stage` alone.
  """
  fn = lambda p, xx: settings.logit_fn(p, xx, key)
  if settings.mode == "sequential":
    stage_params = _materialized(cascade.get_stage(params, stage))

    def stage_objective(xx):
      logits = fn(stage_params, xx)
      return jnp.sum(logits), logits

    grad, logits = jax.grad(stage_objective, has_aux=True)(x)
    return logits, grad, _mean_prob(logits)
  if settings.strategy == "scan":
    logits, grad, stage_probs = _scan_logits_and_grad(fn, params, x, mask)
  else:

    def cascade_objective(xx):
      per_stage = cascade.stage_logits(fn, params, xx, settings.strategy, mask)
      return jnp.sum(per_stage), per_stage.astype(jnp.float32)

    grad, per_stage = jax.grad(cascade_objective, has_aux=True)(x)
    logits, stage_probs = per_stage.sum(axis=0), _stage_mean_probs(per_stage)
  return logits, grad, _stop_statistic(settings.stop_on, logits, stage_probs, mask)


def _final_statistic(
  settings: Settings,
  params: Any,
  x: jax.Array,
  stage: jax.Array,
  mask: Optional[jax.Array],
  key: jax.Array,
) -> jax.Array:
  """The stop statistic at x, from a forward pass only (for RunInfo)."""
  fn = lambda p, xx: settings.logit_fn(p, xx, key)
  if settings.mode == "sequential":
    return _mean_prob(fn(cascade.get_stage(params, stage), x))
  per_stage = cascade.stage_logits(fn, params, x, settings.strategy, mask)
  per_stage = per_stage.astype(jnp.float32)
  return _stop_statistic(
    settings.stop_on, per_stage.sum(axis=0), _stage_mean_probs(per_stage), mask
  )


def _stop_statistic(
  stop_on: str, logits: jax.Array, stage_probs: jax.Array, mask: Optional[jax.Array]
) -> jax.Array:
  """Sum mode's batch-mean P(real) that the early stop compares with stop_prob."""
  if stop_on == "sum":
    return _mean_prob(logits)
  total = stage_probs.shape[0]
  active = jnp.ones((total,), bool) if mask is None else jnp.asarray(mask, bool)
  if stop_on == "newest":
    return stage_probs[jnp.maximum(_last_active(active, total), 0)]
  return jnp.min(jnp.where(active, stage_probs, 1.0))


def _reached_stop(settings: Settings, history: jax.Array, seen: jax.Array) -> jax.Array:
  """Whether the mean P(real) over the last `stop_window` steps reached stop_prob.

  The window must be full, so a chain takes at least `stop_window` steps and stops
  only once it has stayed past the boundary on average (paper 4.1: "across some
  window of steps, usually 20"); stop_window=1 is the published code's rule.
  """
  if settings.stop_prob is None:
    return jnp.array(False)
  full = seen >= settings.stop_window
  return jnp.where(full, jnp.mean(history), 0.0) >= settings.stop_prob


def _move(
  settings: Settings,
  x: jax.Array,
  opt_state: Any,
  grad: jax.Array,
  stage_step: jax.Array,
  key: jax.Array,
) -> tuple:
  """The image update: the optimizer's step up the gradient, noise, then the clip."""
  # optax minimises: its step on -grad ascends the logits.
  updates, opt_state = settings.optimizer.update(-grad, opt_state, x)
  x = optax.apply_updates(x, updates)
  if settings.noise_scale > 0:
    scale = settings.noise_scale * settings.noise_schedule(stage_step.astype(jnp.float32))
    x = x + scale * jax.random.normal(key, x.shape, x.dtype)
  if settings.clip is not None:
    x = jnp.clip(x, *settings.clip)
  return x, opt_state


def _select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
  """`on_true` where the scalar `pred` holds, else `on_false`, leaf by leaf."""
  return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def _mean_prob(logits: jax.Array) -> jax.Array:
  """The batch-mean P(real) of some logits."""
  return jnp.mean(jax.nn.sigmoid(logits.astype(jnp.float32)))


# ----------------------------------------------------------------------------
# The builder.


def single(params: Any) -> Any:
  """The params of one energy as a one-stage cascade: adds the leading stage axis.

  `make_sampler(...).run(single(params), x0, key)` ascends logit_fn(params, x). The
  sampler reads a raw pytree as a stack of stages, and cannot tell the params of one
  energy whose leaves share a leading size (say `{"mu": (2,), "b": (2,)}`) from two
  stages of scalars; wrapping says which is meant.
  """
  return cascade.stack([params])


def make_sampler(
  logit_fn: Callable,
  step_size: float = 0.01,
  beta1: float = 0.9,
  beta2: float = 0.999,
  eps: float = 1e-8,
  max_steps: int = 1000,
  noise_scale: float = 0.0,
  noise_schedule: Union[str, Callable] = "linear",
  stop_prob: Optional[float] = None,
  stop_window: int = 1,
  clip: Optional[tuple] = None,
  mode: str = "sum",
  optimizer: Union[str, optax.GradientTransformation] = "adam",
  strategy: str = cascade.DEFAULT_STRATEGY,
  needs_key: bool = False,
  stop_on: str = "newest",
  grad_clip: Optional[float] = None,
) -> Sampler:
  """Builds the image-space sampler.

  The defaults are a library's: Adam with its usual betas, no early stop, no clip.
  INNg's values (paper 4: step_size 0.02 for faces/SVHN and 0.1 for textures,
  beta1 0.5, stop_prob 0.5, clip (-1, 1) for images in [-1, 1]) are set by the
  configs (`synthesis.*`) and passed explicitly.

  Args:
    logit_fn: pure fn(stage_params, x) -> logits (higher = more "real"): one logit
      per example, shape (batch,), or k per example laid out example by example,
      shape (batch * k,) (a patch head's logit per patch); the early stop uses their
      mean. Other shapes (a scalar for the batch, fewer logits than examples) are
      refused when `run` or `step` is traced.
    step_size: learning rate on the image (default 0.01).
    beta1, beta2, eps: Adam's hyper-parameters (default 0.9, 0.999, 1e-8).
    max_steps: step cap per `run` call in sum mode, per stage in sequential mode
      (default 1000); `run` and `step` can override it with a (traced) scalar or
      per-stage array.
    noise_scale: std of Gaussian noise added after each update (Langevin
      dynamics); 0 (default) disables it.
    noise_schedule: "constant", "linear" (default: to 0 at max_steps), "cosine", or
      a callable stage_step -> multiplier of noise_scale.
    stop_prob: stop when the batch-mean P(real) reaches this; None (default) never
      stops early. The published code stops at loss ln 2, i.e. 0.5.
    stop_window: average the batch-mean P(real) over the last this-many steps before
      comparing it with stop_prob (default 1); the window must be full, so every
      chain takes at least this many steps (the paper mentions about 20).
    clip: (low, high) to project x onto after every step; None (default) disables it.
    mode: "sum" (default) or "sequential" (see the module docstring).
    optimizer: the image optimizer: "adam" (default) or "sgd", built with optax from
      step_size (and beta1, beta2, eps), or any `optax.GradientTransformation`,
      used as given (step_size, beta1, beta2 and eps are then not read). It sees
      minus the gradient of the logits, as optax minimises.
    strategy: how sum mode maps over the stage axis: "scan", "unrolled", "vmap".
    needs_key: False (default): logit_fn is called as fn(stage_params, x). True: it
      is called as fn(stage_params, x, key) with a fresh PRNG key every step (random
      patch positions, dropout, ...). A logit_fn whose third positional parameter
      has no default is refused without needs_key=True.
    stop_on: sum mode only: which P(real) the early stop compares with
      stop_prob. "newest" (default) the newest active stage's batch mean: the
      paper synthesises until the newest classifier is fooled. "all" the smallest
      batch mean over the active stages (every classifier fooled). "sum" the
      sigmoid of the summed logits; the earlier stages, which the negatives
      already fool, then outvote the newest one and synthesis stops at once.
    grad_clip: clip each pixel's gradient to [-grad_clip, grad_clip] before the
      optimizer (EBM practice against exploding Langevin steps); None (default)
      disables it.

  Returns:
    A `Sampler` with:
      init(x0, key) -> SamplerState
      step(params, state, mask=None, max_steps=None) -> (SamplerState, StepInfo)
      run(params, x0, key, mask=None, max_steps=None) -> (x, RunInfo)
    `step` is one `transition`; stepping from `init(x0, key)` until `state.done`
    gives `run`'s images. `params` is a stacked pytree: every leaf has a leading stage
    axis (see `innjax.cascade.stack`). The params of one energy have none: pass
    `single(params)`, or a pytree whose leaves happen to share a leading size runs
    as that many stages. `x0` is a float batch (leading batch axis) and `key` a PRNG
    key (`jax.random.key(seed)`); `mask` an optional boolean (num_stages,) marking
    the active stages of a preallocated cascade; `max_steps` overrides the cap with
    an integer >= 1, or (sequential mode) one per stage. Wrong types and shapes
    raise before anything runs, naming the argument.

  Example (one Gaussian energy, no stage axis):
    s = make_sampler(lambda p, x: p["b"] - 0.5 * jnp.sum((x - p["mu"]) ** 2, -1),
                     step_size=0.05)
    x, info = jax.jit(s.run)(single({"mu": jnp.ones(2), "b": jnp.array(1.0)}),
                             jnp.zeros((8, 2)), jax.random.key(0))
  """
  # Checked and turned into Python numbers here, before anything is traced.
  max_steps = _positive_int("max_steps", max_steps)
  for name, value, choices in (
    ("mode", mode, MODES),
    ("strategy", strategy, cascade.STRATEGIES),
    ("stop_on", stop_on, STOP_ON),
  ):
    _check_choice(name, value, choices)
  settings = Settings(
    logit_fn=_with_key(logit_fn, needs_key),
    mode=mode,
    strategy=strategy,
    stop_on=stop_on,
    stop_prob=_check_stop_prob(stop_prob),
    stop_window=_positive_int("stop_window", stop_window),
    optimizer=_image_optimizer(optimizer, step_size, beta1, beta2, eps, grad_clip),
    noise_scale=_non_negative("noise_scale", noise_scale),
    noise_schedule=_schedule_fn(noise_schedule, max_steps),
    clip=_check_clip(clip),
    max_steps=max_steps,
  )

  def init_fn(x0: jax.Array, key: jax.Array) -> SamplerState:
    """Starts a chain at x0 (clipped into range) with a fresh optimizer state."""
    _check_x0(x0)
    _check_key(key)
    return init(settings, x0, key)

  def step_fn(params, state: SamplerState, mask=None, max_steps=None):
    """One `transition` of `state` under `params`; see `make_sampler`."""
    mask = _check_call(settings, params, state.x, state.key, mask, max_steps)
    return transition(settings, params, state, mask, max_steps)

  def run_fn(params, x0, key, mask=None, max_steps=None):
    """Runs a chain from x0 to its end; see `make_sampler`."""
    _check_x0(x0)
    _check_key(key)
    mask = _check_call(settings, params, x0, key, mask, max_steps)
    return run(settings, params, x0, key, mask, max_steps)

  return Sampler(init=init_fn, step=step_fn, run=run_fn)


def _with_key(logit_fn: Callable, needs_key: Any) -> Callable:
  """logit_fn as fn(stage_params, x, key), after checking `needs_key` against it.

  `needs_key` alone decides whether logit_fn gets a key; its signature is only read
  to refuse a contradiction before anything is traced.
  """
  if not callable(logit_fn):
    raise TypeError(
      f"logit_fn must be a function (params, x) -> logits, got {logit_fn!r}."
    )
  if needs_key is None:  # the former "detect" value: the signature no longer decides
    needs_key = False
  if not isinstance(needs_key, (bool, np.bool_)):
    raise TypeError(f"needs_key must be True or False, got {needs_key!r}.")
  positional = _positional_parameters(logit_fn)
  if positional is not None:  # None: *args or no signature, trust the caller
    if needs_key and len(positional) < 3:
      raise ValueError(
        "needs_key=True, but logit_fn takes only "
        f"{len(positional)} positional argument(s); give it a third parameter for "
        "the key, fn(params, x, key), or pass needs_key=False."
      )
    if (
      not needs_key
      and len(positional) >= 3
      and positional[2].default is inspect.Parameter.empty
    ):
      raise ValueError(
        f"logit_fn requires a third argument ({positional[2].name!r}), but "
        "needs_key is False: pass needs_key=True to call it as fn(params, x, key) "
        "with a fresh PRNG key every step, or give that parameter a default."
      )
  if needs_key:
    return logit_fn
  return lambda params, x, key: logit_fn(params, x)


def _image_optimizer(
  optimizer: Any, step_size: Any, beta1: Any, beta2: Any, eps: Any, grad_clip: Any
) -> optax.GradientTransformation:
  """The optax transformation that moves the images, gradient clipping in front."""
  if isinstance(optimizer, optax.GradientTransformation):
    tx = optimizer
  elif optimizer == "adam":
    tx = optax.adam(
      _positive("step_size", step_size),
      b1=_decay("beta1", beta1),
      b2=_decay("beta2", beta2),
      eps=_positive("eps", eps),
    )
  elif optimizer == "sgd":
    tx = optax.sgd(_positive("step_size", step_size))
  else:
    raise ValueError(
      f"optimizer must be one of {OPTIMIZERS} or an "
      f"optax.GradientTransformation, got {optimizer!r}."
    )
  if grad_clip is None:
    return tx
  return optax.chain(optax.clip(_positive("grad_clip", grad_clip)), tx)


def _schedule_fn(noise_schedule, max_steps: int) -> Callable:
  """The noise multiplier as a function of the stage's step."""
  if callable(noise_schedule):
    return noise_schedule
  if noise_schedule == "constant":
    return lambda t: jnp.ones_like(t, jnp.float32)
  if noise_schedule == "linear":
    return lambda t: jnp.clip(1.0 - t / max_steps, 0.0, 1.0)
  if noise_schedule == "cosine":
    return lambda t: 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.clip(t / max_steps, 0.0, 1.0)))
  raise ValueError(
    f"noise_schedule must be one of {NOISE_SCHEDULES} or a callable "
    f"step -> multiplier, got {noise_schedule!r}."
  )


def _check_call(
  settings: Settings, params: Any, x: Any, key: Any, mask: Any, max_steps: Any
) -> Optional[jax.Array]:
  """The checks `step` and `run` share; returns the mask as a bool array (or None)."""
  total = _num_stages(params)
  mask = cascade.check_mask(mask, total)
  _check_cap(max_steps, total, settings.mode)
  _check_logits(lambda p, xx: settings.logit_fn(p, xx, key), params, x, total)
  return mask


# ----------------------------------------------------------------------------
# Argument checks. Each runs in Python before anything is traced and raises a
# message that names the argument and says what it accepts.


def _number(name: str, value: Any) -> float:
  """`value` as a finite Python float; numpy scalars count, bools do not."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
  value = float(value)
  if not math.isfinite(value):
    raise ValueError(f"{name} must be a finite number, got {value!r}.")
  return value


def _positive(name: str, value: Any) -> float:
  """A number > 0 (step sizes, eps, grad_clip)."""
  if _number(name, value) <= 0:
    raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
  return float(value)


def _positive_int(name: str, value: Any) -> int:
  """An integer >= 1 (Python or numpy; step caps, window lengths)."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
    raise ValueError(f"{name} must be a positive integer, got {value!r}.")
  return int(value)


def _non_negative(name: str, value: Any) -> float:
  """A number >= 0 (noise_scale: 0 disables the noise)."""
  if _number(name, value) < 0:
    raise ValueError(f"{name} must be >= 0, got {value!r}.")
  return float(value)


def _decay(name: str, value: Any) -> float:
  """Adam's beta1 / beta2: a number in [0, 1)."""
  if not 0.0 <= _number(name, value) < 1.0:
    raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
  return float(value)


def _check_stop_prob(stop_prob: Any) -> Optional[float]:
  """stop_prob in the open interval (0, 1), or None (never stop early)."""
  if stop_prob is None:
    return None
  if (
    isinstance(stop_prob, numbers.Real)
    and not isinstance(stop_prob, bool)
    and 0.0 < stop_prob < 1.0
  ):
    return float(stop_prob)
  raise ValueError(
    f"stop_prob must be in the open interval (0, 1), or None to never stop "
    f"early; got {stop_prob!r}."
  )


def _check_clip(clip: Any) -> Optional[tuple]:
  """clip as a (low, high) pair of floats with low < high, or None."""
  if clip is None:
    return None
  fix = "give clip=(low, high) with low < high, e.g. (-1.0, 1.0), or None"
  if isinstance(clip, (str, bytes)) or not hasattr(clip, "__len__") or len(clip) != 2:
    raise ValueError(f"clip must be a (low, high) pair, got {clip!r}: {fix}.")
  low, high = _number("clip[0]", clip[0]), _number("clip[1]", clip[1])
  if not low < high:
    raise ValueError(f"clip must be (low, high) with low < high, or None; got {clip!r}.")
  return low, high


def _check_choice(name: str, value: Any, choices: tuple) -> None:
  if value not in choices:
    raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def _positional_parameters(fn: Callable) -> Optional[list]:
  """`fn`'s positional parameters, or None when it has *args or no signature."""
  try:
    parameters = inspect.signature(fn).parameters.values()
  except (TypeError, ValueError):
    return None
  if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
    return None
  return [
    p
    for p in parameters
    if p.kind
    in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
  ]


def _num_stages(params: Any) -> int:
  """The stage count of `params`, with the fix for params that have no stage axis."""
  try:
    return cascade.num_stages(params)
  except ValueError as err:
    raise ValueError(
      f"params: {err} For a single energy without a stage axis, pass "
      "innjax.sampler.single(params)."
    ) from None


def _check_x0(x0: Any) -> None:
  """x0 must be a float batch: integer images would be cast and clipped silently."""
  dtype = x0.dtype if hasattr(x0, "dtype") else np.asarray(x0).dtype
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(
      f"x0 must be a float array of images in the data range, got dtype {dtype}; "
      "convert integer images first, e.g. innjax.data.to_float(x0) maps uint8 to "
      "[-1, 1]."
    )
  if jnp.ndim(x0) < 1:
    raise ValueError("x0 must have a leading batch axis, got a scalar.")


def _check_key(key: Any) -> None:
  """key must be a PRNG key: a typed key (jax.random.key) or legacy uint32 key data."""
  dtype = getattr(key, "dtype", None)
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    return
  if dtype == np.uint32 and jnp.ndim(key) == 1:  # jax.random.PRNGKey(seed)
    return
  raise TypeError(
    f"key must be a PRNG key, e.g. jax.random.key(0), got {key!r}"
    f"{'' if dtype is None else f' of dtype {dtype}'}."
  )


def _check_cap(max_steps: Any, total: int, mode: str) -> None:
  """The `max_steps` given to run or step: >= 1, and (sequential mode) one per stage."""
  if max_steps is None:
    return
  shape = jnp.shape(max_steps)
  if not jnp.issubdtype(jnp.result_type(max_steps), jnp.integer):
    raise TypeError(
      f"run's max_steps must be an integer (or integer array), got {max_steps!r}."
    )
  if mode == "sum" and shape != ():
    raise ValueError(
      f"run's max_steps must be one integer in sum mode, got shape {shape}; one "
      "cap per stage needs mode='sequential'."
    )
  if shape not in ((), (total,)):
    raise ValueError(
      f"run's max_steps must be one integer or one per stage (shape ({total},) for "
      f"this cascade of {total} stages), got shape {shape}."
    )
  try:
    too_small = bool(np.any(np.asarray(max_steps) < 1))
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return  # traced: its value is not known here
  if too_small:
    raise ValueError(
      f"run's max_steps must be >= 1 (a stage takes at least one step), "
      f"got {max_steps!r}."
    )


def _check_logits(call: Callable, params: Any, x: Any, total: int) -> None:
  """Refuses a logit_fn that does not return one logit (or k logits) per example.

  A scalar would stop the chain on a statistic of the wrong images, and a short
  vector would leave the images without a logit unmoved; both ran silently.
  """
  try:
    out = jax.eval_shape(lambda: call(cascade.get_stage(params, 0), x))
  except (TypeError, ValueError) as err:
    if hasattr(err, "add_note"):  # Python >= 3.11
      err.add_note(
        f"The sampler read params as a cascade of {total} stage(s), cutting the "
        "leading axis of every leaf, and called logit_fn on stage 0; for the params "
        "of one energy, pass innjax.sampler.single(params)."
      )
    raise
  batch = jnp.shape(x)[0]
  shape = tuple(getattr(out, "shape", ()))
  size = math.prod(shape)
  per_example = (
    len(shape) >= 1
    and size >= batch
    and size % max(batch, 1) == 0
    and (len(shape) == 1 or shape[0] == batch)
  )
  if not per_example:
    raise ValueError(
      f"logit_fn must return one logit per example: shape ({batch},) for this "
      f"batch of {batch} (a patch head may return k per example, shape "
      f"({batch}*k,)); got shape {shape}. Sum or average over the other axes "
      "inside logit_fn, not over the batch."
    )


# ----------------------------------------------------------------------------
# The stage axis.


def _scan_logits_and_grad(
  fn: Callable, stacked: Any, x: jax.Array, mask: Optional[jax.Array]
) -> tuple:
  """`cascade_logits(fn, stacked, x, "scan", mask)` and the gradient of its sum.

  The same numbers as `jax.grad` of the scanned sum (up to the order of float
  additions), computed stage by stage: each scan iteration runs one stage's forward
  and backward pass and adds its gradient to the carry. `jax.grad` of a scan instead
  stores every stage's activations for a reverse scan, so its memory grows with the
  number of stages (10 paper-network stages, 32x32, batch 100: 263 MB of XLA
  temporaries against 71 MB here, at the same speed).

  Returns:
    (summed float32 logits, d sum(logits) / dx, (num_stages,) batch-mean P(real)
    of each stage, 0 for inactive ones).
  """
  total = cascade.num_stages(stacked)
  shape = jax.eval_shape(lambda: fn(cascade.get_stage(stacked, 0), x)).shape

  def one(stage):
    stage = _materialized(stage)
    logits, vjp = jax.vjp(lambda xx: fn(stage, xx).astype(jnp.float32), x)
    return logits, vjp(jnp.ones_like(logits))[0]

  def skip(_):
    return jnp.zeros(shape, jnp.float32), jnp.zeros_like(x)

  if mask is None:

    def body(carry, inputs):
      logits, grad = one(inputs[0])
      return (carry[0] + logits, carry[1] + grad), _mean_prob(logits)
  else:
    mask = cascade.check_mask(mask, total)

    # lax.cond skips an inactive slot's forward and backward pass entirely.
    def body(carry, inputs):
      logits, grad = lax.cond(inputs[1], one, skip, inputs[0])
      prob = jnp.where(inputs[1], _mean_prob(logits), 0.0)
      return (carry[0] + logits, carry[1] + grad), prob

  active = jnp.ones((total,), bool) if mask is None else mask
  (logits, grad), probs = lax.scan(body, skip(None), (stacked, active))
  return logits, grad, probs


def _stage_mean_probs(per_stage: jax.Array) -> jax.Array:
  """(num_stages, ...) logits -> (num_stages,) batch-mean P(real) per stage."""
  return jnp.mean(jax.nn.sigmoid(per_stage).reshape(per_stage.shape[0], -1), axis=1)


def _materialized(stage_params: Any) -> Any:
  """One stage's variables, cut out of the stacked cascade into their own buffers.

  Without the barrier XLA is free to fuse the slice by (traced) stage index into the
  weights' consumers, and on CPU a step through a stacked cascade measured 30%
  slower than through a single stage (paper network, 3 stages, batch 50: 466 vs 351
  ms in sequential mode); with it the slice is one copy of one stage's weights and
  the two cost the same.
  """
  return lax.optimization_barrier(stage_params)


def _next_active(active: jax.Array, start, total: int) -> jax.Array:
  """Index of the first active stage at or after `start`, or `total` if none."""
  idx = jnp.arange(total)
  candidates = jnp.where(active & (idx >= start), idx, total)
  return jnp.min(candidates).astype(jnp.int32)


def _last_active(active: jax.Array, total: int) -> jax.Array:
  """Index of the last active stage, or -1 if none."""
  idx = jnp.arange(total)
  return jnp.max(jnp.where(active, idx, -1)).astype(jnp.int32)
