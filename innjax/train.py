"""The INNg outer loop: classification, snapshot and synthesis, stage after stage.

`train(config, workdir)` runs Algorithm 1 of the INNg paper (Lazarow, Jin and Tu,
ICCV 2017):

  for stage t = 1..T:
    1. classification: fine-tune the classifier (never re-initialised) on positives vs
       negatives drawn from the pool with age weights; SGD, sigmoid cross-entropy
       (`objective="inng"`), or WINN's critic loss with its gradient penalty
       (`objective="wasserstein"`, docs/training.md: "Choosing an objective and a
       sampler").
    2. snapshot: write the stage's variables (BatchNorm statistics included) into the
       cascade slot of this stage (INNg: one slot per stage; INNg-compressed: one per
       group of `keep_every` stages; INNg-single: one slot).
    3. synthesis: start from the previous stage's pseudo-negatives (compressed: from
       the previous group's output) and ascend the energy with the sampler until the
       boundary; add the result to the pool.
    4. checkpoint everything needed to resume exactly.

The cascade is preallocated to its final number of slots with an active-slot mask, so
the jitted sampler and training steps compile once for the whole run. With
`config.mesh` both steps run data parallel over several devices (innjax/sharding.py).

What training shares with sampling, style transfer and evaluation (the model, the
configured sampler, batched synthesis, initial negatives) is in innjax/synthesis.py.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from absl import logging
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from innjax import checkpointing
from innjax import config_checks
from innjax import console
from innjax import data as data_lib
from innjax import energy as energy_lib
from innjax import errors
from innjax import images
from innjax import models
from innjax import pool as pool_lib
from innjax import preemption
from innjax import sharding
from innjax import synthesis
from innjax import workdir_lock

VARIANTS = ("inng", "inng_compressed", "inng_single")
OBJECTIVES = ("inng", "wasserstein")


class TrainingDivergedError(errors.TrainingError):
  """NaN or inf appeared in training; the last good checkpoint is kept."""


def diverged(done: int, what: str, remedy: str, override: str) -> TrainingDivergedError:
  """The error for NaN/inf in the stage after `done` completed ones, with the rerun.

  Before the first stage completes there is no checkpoint to go back to, so the
  message does not name one.
  """
  if done:
    kept = (
      f"The checkpoint of stage {done} is kept as the latest; rerun with "
      f"{remedy} to resume from it"
    )
  else:
    kept = (
      "No stage had completed, so there is no checkpoint to go back to; rerun "
      f"with {remedy} to start again"
    )
  return TrainingDivergedError(f"stage {done + 1}, {what}. {kept}, e.g. {override}.")


class TrainState(flax.struct.PyTreeNode):
  """Everything a run needs to resume exactly.

  It holds nothing that the rest determines: the mask of trained cascade slots
  follows from `stage` (the `active` property).

  Attributes:
    stage: number of completed stages.
    params, batch_stats: the classifier being fine-tuned.
    opt_state: its optimizer state.
    cascade: stacked variables, one slot per kept classifier (leading axis).
    pool: the pseudo-negative pool.
    negatives: the latest stage's pseudo-negatives (the next synthesis starts here).
    key: the run's PRNG key (per-stage keys are folded in from it).
    group_start: the compressed variant's negatives that the current group of stages
      starts from; None in the other variants, which start from `negatives`.
    stages_per_slot: `group_size(config)`, static: stages k*s+1 .. k*(s+1) train
      slot s.
  """

  stage: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  cascade: Any
  pool: pool_lib.Pool
  negatives: jax.Array
  key: jax.Array
  group_start: jax.Array | None = None
  stages_per_slot: int = flax.struct.field(pytree_node=False, default=1)

  @property
  def active(self) -> jax.Array:
    """(num_slots,) bool: which cascade slots hold a trained classifier.

    Stage t writes slot (t - 1) // stages_per_slot, so after `stage` stages the
    first ceil(stage / stages_per_slot) slots are trained.
    """
    slots = jax.tree_util.tree_leaves(self.cascade)[0].shape[0]
    return jnp.arange(slots) < -(-self.stage // self.stages_per_slot)


# Moved to innjax/synthesis.py (what training, sampling and style share); these two
# names stay for code written against the notebook's library example.
build_model = synthesis.build_model
initial_negatives = synthesis.initial_negatives


def group_size(config) -> int:
  """Stages per kept classifier: 1 (inng), keep_every, or all (inng_single)."""
  if config.variant == "inng":
    return 1
  if config.variant == "inng_compressed":
    return int(config.keep_every)
  return int(config.num_stages)


def num_slots(config) -> int:
  """How many classifiers the trained cascade keeps."""
  return -(-int(config.num_stages) // group_size(config))


# The config checks live in innjax/config_checks.py; this name stays for callers.
validate_config = config_checks.validate_config


def init_state(config, model, key) -> TrainState:
  """The state before stage 1."""
  init_key, neg_key, run_key = jax.random.split(key, 3)
  geometry = synthesis.geometry(config)
  variables = models.init_variables(
    model, init_key, energy_lib.model_input_shape(geometry)
  )
  image_shape = energy_lib.negative_shape(geometry)
  tx = make_optimizer(config)
  slots = num_slots(config)
  empty_cascade = jax.tree_util.tree_map(
    lambda v: jnp.zeros((slots, *v.shape), v.dtype), variables
  )
  negatives = synthesis.initial_negatives(
    neg_key,
    int(config.pool.negatives_per_stage),
    image_shape,
    float(config.pool.init_std),
    config.pool.init,
  )
  pool = pool_lib.add(
    pool_lib.create(int(config.pool.capacity), image_shape), negatives, 0
  )
  return TrainState(
    stage=jnp.zeros((), jnp.int32),
    params=variables["params"],
    batch_stats=variables["batch_stats"],
    opt_state=tx.init(variables["params"]),
    cascade=empty_cascade,
    pool=pool,
    negatives=negatives,
    key=run_key,
    group_start=negatives if config.variant == "inng_compressed" else None,
    stages_per_slot=group_size(config),
  )


def make_optimizer(config) -> optax.GradientTransformation:
  """The classifier's optimizer: SGD (the paper: learning rate 0.01) or Adam (WINN).

  Adam takes `train.beta1` and `train.beta2` (WINN's critic: 1e-4, betas (0, 0.9)).
  `train.lr_decay` < 1 multiplies the rate by it after each stage.
  """
  lr = float(config.train.learning_rate)
  decay = float(config.train.lr_decay)
  if decay != 1.0:
    # Multiplied by `decay` after every stage's `steps_per_stage` updates (WINN decays
    # its critic's rate as the cascade grows).
    lr = optax.exponential_decay(
      lr, int(config.train.steps_per_stage), decay, staircase=True
    )
  if config.train.optimizer == "adam":
    return optax.adam(lr, b1=float(config.train.beta1), b2=float(config.train.beta2))
  momentum = float(config.train.momentum) or None
  return optax.sgd(lr, momentum=momentum)


def gradient_penalty(critic_fn, positives, negatives, key) -> jax.Array:
  """WGAN-GP's penalty: mean (|grad_x D(x_hat)|_2 - 1)^2 on random interpolates.

  x_hat = eps * positive + (1 - eps) * negative with eps ~ U(0, 1) per pair
  (Gulrajani et al. 2017; WINN uses it with weight 10).

  Args:
    critic_fn: x -> (batch,) critic scores.
    positives, negatives: (N, H, W, C) batches of the same shape.
    key: PRNG key for the interpolation weights.

  Returns:
    The scalar penalty.
  """
  n = min(positives.shape[0], negatives.shape[0])
  eps = jax.random.uniform(key, (n,) + (1,) * (positives.ndim - 1))
  x_hat = eps * positives[:n] + (1.0 - eps) * negatives[:n]
  grads = jax.grad(lambda xx: jnp.sum(critic_fn(xx)))(x_hat)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(n, -1)), axis=1) + 1e-12)
  return jnp.mean(jnp.square(norms - 1.0))


def make_train_chunk(model, config, tx, mesh=None, rows=None):
  """Returns jitted `chunk(state, positives, key) -> (params, batch_stats, opt_state, metrics)`.

  One chunk is `train.log_every` SGD updates run by `lax.scan` on the device; each
  update draws `pos_batch` positives uniformly and `neg_batch` negatives from the pool
  with age weights (under the patch head: one random patch of each), and minimises
  sigmoid cross-entropy (paper 3.2.1).

  With a `mesh` (innjax.sharding) the update is data parallel: the batch is split over
  the devices, the classifier stays replicated (the compiler reduces the gradients),
  and the classifier's buffers are donated to the outputs. `rows` (a
  `sharding.RowLayout`) maps drawn indices into padded, row-sharded positives.
  """
  pos_batch, neg_batch = int(config.train.pos_batch), int(config.train.neg_batch)
  age_decay = float(config.pool.age_decay)
  geometry = synthesis.geometry(config)
  length = int(config.train.log_every)

  objective = str(config.objective)
  gp_weight = float(config.train.gradient_penalty)
  logit_l2 = float(config.train.logit_l2)

  def critic(params, batch_stats, x):
    logits, updates = model.apply(
      {"params": params, "batch_stats": batch_stats},
      x,
      train=True,
      mutable=["batch_stats"],
    )
    return logits, updates["batch_stats"]

  def loss_fn(params, batch_stats, x, labels, key):
    logits, new_stats = critic(params, batch_stats, x)
    pos, neg = logits[:pos_batch], logits[pos_batch:]
    if objective == "wasserstein":
      # WINN: the critic's Wasserstein estimate, mean D(neg) - mean D(pos).
      loss = jnp.mean(neg) - jnp.mean(pos)
    else:
      loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
    if gp_weight:
      loss = loss + gp_weight * gradient_penalty(
        lambda xx: critic(params, batch_stats, xx)[0], x[:pos_batch], x[pos_batch:], key
      )
    if logit_l2:
      # IGEBM's regulariser: keeps the energies near 0 so neither side runs away.
      loss = loss + logit_l2 * jnp.mean(jnp.square(logits))
    return loss, (logits, new_stats)

  def update(carry, key):
    params, batch_stats, opt_state, pool, positives = carry
    pos_key, neg_key, patch_key, gp_key = jax.random.split(key, 4)
    num_rows = positives.shape[0] if rows is None else rows.num_rows
    idx = jax.random.randint(pos_key, (pos_batch,), 0, num_rows)
    if rows is not None:
      idx = rows.positions(idx)
    pos = data_lib.to_float(sharding.constrain_batch(positives[idx], mesh))
    neg = sharding.constrain_batch(
      pool_lib.sample(pool, neg_key, neg_batch, age_decay), mesh
    )
    pos_key, neg_key = jax.random.split(patch_key)
    x = sharding.constrain_batch(
      jnp.concatenate(
        [
          energy_lib.classifier_inputs(geometry, pos, pos_key),
          energy_lib.classifier_inputs(geometry, neg, neg_key),
        ]
      ),
      mesh,
    )
    labels = jnp.concatenate([jnp.ones(pos_batch), jnp.zeros(neg_batch)])
    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params, batch_stats, x, labels, gp_key
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = {
      "loss": loss,
      "acc_pos": jnp.mean(logits[:pos_batch] > 0),
      "acc_neg": jnp.mean(logits[pos_batch:] <= 0),
      # Cheap divergence checks: reductions over values already computed.
      "finite_loss": jnp.isfinite(loss),
      "finite_logits": jnp.all(jnp.isfinite(logits)),
    }
    return (params, batch_stats, opt_state, pool, positives), metrics

  def chunk(params, batch_stats, opt_state, pool, positives, key):
    keys = jax.random.split(key, length)
    (params, batch_stats, opt_state, _, _), metrics = jax.lax.scan(
      update, (params, batch_stats, opt_state, pool, positives), keys
    )
    summary = {k: jnp.mean(v) for k, v in metrics.items() if not k.startswith("finite")}
    summary.update({k: jnp.all(metrics[k]) for k in ("finite_loss", "finite_logits")})
    return params, batch_stats, opt_state, summary

  if mesh is None:
    return jax.jit(chunk)
  return jax.jit(chunk, out_shardings=sharding.replicated(mesh), donate_argnums=(0, 1, 2))


def updates_per_stage(config) -> int:
  """The classifier updates of a stage: `train.steps_per_stage` rounded up to whole
  chunks of `train.log_every` (fewer if `train.early_stop_loss` ends it early)."""
  length = int(config.train.log_every)
  return -(-int(config.train.steps_per_stage) // length) * length


def classification_step(
  state: TrainState,
  chunk,
  positives,
  config,
  key,
  should_stop: preemption.StopCheck = None,
  progress=None,
):
  """Fine-tunes the classifier for one stage; returns (state, metrics).

  `progress` (an `innjax.console.Progress` of `updates_per_stage(config)`) counts
  each chunk's updates once its metrics have reached the host, which the
  divergence check waits for anyway: the display adds no synchronisation.

  Raises:
    TrainingDivergedError: the loss or logits stopped being finite.
    preemption.TrainingInterrupted: `should_stop` asked for a stop between chunks.
  """
  steps = int(config.train.steps_per_stage)
  length = int(config.train.log_every)
  params, batch_stats, opt_state = state.params, state.batch_stats, state.opt_state
  history = []
  for i in range(-(-steps // length)):
    preemption.raise_if_requested(should_stop)
    params, batch_stats, opt_state, metrics = chunk(
      params, batch_stats, opt_state, state.pool, positives, jax.random.fold_in(key, i)
    )
    metrics = jax.device_get(metrics)
    bad = [name for name in ("loss", "logits") if not metrics[f"finite_{name}"]]
    if bad:
      raise diverged(
        int(state.stage),
        f"classification: the classifier {' and '.join(bad)} "
        f"became NaN/inf (updates {i * length + 1}-{(i + 1) * length})",
        "a lower learning rate",
        f"--config.train.learning_rate={float(config.train.learning_rate) / 10:g}",
      )
    history.append(metrics)
    if progress is not None:
      progress.update(length)
    if config.train.early_stop_loss and metrics["loss"] < config.train.early_stop_loss:
      break
  summary = {
    k: float(np.mean([h[k] for h in history])) for k in ("loss", "acc_pos", "acc_neg")
  }
  last = history[-1]
  summary.update({f"{k}_last": float(last[k]) for k in ("loss", "acc_pos", "acc_neg")})
  summary["classifier_updates"] = len(history) * length
  return state.replace(
    params=params, batch_stats=batch_stats, opt_state=opt_state
  ), summary


def make_critic_threshold(model, config, rows=None):
  """Returns jitted `threshold(variables, positives, key)`: WINN's stop threshold.

  A Wasserstein critic's scores have no fixed boundary like a classifier's 0. WINN
  ends synthesis when the negatives' mean score passes a threshold drawn uniformly
  between the smallest and largest score of a batch of positives. `train.pos_batch`
  positives are drawn from the (row-sharded, `rows`) positives on the devices, as the
  training step draws them, so every host of a multi-host run gets the same threshold.
  """
  logit_fn = models.make_logit_fn(model)
  pos_batch = int(config.train.pos_batch)
  geometry = synthesis.geometry(config)

  def threshold(variables, positives, key):
    pick_key, patch_key, draw_key = jax.random.split(key, 3)
    num_rows = positives.shape[0] if rows is None else rows.num_rows
    idx = jax.random.randint(pick_key, (pos_batch,), 0, num_rows)
    if rows is not None:
      idx = rows.positions(idx)
    x = energy_lib.classifier_inputs(
      geometry, data_lib.to_float(positives[idx]), patch_key
    )
    scores = logit_fn(variables, x)
    return jax.random.uniform(
      draw_key, (), minval=jnp.min(scores), maxval=jnp.max(scores)
    )

  return jax.jit(threshold)


def shift_logit(variables, offset) -> Any:
  """The variables with `offset` subtracted from the final dense unit's bias.

  Shifting the critic so that its threshold sits at logit 0 lets the sampler's
  unchanged stop rule (batch-mean sigmoid >= 0.5) end synthesis at WINN's threshold,
  during training and when sampling from the saved cascade.
  """
  params = dict(variables["params"])
  params["logit"] = dict(params["logit"], bias=params["logit"]["bias"] - offset)
  return {**variables, "params": params}


def synthesis_start(state, config, key, image_shape) -> jax.Array:
  """Where a stage's synthesis starts.

  `synthesis.start="previous"` (INNg): the previous stage's negatives (compressed:
  the previous group's output). `"pool"` (IGEBM / JEM's replay buffer): as many
  negatives drawn from the pool with its age weights, each replaced by fresh noise
  with probability `synthesis.reinit_prob`.
  """
  if config.synthesis.start == "previous":
    return state.group_start if config.variant == "inng_compressed" else state.negatives
  n = int(config.pool.negatives_per_stage)
  draw_key, coin_key, noise_key = jax.random.split(key, 3)
  drawn = pool_lib.sample(state.pool, draw_key, n, float(config.pool.age_decay))
  fresh = synthesis.initial_negatives(
    noise_key, n, image_shape, float(config.pool.init_std), config.pool.init
  )
  reinit = jax.random.bernoulli(coin_key, float(config.synthesis.reinit_prob), (n,))
  return jnp.where(reinit[:, None, None, None], fresh, drawn)


def is_due(done: int, every: int, last: int) -> bool:
  """Whether a periodic action (checkpoint, PNG grid) runs after `done` stages.

  Every `every` stages and after the run's last stage, so a short run always ends
  with one.
  """
  return done % max(every, 1) == 0 or done == last


def movement(start: jax.Array, end: jax.Array) -> dict:
  """How far synthesis moved the negatives: {"l2": mean over images of |x - x0|_2,
  "rms": root mean square change per pixel value}.

  A stage whose negatives barely move teaches the next classifier nothing new (the
  failure of a stop rule that ends synthesis at once), so the log shows it.
  """
  diff = jnp.asarray(end, jnp.float32) - jnp.asarray(start, jnp.float32)
  diff = diff.reshape(diff.shape[0], -1)
  l2 = jnp.mean(jnp.sqrt(jnp.sum(jnp.square(diff), axis=1)))
  rms = jnp.sqrt(jnp.mean(jnp.square(diff)))
  l2, rms = jax.device_get((l2, rms))  # one host transfer for both
  return {"l2": float(l2), "rms": float(rms)}


def synthesis_caps(config, stage_index: int) -> int:
  """The step cap for synthesis at 0-based stage `stage_index`.

  INNg-compressed gives later stages of a group more steps (paper 3.6).
  """
  base = int(config.synthesis.max_steps)
  if config.variant != "inng_compressed":
    return base
  position = stage_index % group_size(config)
  return int(round(base * (1 + position * float(config.synthesis.group_step_growth))))


def stage_progress(stage: int, total: int, what: str, count: int, unit: str):
  """The progress display of one part of a stage, e.g. "stage 2/10 synthesis".

  A bar in a terminal, a plain line every 30 s in a log (so a stage of a few
  seconds prints nothing there), and nothing on the other hosts of a multi-host
  run, whose process 0 shows the same progress: a context manager that yields a
  `console.Progress`, or None.
  """
  if not sharding.is_main_process():
    return contextlib.nullcontext()
  return console.Progress(count, f"stage {stage}/{total} {what}", unit)


def load_positives(config) -> data_lib.Dataset:
  """This host's slice of the training images, checked against the config."""
  # Each host reads only its own slice (tfds.even_splits, as tfds.split_for_jax_process).
  dataset = data_lib.load_dataset(
    config.data, process_index=jax.process_index(), process_count=jax.process_count()
  )
  image_shape = tuple(int(d) for d in dataset.images.shape[1:])
  expected = (config.data.image_size, config.data.image_size, config.data.channels)
  if image_shape != expected:
    raise ValueError(
      f"The dataset gives images of shape {image_shape} but the config expects "
      f"{expected} (data.image_size, data.channels)."
    )
  return dataset


