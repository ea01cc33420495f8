"""The image-space sampler: gradient ascent on x through a cascade of classifiers.

This is INNg's synthesis step (paper 3.2.2 and 3.3) written as a reusable, pure
sampler in the style of blackjax: `make_sampler(...)` returns `init`, `step` and `run`
functions over an immutable `SamplerState`. Nothing here is jitted; callers `jax.jit`,
`jax.vmap` or shard them. Any pure `logit_fn(params, x)` works (higher = more "real"),
with `params` a pytree whose leaves have a leading stage axis (see `innjax.cascade`;
`single(params)` adds one to the params of a single energy), so the same code drives
our CNN cascade, a patch head, or an analytic energy. Every argument is checked in
Python before anything is traced, with a message that names it.

Two energies:

* ``mode="sum"`` ascends sum_a logit_a(x) over all (active) stages: the log of the
  cascade density of paper eq. 12.
* ``mode="sequential"`` does what the authors' code and paper 3.3 do: stage a moves x
  with its own logit only, starting from stage a-1's output; each stage stops at its
  own decision boundary (or its step cap) and the optimizer state is reset.

The update is Adam on the image (the paper: lr 0.02 for faces/SVHN, 0.1 for textures,
beta1 0.5), or plain SGD, optionally plus Gaussian (Langevin) noise with an annealed
scale, then x is clipped to the data range. A chain stops early when the batch-mean
P(real) over the last `stop_window` steps reaches `stop_prob`; the early stop runs
inside `lax.while_loop`, with no host round trip per step.
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
    mu: Adam's first moment (zeros for SGD).
    nu: Adam's second moment (zeros for SGD).
    key: PRNG key; per-step keys are folded in from it and `step`.
    step: total number of updates applied so far (int32 scalar).
    stage: the stage being followed in sequential mode (always 0 in sum mode).
    stage_step: updates applied in the current stage (drives bias correction and
      the noise schedule; reset when sequential mode moves to the next stage).
    prob_history: the last `stop_window` batch-mean P(real) values (ring buffer).
  """
  x: jax.Array
  mu: jax.Array
  nu: jax.Array
  key: jax.Array
  step: jax.Array
  stage: jax.Array
  stage_step: jax.Array
  prob_history: jax.Array


class StepInfo(NamedTuple):
  """What one `step` saw, evaluated at x *before* its update.

  Attributes:
    mean_prob: the batch-mean P(real) the early stop tests (sum mode: as chosen by
      `stop_on`; sequential mode: the current stage's).
    logits: the energy logits (the summed cascade logits in sum mode, the current
      stage's in sequential mode).
    grad_norm: global L2 norm of the gradient with respect to x.
  """
  mean_prob: jax.Array
  logits: jax.Array
  grad_norm: jax.Array


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


class Sampler(NamedTuple):
  """A sampler: pure functions `init`, `step` and `run` (see `make_sampler`)."""
  init: Callable[..., SamplerState]
  step: Callable[..., tuple]
  run: Callable[..., tuple]


def _schedule_fn(noise_schedule, max_steps: int) -> Callable:
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
      f"step -> multiplier, got {noise_schedule!r}.")


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
  if isinstance(stop_prob, numbers.Real) and not isinstance(stop_prob, bool) \
      and 0.0 < stop_prob < 1.0:
    return float(stop_prob)
  raise ValueError(
      f"stop_prob must be in the open interval (0, 1), or None to never stop "
      f"early; got {stop_prob!r}.")


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
  return [p for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                             inspect.Parameter.POSITIONAL_OR_KEYWORD)]


def _takes_key(fn: Callable) -> bool:
  """Whether `fn` declares it wants a PRNG key (e.g. a random-patch head).

  Only a `needs_key` attribute or a *required* third positional parameter counts:
  a keyword-only parameter, **kwargs or a defaulted third parameter (say
  `temperature=2.0`) is not a key, and would be filled with one by mistake.
  """
  if getattr(fn, "needs_key", False):
    return True
  positional = _positional_parameters(fn)
  return (positional is not None and len(positional) >= 3
          and positional[2].default is inspect.Parameter.empty)