def data_fingerprint(positives: jax.Array, rows: sharding.RowLayout) -> dict:
  """`innjax.data.fingerprint` of the whole training set, the same on every host.

  The sampled images are gathered from the row-sharded positives in data order, so
  the fingerprint does not depend on how many hosts or devices hold them.
  """
  # Jitted, so that every host of a multi-host run takes part in the gather.
  gather = jax.jit(lambda images, idx: images[rows.positions(idx)])
  return data_lib.fingerprint(
    rows.num_rows, lambda idx: sharding.to_host(gather(positives, idx))
  )


def train(
  config: ml_collections.ConfigDict,
  workdir: str,
  stop_after_stages: int | None = None,
  should_stop: preemption.StopCheck = None,
) -> TrainState:
  """Trains an INNg model, resuming from `workdir` if it holds a checkpoint.

  Args:
    config: the experiment configuration (see configs/default.py).
    workdir: where checkpoints, TensorBoard events and PNG grids are written.
    stop_after_stages: return after this many stages are complete (for tests and
      interruption experiments); None trains all `config.num_stages`.
    should_stop: polled at safe points (between stages, classifier chunks and
      synthesis batches); when it returns a reason (e.g. a
      `preemption.SignalGuard` that caught SIGTERM), the stage in progress is
      dropped, pending checkpoint writes are committed and
      `preemption.TrainingInterrupted` is raised. Resuming redoes that stage exactly.

  Returns:
    The final TrainState.
  """
  config = config_checks.upgrade_config(config)  # e.g. synthesis.energy, now .mode
  validate_config(config)
  mesh = sharding.make_mesh(config)
  config = sharding.global_batch_config(config, mesh.size)
  sharding.check_divisible(config, mesh.size)
  # The data is read and checked before the workdir is created, so that refused
  # data leaves no empty workdir behind.
  dataset = load_positives(config)
  checkpointing.ensure_writable(workdir)
  # One training run per workdir, locked before Orbax's start-up (which deletes the
  # temporary folders of unfinished saves: another run's save in flight, otherwise).
  with workdir_lock.hold(
    workdir, main_process=sharding.is_main_process(), agree=sharding.from_process_0
  ):
    return _train_locked(config, workdir, mesh, dataset, stop_after_stages, should_stop)