def _check_needs_key(logit_fn: Callable, needs_key: Any) -> bool:
  """The sampler's `needs_key`: detected when None, checked against the signature."""
  if not callable(logit_fn):
    raise TypeError(f"logit_fn must be a function (params, x) -> logits, got "
                    f"{logit_fn!r}.")
  if needs_key is None:
    return _takes_key(logit_fn)
  if not isinstance(needs_key, (bool, np.bool_)):
    raise TypeError(f"needs_key must be True, False or None (detect), got {needs_key!r}.")
  positional = _positional_parameters(logit_fn)
  if positional is None:  # *args or no signature: trust the caller
    return bool(needs_key)
  if needs_key and len(positional) < 3:
    raise ValueError(
        "needs_key=True, but logit_fn takes only "
        f"{len(positional)} positional argument(s); give it a third parameter for "
        "the key, fn(params, x, key), or pass needs_key=False.")
  if not needs_key and len(positional) >= 3 and \
      positional[2].default is inspect.Parameter.empty:
    raise ValueError(
        f"needs_key=False, but logit_fn requires a third argument "
        f"({positional[2].name!r}); pass needs_key=True to give it a PRNG key, or "
        "give that parameter a default.")
  return bool(needs_key)


def _num_stages(params: Any) -> int:
  """The stage count of `params`, with the fix for params that have no stage axis."""
  try:
    return cascade.num_stages(params)
  except ValueError as err:
    raise ValueError(
        f"params: {err} For a single energy without a stage axis, pass "
        "innjax.sampler.single(params).") from None


def _check_x0(x0: Any) -> None:
  """x0 must be a float batch: integer images would be cast and clipped silently."""
  dtype = x0.dtype if hasattr(x0, "dtype") else np.asarray(x0).dtype
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(
        f"x0 must be a float array of images in the data range, got dtype {dtype}; "
        "convert integer images first, e.g. innjax.data.to_float(x0) maps uint8 to "
        "[-1, 1].")
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
      f"{'' if dtype is None else f' of dtype {dtype}'}.")


def _check_cap(max_steps: Any, total: int, mode: str) -> None:
  """run's `max_steps`: an integer, or (sequential mode) one per stage."""
  if max_steps is None:
    return
  shape = jnp.shape(max_steps)
  if not jnp.issubdtype(jnp.result_type(max_steps), jnp.integer):
    raise TypeError(f"run's max_steps must be an integer (or integer array), got "
                    f"{max_steps!r}.")
  if mode == "sum" and shape != ():
    raise ValueError(
        f"run's max_steps must be one integer in sum mode, got shape {shape}; one "
        "cap per stage needs mode='sequential'.")
  if shape not in ((), (total,)):
    raise ValueError(
        f"run's max_steps must be one integer or one per stage (shape ({total},) for "
        f"this cascade of {total} stages), got shape {shape}.")


def _check_logits(call: Callable, params: Any, x: Any) -> None:
  """Refuses a logit_fn that does not return one logit (or k logits) per example.

  A scalar would stop the chain on a statistic of the wrong images, and a short
  vector would leave the images without a logit unmoved; both ran silently.
  """
  out = jax.eval_shape(lambda: call(cascade.get_stage(params, 0), x))
  batch = jnp.shape(x)[0]
  shape = tuple(getattr(out, "shape", ()))
  size = math.prod(shape)
  per_example = (len(shape) >= 1 and size >= batch and size % max(batch, 1) == 0
                 and (len(shape) == 1 or shape[0] == batch))
  if not per_example:
    raise ValueError(
        f"logit_fn must return one logit per example: shape ({batch},) for this "
        f"batch of {batch} (a patch head may return k per example, shape "
        f"({batch}*k,)); got shape {shape}. Sum or average over the other axes "
        "inside logit_fn, not over the batch.")


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
    step_size: float = 0.02,
    beta1: float = 0.5,
    beta2: float = 0.999,
    eps: float = 1e-8,
    max_steps: int = 500,
    noise_scale: float = 0.0,
    noise_schedule: Union[str, Callable] = "linear",
    stop_prob: Optional[float] = 0.5,
    stop_window: int = 1,
    clip: Optional[tuple] = (-1.0, 1.0),
    mode: str = "sum",
    optimizer: str = "adam",
    strategy: str = cascade.DEFAULT_STRATEGY,
    needs_key: Optional[bool] = None,
    stop_on: str = "newest",
    grad_clip: Optional[float] = None,
) -> Sampler:
  """Builds the image-space sampler.

  Args:
    logit_fn: pure fn(stage_params, x) -> logits (higher = more "real"): one logit
      per example, shape (batch,), or k per example laid out example by example,
      shape (batch * k,) (a patch head's logit per patch); the early stop uses their
      mean. Other shapes (a scalar for the batch, fewer logits than examples) are
      refused when `run` or `step` is traced. With `needs_key` it is called as
      fn(stage_params, x, key) with a fresh key per step (random patch positions,
      dropout, ...).
    step_size: learning rate on the image (paper: 0.02 faces/SVHN, 0.1 textures).
    beta1, beta2, eps: Adam's hyper-parameters (paper: beta1 = 0.5).
    max_steps: step cap per `run` call in sum mode, per stage in sequential mode;
      `run` can override it with a (traced) scalar or per-stage array.
    noise_scale: std of Gaussian noise added after each update (Langevin
      dynamics); 0 disables it.
    noise_schedule: "constant", "linear" (to 0 at max_steps), "cosine", or a
      callable stage_step -> multiplier of noise_scale.
    stop_prob: stop when the batch-mean P(real) reaches this; None never stops
      early. The published code stops at loss ln 2, i.e. 0.5.
    stop_window: average the batch-mean P(real) over the last this-many steps before
      comparing it with stop_prob; the window must be full, so every chain takes at
      least this many steps (the paper mentions a window of about 20).
    clip: (low, high) to project x after every step; None disables it.
    mode: "sum" or "sequential" (see module docstring).
    optimizer: "adam" or "sgd".
    strategy: how sum mode maps over the stage axis: "scan", "unrolled", "vmap".
    needs_key: True: logit_fn takes a PRNG key as its third argument; False: it
      does not. None detects it: a `needs_key = True` attribute on the function, or
      a third positional parameter without a default. A keyword-only parameter,
      **kwargs or a defaulted third parameter (`temperature=2.0`) is not a key; say
      needs_key=True when such a function does want one.
    stop_on: sum mode only: which P(real) the early stop compares with
      stop_prob. "newest" (default) the newest active stage's batch mean: the
      paper synthesises until the newest classifier is fooled. "all" the smallest
      batch mean over the active stages (every classifier fooled). "sum" the
      sigmoid of the summed logits; the earlier stages, which the negatives
      already fool, then outvote the newest one and synthesis stops at once.
    grad_clip: clip each pixel's gradient to [-grad_clip, grad_clip] before the
      update (EBM practice against exploding Langevin steps); None disables it.

  Returns:
    A `Sampler` with:
      init(x0, key) -> SamplerState
      step(params, state, mask=None) -> (SamplerState, StepInfo)
      run(params, x0, key, mask=None, max_steps=None) -> (x, RunInfo)
    `params` is a stacked pytree: every leaf has a leading stage axis (see
    `innjax.cascade.stack`). The params of one energy have none: pass
    `single(params)`, or a pytree whose leaves happen to share a leading size
    runs as that many stages. `x0` is a float batch (leading batch axis) and `key`
    a PRNG key (`jax.random.key(seed)`); `mask` an optional boolean (num_stages,)
    marking the active stages of a preallocated cascade; `max_steps` overrides
    the cap with an integer, or (sequential mode) one per stage. Wrong types and
    shapes raise before anything runs, naming the argument.

  Example (one Gaussian energy, no stage axis):
    s = make_sampler(lambda p, x: p["b"] - 0.5 * jnp.sum((x - p["mu"]) ** 2, -1),
                     step_size=0.05, stop_prob=None, clip=None)
    x, info = jax.jit(s.run)(single({"mu": jnp.ones(2), "b": jnp.array(1.0)}),
                             jnp.zeros((8, 2)), jax.random.key(0))
  """
  # Checked and turned into Python numbers here, before anything is traced.
  step_size, eps = _positive("step_size", step_size), _positive("eps", eps)
  beta1, beta2 = _decay("beta1", beta1), _decay("beta2", beta2)
  max_steps = _positive_int("max_steps", max_steps)
  noise_scale = _non_negative("noise_scale", noise_scale)
  stop_prob = _check_stop_prob(stop_prob)
  stop_window = _positive_int("stop_window", stop_window)
  clip = _check_clip(clip)
  for name, value, choices in (("mode", mode, MODES), ("optimizer", optimizer, OPTIMIZERS),
                               ("strategy", strategy, cascade.STRATEGIES),
                               ("stop_on", stop_on, STOP_ON)):
    _check_choice(name, value, choices)
  grad_clip = None if grad_clip is None else _positive("grad_clip", grad_clip)
  needs_key = _check_needs_key(logit_fn, needs_key)
  schedule = _schedule_fn(noise_schedule, max_steps)
  default_cap = max_steps

  def stage_logits_fn(stage_params, x, key):
    return logit_fn(stage_params, x, key) if needs_key else logit_fn(stage_params, x)

  def check_logits(params, x, key):
    _check_logits(lambda p, xx: stage_logits_fn(p, xx, key), params, x)

  def energy_logits(params, x, stage, mask, key):
    """The logits being ascended at this step (before summing over the batch)."""
    if mode == "sum":
      fn = (lambda p, xx: stage_logits_fn(p, xx, key))
      return cascade.cascade_logits(fn, params, x, strategy, mask)
    return stage_logits_fn(_materialized(cascade.get_stage(params, stage)), x, key)

  def sum_logits_and_grad(params, x, mask, key):
    """Sum mode: (summed logits, their gradient, per-stage batch-mean P(real))."""
    fn = (lambda p, xx: stage_logits_fn(p, xx, key))
    if strategy == "scan":
      return _scan_logits_and_grad(fn, params, x, mask)

    def objective(x):
      per_stage = cascade.stage_logits(fn, params, x, strategy, mask)
      return jnp.sum(per_stage), per_stage.astype(jnp.float32)

    grad, per_stage = jax.grad(objective, has_aux=True)(x)
    return per_stage.sum(axis=0), grad, _stage_mean_probs(per_stage)

  def stop_statistic(logits, stage_probs, mask):
    """The batch-mean P(real) that the early stop compares with stop_prob."""
    if mode == "sequential" or stop_on == "sum":
      return jnp.mean(jax.nn.sigmoid(logits.astype(jnp.float32)))
    total = stage_probs.shape[0]
    active = jnp.ones((total,), bool) if mask is None else jnp.asarray(mask, bool)
    if stop_on == "newest":
      return stage_probs[jnp.maximum(_last_active(active, total), 0)]
    return jnp.min(jnp.where(active, stage_probs, 1.0))

  def final_statistic(params, x, stage, mask, key):
    """The stop statistic at x, from a forward pass only (for RunInfo)."""
    if mode == "sequential":
      return stop_statistic(energy_logits(params, x, stage, mask, key), None, mask)
    fn = (lambda p, xx: stage_logits_fn(p, xx, key))
    per_stage = cascade.stage_logits(fn, params, x, strategy, mask).astype(jnp.float32)
    return stop_statistic(per_stage.sum(axis=0), _stage_mean_probs(per_stage), mask)

  def init(x0: jax.Array, key: jax.Array) -> SamplerState:
    """Starts a chain at x0 (clipped into range) with fresh optimizer moments."""
    _check_x0(x0)
    _check_key(key)
    x0 = jnp.asarray(x0, jnp.float32)
    if clip is not None:
      x0 = jnp.clip(x0, clip[0], clip[1])
    # Two buffers, not one array twice: a caller that jits `step` with the state
    # donated (donate_argnums) would otherwise donate the same buffer twice.
    return SamplerState(
        x=x0, mu=jnp.zeros_like(x0), nu=jnp.zeros_like(x0), key=key, step=jnp.zeros((), jnp.int32),
        stage=jnp.zeros((), jnp.int32), stage_step=jnp.zeros((), jnp.int32),
        prob_history=jnp.zeros((stop_window,), jnp.float32))

  def update(params, state: SamplerState, mask):
    """One ascent step; returns the new state and the pre-update StepInfo."""
    key = jax.random.fold_in(state.key, state.step)
    energy_key, noise_key = jax.random.split(key)

    if mode == "sum":
      logits, grad, stage_probs = sum_logits_and_grad(params, state.x, mask,
                                                      energy_key)
    else:
      def objective(x):
        logits = energy_logits(params, x, state.stage, mask, energy_key)
        return jnp.sum(logits), logits

      grad, logits = jax.grad(objective, has_aux=True)(state.x)
      stage_probs = None
    mean_prob = stop_statistic(logits, stage_probs, mask)
    if grad_clip is not None:
      grad = jnp.clip(grad, -grad_clip, grad_clip)
    t = state.stage_step + 1
    if optimizer == "adam":
      mu = beta1 * state.mu + (1.0 - beta1) * grad
      nu = beta2 * state.nu + (1.0 - beta2) * jnp.square(grad)
      tf = t.astype(jnp.float32)
      mu_hat = mu / (1.0 - beta1 ** tf)
      nu_hat = nu / (1.0 - beta2 ** tf)
      x = state.x + step_size * mu_hat / (jnp.sqrt(nu_hat) + eps)
    else:
      mu, nu = state.mu, state.nu
      x = state.x + step_size * grad
    if noise_scale > 0:
      scale = noise_scale * schedule(state.stage_step.astype(jnp.float32))
      x = x + scale * jax.random.normal(noise_key, x.shape, x.dtype)
    if clip is not None:
      x = jnp.clip(x, clip[0], clip[1])
    history = jnp.roll(state.prob_history, 1).at[0].set(mean_prob)
    new_state = state._replace(x=x, mu=mu, nu=nu, step=state.step + 1,
                               stage_step=t, prob_history=history)
    info = StepInfo(mean_prob=mean_prob, logits=logits,
                    grad_norm=jnp.sqrt(jnp.sum(jnp.square(grad))))
    return new_state, info

  def step(params, state: SamplerState, mask=None):
    """Applies one update to `state.x` under `params`; see `make_sampler`."""
    cascade.check_mask(mask, _num_stages(params))
    check_logits(params, state.x, state.key)
    return update(params, state, mask)

  def windowed_prob(history, seen):
    """Mean batch P(real) over the last `stop_window` steps; 0 until the window is full.

    Requiring a full window means a chain takes at least `stop_window` steps and
    stops only once it has stayed past the boundary on average (paper 4.1: "across
    some window of steps, usually 20"); stop_window=1 is the published code's rule.
    """
    full = seen >= stop_window
    return jnp.where(full, jnp.mean(history), 0.0)

  def run(params, x0, key, mask=None, max_steps=None):
    """Runs to the early stop (or cap); see `make_sampler`.

    Each iteration evaluates the energy and its gradient at the current x; if the
    windowed mean P(real) has reached stop_prob the chain stops *without* applying
    that update (the check and the gradient share one forward pass, as in the
    published code), otherwise the update is applied.
    """
    total = _num_stages(params)
    mask = cascade.check_mask(mask, total)
    _check_cap(max_steps, total, mode)
    state = init(x0, key)
    check_logits(params, state.x, key)
    cap = default_cap if max_steps is None else max_steps
    cap = jnp.asarray(cap, jnp.int32)
    active = jnp.ones((total,), bool) if mask is None else mask
    if mode == "sum":

      def cond(carry):
        state, done = carry
        return jnp.logical_and(~done, state.stage_step < cap)

      def body(carry):
        state, _ = carry
        new_state, info = update(params, state, active)
        seen = state.stage_step + 1
        history = jnp.roll(state.prob_history, 1).at[0].set(info.mean_prob)
        crossed = _crossed(windowed_prob(history, seen))
        # Crossing is judged at the pre-update x; keep that x when it crossed.
        kept = jax.tree_util.tree_map(
            lambda new, old: jnp.where(crossed, old, new), new_state,
            state._replace(prob_history=history))
        return kept, crossed

      state, done = lax.while_loop(cond, body, (state, jnp.array(False)))
      final_prob = final_statistic(params, state.x, state.stage, active,
                                   jax.random.fold_in(state.key, state.step))
      return state.x, RunInfo(steps=state.step, mean_prob=final_prob,
                              stopped_early=done)

    caps = jnp.broadcast_to(cap, (total,))
    first = _next_active(active, 0, total)
    state = state._replace(stage=first)
    steps = jnp.zeros((total,), jnp.int32)
    last_stage = jnp.maximum(_last_active(active, total), 0)

    def cond(carry):
      state, _, _ = carry
      return state.stage < total

    def body(carry):
      state, steps, stopped = carry
      stage = state.stage
      new_state, info = update(params, state, active)
      seen = state.stage_step + 1
      history = jnp.roll(state.prob_history, 1).at[0].set(info.mean_prob)
      crossed = _crossed(windowed_prob(history, seen))
      kept = jax.tree_util.tree_map(
          lambda new, old: jnp.where(crossed, old, new), new_state,
          state._replace(prob_history=history))
      applied = jnp.logical_not(crossed).astype(jnp.int32)
      steps = steps.at[stage].add(applied)
      at_cap = kept.stage_step >= caps[stage]
      advance = jnp.logical_or(crossed, at_cap)
      stopped = jnp.where(advance & (stage == last_stage), crossed, stopped)
      nxt = _next_active(active, stage + 1, total)
      zeros = jnp.zeros_like(kept.x)
      # Moving to the next classifier: fresh Adam moments and step count.
      reset = kept._replace(
          mu=zeros, nu=zeros, stage=nxt, stage_step=jnp.zeros((), jnp.int32),
          prob_history=jnp.zeros_like(kept.prob_history))
      kept = jax.tree_util.tree_map(
          lambda r, k: jnp.where(advance, r, k), reset, kept)
      return kept, steps, stopped

    state, steps, stopped = lax.while_loop(
        cond, body, (state, steps, jnp.array(False)))
    final_prob = final_statistic(params, state.x, last_stage, active,
                                 jax.random.fold_in(state.key, state.step))
    return state.x, RunInfo(steps=steps, mean_prob=final_prob,
                            stopped_early=stopped)

  def _crossed(prob):
    if stop_prob is None:
      return jnp.array(False)
    return prob >= stop_prob

  return Sampler(init=init, step=step, run=run)


def _scan_logits_and_grad(fn: Callable, stacked: Any, x: jax.Array,
                          mask: Optional[jax.Array]) -> tuple:
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

  def mean_prob(logits):
    return jnp.mean(jax.nn.sigmoid(logits))

  if mask is None:
    def body(carry, inputs):
      logits, grad = one(inputs[0])
      return (carry[0] + logits, carry[1] + grad), mean_prob(logits)
  else:
    mask = cascade.check_mask(mask, total)

    # lax.cond skips an inactive slot's forward and backward pass entirely.
    def body(carry, inputs):
      logits, grad = lax.cond(inputs[1], one, skip, inputs[0])
      prob = jnp.where(inputs[1], mean_prob(logits), 0.0)
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
  idx = jnp.arange(total)
  return jnp.max(jnp.where(active, idx, -1)).astype(jnp.int32)