# The name of earlier releases (flax's examples call theirs so), kept for code that
# calls it; training evaluates nothing (`--mode=evaluate` does).
train_and_evaluate = train


def _train_locked(
  config, workdir, mesh, dataset, stop_after_stages, should_stop
) -> TrainState:
  """`train` once the inputs are checked and the workdir is locked."""
  # uint8 on the devices, row-sharded over the mesh; batches are gathered there.
  positives, rows = sharding.distribute_rows(dataset.images, mesh)
  model = synthesis.build_model(config)
  geometry = synthesis.geometry(config)
  logit_fn = energy_lib.make_stage_logit_fn(model, geometry)
  tx = make_optimizer(config)

  manager = checkpointing.Manager(workdir, config, data=data_fingerprint(positives, rows))
  template = jax.eval_shape(
    lambda: init_state(config, model, jax.random.key(config.seed))
  )
  shardings = sharding.state_shardings(template, mesh)
  # Restored straight onto this mesh, whatever device count saved the checkpoint.
  state = manager.restore_latest(sharding.with_shardings(template, shardings))
  if state is None:
    state = sharding.place(
      init_state(config, model, jax.random.key(config.seed)), shardings
    )
    logging.info("Starting a new run in %s on %d device(s).", workdir, mesh.size)
  else:
    logging.info(
      "Resuming %s after stage %d on %d device(s).", workdir, int(state.stage), mesh.size
    )

  writer = images.make_writer(workdir)
  chunk = make_train_chunk(model, config, tx, mesh, rows)
  run_fn = synthesis.make_run_fn(config, logit_fn, config.synthesis.mode, mesh)
  threshold_fn = make_critic_threshold(model, config, rows)
  total = int(config.num_stages)
  last = total if stop_after_stages is None else min(total, int(stop_after_stages))
  group = group_size(config)
  batch = int(config.synthesis.batch_size)
  saved = int(state.stage)
  try:
    while int(state.stage) < last:
      t = int(state.stage)  # 0-based index of the stage being trained
      if manager.reached_preemption(t):  # multi-host preemption notice (Orbax)
        raise preemption.TrainingInterrupted("a preemption notice")
      preemption.raise_if_requested(should_stop)
      stage_key = jax.random.fold_in(state.key, t)
      cls_key, syn_key = jax.random.split(stage_key)

      t0 = time.perf_counter()
      with stage_progress(
        t + 1, total, "classifier", updates_per_stage(config), "update"
      ) as progress:
        state, metrics = classification_step(
          state, chunk, positives, config, cls_key, should_stop, progress
        )
      jax.block_until_ready(state.params)
      t_cls = time.perf_counter() - t0

      slot = t // group
      snapshot = {"params": state.params, "batch_stats": state.batch_stats}
      if config.objective == "wasserstein":
        snapshot = shift_logit(
          snapshot, threshold_fn(snapshot, positives, jax.random.fold_in(syn_key, 1))
        )
      stacked = jax.tree_util.tree_map(
        lambda c, v: c.at[slot].set(v), state.cascade, snapshot
      )
      active = state.active.at[slot].set(True)

      t0 = time.perf_counter()
      if config.synthesis.mode == "sequential" or config.variant == "inng_single":
        # The previous negatives already went through the earlier stages: only
        # the newest classifier moves them (the authors' code).
        mask = jnp.zeros_like(active).at[slot].set(True)
      else:
        mask = active
      start = synthesis_start(
        state, config, jax.random.fold_in(syn_key, 2), energy_lib.negative_shape(geometry)
      )
      n = start.shape[0]
      x0 = synthesis.pad_batches(start, batch)
      with stage_progress(
        t + 1, total, "synthesis", x0.shape[0] // batch, "batch"
      ) as progress:
        x, steps, probs = synthesis.synthesize(
          run_fn,
          stacked,
          mask,
          x0,
          syn_key,
          batch,
          synthesis_caps(config, t),
          should_stop,
          progress,
        )
      x = x[:n]
      jax.block_until_ready(x)
      t_syn = time.perf_counter() - t0
      if not bool(jnp.all(jnp.isfinite(x))):
        raise diverged(
          t,
          "synthesis: the synthesised pseudo-negatives contain NaN/inf",
          "a smaller image step",
          f"--config.synthesis.step_size={float(config.synthesis.step_size) / 10:g}",
        )

      moved = movement(start, x)
      pool = pool_lib.add(state.pool, x, t + 1)
      end_of_group = (t + 1) % group == 0
      state = state.replace(
        stage=jnp.asarray(t + 1, jnp.int32),
        cascade=stacked,
        pool=pool,
        negatives=x,
        group_start=(
          x if end_of_group and state.group_start is not None else state.group_start
        ),
      )
      # Eager updates above may leave arrays placed otherwise; put each back where
      # the jitted steps and the checkpoint expect it (a no-op when already there).
      state = jax.device_put(state, shardings)

      metrics.update(
        {
          "time_classification_s": t_cls,
          "time_synthesis_s": t_syn,
          "synthesis_steps_mean": float(np.mean(steps)),
          "synthesis_steps_max": float(np.max(steps)),
          "negatives_p_real": float(np.mean(probs)),
          "negatives_moved_l2": moved["l2"],
          "negatives_moved_rms": moved["rms"],
          "pool_size": float(pool_lib.size(pool)),
        }
      )
      writer.write_scalars(t + 1, metrics)
      if is_due(t + 1, int(config.grid_every_stages), last):
        # Every host takes part in fetching the grid (a collective); process 0 writes.
        grid = sharding.to_host(
          energy_lib.crop_to_target(geometry, x[: int(config.grid_size)])
        )
        if sharding.is_main_process():
          tiles = images.make_grid(grid)
          images.save_png(
            tiles, os.path.join(workdir, "negatives", f"stage_{t + 1:03d}.png")
          )
          writer.write_images(t + 1, {"negatives": tiles})
      if sharding.is_main_process():
        logging.info(
          "stage %d/%d: classifier loss %.4f, acc pos %.3f neg %.3f (%d updates, "
          "%.1fs) | synthesis %.0f steps mean, P(real) %.3f, moved L2 %.2f "
          "(RMS %.3f per pixel) (%.1fs)",
          t + 1,
          total,
          metrics["loss_last"],
          metrics["acc_pos_last"],
          metrics["acc_neg_last"],
          metrics["classifier_updates"],
          t_cls,
          metrics["synthesis_steps_mean"],
          metrics["negatives_p_real"],
          metrics["negatives_moved_l2"],
          metrics["negatives_moved_rms"],
          t_syn,
        )
      if is_due(t + 1, int(config.checkpoint.every_stages), last):
        manager.save(int(state.stage), state)
        saved = int(state.stage)
      writer.flush()  # TensorBoard shows each stage when it ends, not the run
  except (preemption.TrainingInterrupted, TrainingDivergedError) as stop:
    # `state.stage` only advances when a stage is complete. With checkpoints every k
    # stages, the completed stages since the last one are saved now, so a stop or a
    # divergence loses nothing that finished (SIGKILL loses at most k - 1 stages).
    if int(state.stage) > saved:
      manager.save(int(state.stage), state)
    if isinstance(stop, TrainingDivergedError):
      raise
    stop.completed_stages = int(state.stage)
    logging.warning(
      "Stop requested (%s): stage %d was dropped; resuming redoes it.",
      stop.reason,
      int(state.stage) + 1,
    )
    raise
  finally:
    manager.wait_until_finished()
    writer.flush()
  return state
