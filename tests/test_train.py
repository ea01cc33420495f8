"""End-to-end tests of the INNg outer loop on the tiny config.

These run the real code paths: the real data loaders (scikit-image's bundled texture,
and SVHN through tfds under `tfds.testing.mock_data`), real Orbax checkpoints on disk,
real PNG files.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
import innjax
import tensorboard_events
from innjax import checkpointing, cli, config_checks, generate, synthesis
from innjax import train


def _config(**overrides):
  config = tiny.get_config()
  config.checkpoint.async_save = False
  return cli.with_overrides(config, overrides)


def _assert_trees_equal(a, b):
  jax.tree_util.tree_map(
    lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b
  )


def _event_tags(folder) -> dict:
  """{step: tags} over the TensorBoard event files in `folder`."""
  tags = {}
  for name in sorted(os.listdir(folder)):
    if name.startswith("events.out.tfevents"):
      for event in tensorboard_events.read_events(str(folder / name)):
        tags.setdefault(event.step, set()).update(v.tag for v in event.summary.value)
  return tags


def test_inng_trains_saves_grids_and_samples(tmp_path):
  config = _config()
  state = train.train(config, str(tmp_path))
  assert int(state.stage) == 3
  assert bool(jnp.all(state.active)) and state.active.shape == (3,)
  # Each stage fine-tunes the previous classifier: stages differ but are all kept.
  kernels = state.cascade["params"]["conv0"]["kernel"]
  assert not np.allclose(kernels[0], kernels[2])
  assert (
    int(train.pool_lib.size(state.pool)) == 48
  )  # 3 stages x 16 (+16 initial, oldest out)
  for stage in (1, 2, 3):
    assert (tmp_path / "negatives" / f"stage_{stage:03d}.png").stat().st_size > 0
  # TensorBoard: each stage's scalars and its negatives' grid, flushed as it ends.
  assert _event_tags(tmp_path)[3] >= {"loss_last", "negatives"}
  assert float(jnp.abs(state.negatives).max()) <= 1.0
  images, stats = generate.generate(config, str(tmp_path))
  assert (
    "samples/" + os.path.basename(stats["png"])[:-4]
    in _event_tags(tmp_path / "samples")[3]
  )
  assert images.shape == (8, 16, 16, 1) and np.isfinite(images).all()
  assert os.path.exists(stats["png"]) and stats["kept_classifiers"] == 3
  saved = np.load(stats["npz"])["images"]
  np.testing.assert_array_equal(saved, images)
  # --mode=export, then innjax.load, then sample: the images of --mode=sample.
  assert cli.run("export", config, str(tmp_path)) == 0
  model = innjax.load(str(tmp_path / "model_stage003.npz"))
  assert model.stages == 3 and model.mask.shape == (3,)
  np.testing.assert_array_equal(model.sample(), images)
  # The library path: the same sampling from a loaded cascade, writing nothing.
  before = sorted(os.listdir(tmp_path / "samples"))
  stacked, active, stages = generate.load_cascade(config, str(tmp_path))
  again, again_stats = synthesis.synthesize_images(
    config, stacked, active, 8, jax.random.key(int(config.sample.seed))
  )
  assert stages == 3 and again_stats["kept_classifiers"] == 3
  np.testing.assert_array_equal(again, images)
  assert sorted(os.listdir(tmp_path / "samples")) == before


def test_resume_reaches_the_same_final_state(tmp_path):
  config = _config()
  full = train.train(config, str(tmp_path / "full"))
  part = tmp_path / "interrupted"
  first = train.train(config, str(part), stop_after_stages=1)
  assert int(first.stage) == 1
  resumed = train.train(config, str(part))
  assert int(resumed.stage) == 3
  _assert_trees_equal(resumed.cascade, full.cascade)
  _assert_trees_equal(resumed.params, full.params)
  _assert_trees_equal(resumed.pool.images, full.pool.images)
  _assert_trees_equal(resumed.negatives, full.negatives)
  # Running again on a finished workdir changes nothing.
  again = train.train(config, str(part))
  _assert_trees_equal(again.cascade, full.cascade)


def test_a_finished_run_extended_to_more_stages_equals_one_trained_at_once(tmp_path):
  # Bit for bit: the empty slots of a preallocated cascade add exact zeros.
  at_once = train.train(_config(num_stages=4), str(tmp_path / "at_once"))
  run = str(tmp_path / "extended")
  assert int(train.train(_config(num_stages=2), run).stage) == 2
  extended = train.train(_config(num_stages=4), run)
  assert int(extended.stage) == 4 and extended.active.shape == (4,)
  raw = lambda s: s.replace(key=jax.random.key_data(s.key))  # pylint: disable=unnecessary-lambda-assignment
  _assert_trees_equal(raw(extended), raw(at_once))  # the whole state
  # Fewer stages than the checkpoint's stays refused, with nothing changed on disk.
  with pytest.raises(
    checkpointing.IncompatibleCheckpointError,
    match="num_stages: 4 in the checkpoint, 2 now",
  ):
    train.train(_config(num_stages=2), run)


@pytest.mark.parametrize("variant, slots", [("inng_compressed", 2), ("inng_single", 1)])
def test_compressed_and_single_variants(tmp_path, variant, slots):
  config = _config(variant=variant, keep_every=2, **{"synthesis.mode": "sequential"})
  state = train.train(config, str(tmp_path))
  assert state.active.shape == (slots,) and bool(jnp.all(state.active))
  assert int(state.stage) == 3
  if variant == "inng_compressed":
    assert train.synthesis_caps(config, 1) == 2 * config.synthesis.max_steps
    assert train.synthesis_caps(config, 2) == config.synthesis.max_steps
  images, stats = generate.generate(config, str(tmp_path))
  assert stats["kept_classifiers"] == slots and np.isfinite(images).all()


@pytest.mark.parametrize(
  "override, match",
  [
    ({"objective": "hinge"}, "objective"),
    ({"model.norm": "group"}, "model.norm"),
    ({"synthesis.start": "buffer"}, "synthesis.start"),
    ({"synthesis.reinit_prob": 1.5}, "reinit_prob"),
    ({"train.gradient_penalty": -1.0}, "gradient_penalty"),
    ({"synthesis.stop_on": "oldest"}, "stop_on"),
  ],
)
def test_bad_family_configs_are_rejected_before_training(tmp_path, override, match):
  with pytest.raises(ValueError, match=match):
    train.train(_config(**override), str(tmp_path))


def test_svhn_through_the_real_tfds_loader(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  from configs import svhn

  config = svhn.get_config()
  tiny_config = tiny.get_config()
  for section in ("train", "pool", "synthesis", "sample"):
    config[section] = tiny_config[section]
  config.model.features = (8, 16)
  config.num_stages = 1
  config.data.download = False
  config.checkpoint.async_save = False
  with tfds.testing.mock_data(num_examples=64):
    state = train.train(config, str(tmp_path))
  assert int(state.stage) == 1
  assert state.negatives.shape[1:] == (32, 32, 3)


def test_gradient_penalty_is_zero_for_a_unit_gradient_linear_critic():
  w = jax.random.normal(jax.random.key(0), (4, 4, 1))
  unit = w / jnp.linalg.norm(w)
  pos = jax.random.normal(jax.random.key(1), (6, 4, 4, 1))
  neg = jax.random.normal(jax.random.key(2), (6, 4, 4, 1))

  def linear(scale):
    return lambda x: jnp.sum(x * scale * unit, axis=(1, 2, 3))

  assert float(train.gradient_penalty(linear(1.0), pos, neg, jax.random.key(3))) < 1e-8
  # A gradient of norm 3 everywhere costs (3 - 1)^2 = 4.
  np.testing.assert_allclose(
    float(train.gradient_penalty(linear(3.0), pos, neg, jax.random.key(3))),
    4.0,
    rtol=1e-5,
  )


def test_replay_start_with_reinit_prob_one_is_fresh_noise(tmp_path):
  config = _config(**{"synthesis.start": "pool", "synthesis.reinit_prob": 1.0})
  state = train.init_state(config, synthesis.build_model(config), jax.random.key(0))
  state = state.replace(
    pool=train.pool_lib.add(state.pool, jnp.full_like(state.negatives, 0.9), 1)
  )
  shape = state.negatives.shape[1:]
  x = train.synthesis_start(state, config, jax.random.key(1), shape)
  assert x.shape == state.negatives.shape
  assert abs(float(jnp.std(x)) - config.pool.init_std) < 0.03
  assert abs(float(jnp.mean(x))) < 0.03
  # With p = 0 every start is a pool draw: the newest (all 0.9) dominate the weights.
  config.synthesis.reinit_prob = 0.0
  x = train.synthesis_start(state, config, jax.random.key(1), shape)
  assert float(jnp.mean(x == 0.9)) > 0.5


@pytest.mark.parametrize("objective", ["wasserstein", "inng"])
def test_ebm_and_winn_options_train_resume_and_sample(tmp_path, objective):
  """WINN's critic (LayerNorm, swish, mean pool, Adam, gradient penalty) and the EBM
  options (replay start, Langevin, spectral norm, logit penalty) end to end, resume
  included."""
  overrides = {
    "objective": objective,
    "model.norm": "layer",
    "model.activation": "swish",
    "model.pool": "mean",
    "train.optimizer": "adam",
    "train.learning_rate": 1e-3,
    "train.gradient_penalty": 10.0,
    "synthesis.mode": "sequential",
  }
  if objective == "inng":
    overrides.update(
      {
        "model.norm": "none",
        "model.spectral_norm": True,
        "train.logit_l2": 0.1,
        "synthesis.start": "pool",
        "synthesis.optimizer": "sgd",
        "synthesis.noise_scale": 0.01,
        "synthesis.noise_schedule": "constant",
        "synthesis.grad_clip": 0.05,
        "synthesis.stop_prob": 0.0,
        "train.gradient_penalty": 0.0,
      }
    )
  config = _config(**overrides)
  full = train.train(config, str(tmp_path / "full"))
  part = str(tmp_path / "part")
  train.train(config, part, stop_after_stages=1)
  resumed = train.train(config, part)
  _assert_trees_equal(resumed.cascade, full.cascade)
  _assert_trees_equal(resumed.negatives, full.negatives)
  assert bool(jnp.all(jnp.isfinite(full.negatives)))
  images, stats = generate.generate(config, part)
  assert np.isfinite(images).all() and stats["kept_classifiers"] == 3
  if objective == "wasserstein":
    # Each kept critic is shifted so that WINN's threshold sits at logit 0: the
    # positives' scores straddle it.
    assert not np.allclose(
      full.cascade["params"]["logit"]["bias"], full.params["logit"]["bias"]
    )


def test_movement_measures_how_far_negatives_moved():
  start = jnp.zeros((2, 4, 4, 1))
  end = start.at[0].set(0.5)  # image 0: 16 pixels moved by 0.5 -> L2 2; image 1: 0
  moved = train.movement(start, end)
  np.testing.assert_allclose(moved["l2"], 1.0, rtol=1e-6)
  np.testing.assert_allclose(moved["rms"], np.sqrt(0.125), rtol=1e-6)


def test_each_stage_logs_how_far_synthesis_moved_the_negatives(tmp_path, caplog):
  config = _config(num_stages=2, **{"synthesis.mode": "sum"})
  with caplog.at_level("INFO"):
    state = train.train(config, str(tmp_path))
  lines = [r.getMessage() for r in caplog.records if "moved L2" in r.getMessage()]
  assert len(lines) == 2
  moved = [float(line.split("moved L2 ")[1].split()[0]) for line in lines]
  # Stage 2 started from stage 1's negatives (the pool's newest entries).
  start = state.pool.images[16:32]
  want = train.movement(start, state.negatives)["l2"]
  np.testing.assert_allclose(moved[-1], want, atol=0.01)
  assert moved[-1] > 0


@pytest.mark.parametrize(
  "name",
  sorted(
    f[:-3]
    for f in os.listdir(os.path.join(os.path.dirname(__file__), "..", "configs"))
    if f.endswith(".py") and f not in ("__init__.py", "family.py")
  ),
)
def test_every_shipped_config_validates(name):
  import importlib  # pylint: disable=g-import-not-at-top

  config = importlib.import_module(f"configs.{name}").get_config()
  config_checks.validate_config(config)


def test_paper_and_winn_texture_configs_differ_only_where_documented():
  from configs import texture, texture_paper, winn_texture  # pylint: disable=g-import-not-at-top

  paper, winn, ours = (m.get_config() for m in (texture_paper, winn_texture, texture))
  assert (paper.objective, paper.model.norm, paper.train.optimizer) == (
    "inng",
    "batch",
    "sgd",
  )
  assert paper.synthesis.step_size == 0.1 and paper.train.learning_rate == 0.01
  assert (winn.objective, winn.model.norm, winn.model.activation, winn.model.pool) == (
    "wasserstein",
    "layer",
    "swish",
    "mean",
  )
  assert winn.train.gradient_penalty == 10.0 and winn.train.learning_rate == 1e-4
  assert ours.train.learning_rate == 1e-3
  # The geometry is the paper's in all three.
  for c in (winn, ours):
    assert (c.data.image_size, c.patch.size, tuple(c.model.features)) == (
      256,
      64,
      (64, 128, 256, 512),
    )


def test_checkpoints_and_grids_every_k_stages_keep_resume_exact(tmp_path):
  config = _config(num_stages=3, **{"checkpoint.every_stages": 2, "grid_every_stages": 2})
  full = train.train(config, str(tmp_path / "full"))
  assert sorted(os.listdir(tmp_path / "full" / "negatives")) == [
    "stage_002.png",
    "stage_003.png",
  ]
  assert sorted(os.listdir(tmp_path / "full" / "checkpoints")) == ["2", "3"]
  # A stop requested during stage 2 saves stage 1, although it was not due.
  part = tmp_path / "part"
  polls = []

  def should_stop():  # 5 polls a stage here: the stop comes inside stage 2
    polls.append(1)
    return "test stop" if len(polls) == 7 else None

  with pytest.raises(train.preemption.TrainingInterrupted) as info:
    train.train(config, str(part), should_stop=should_stop)
  assert info.value.completed_stages == 1
  assert sorted(os.listdir(part / "checkpoints")) == ["1"]
  resumed = train.train(config, str(part))
  _assert_trees_equal(resumed.cascade, full.cascade)
  _assert_trees_equal(resumed.negatives, full.negatives)
  with pytest.raises(ValueError, match="every_stages"):
    train.train(_config(**{"checkpoint.every_stages": 0}), str(tmp_path / "bad"))


def test_conv_noise_initial_negatives_are_smooth_noise_of_the_asked_std():
  key = jax.random.key(0)
  white = synthesis.initial_negatives(key, 8, (32, 32, 3), 0.3)
  smooth = synthesis.initial_negatives(key, 8, (32, 32, 3), 0.3, "conv_noise")
  assert smooth.shape == white.shape
  np.testing.assert_allclose(float(jnp.std(smooth)), 0.3, rtol=0.1)

  def neighbour_corr(x):
    a, b = x[:, :, :-1].ravel(), x[:, :, 1:].ravel()
    return float(jnp.corrcoef(a, b)[0, 1])

  assert abs(neighbour_corr(white)) < 0.05 and neighbour_corr(smooth) > 0.3
  with pytest.raises(ValueError, match="pool.init"):
    synthesis.initial_negatives(key, 1, (4, 4, 1), 0.3, "uniform")
  config = _config(**{"pool.init": "conv_noise", "num_stages": 1})
  state = train.init_state(config, synthesis.build_model(config), jax.random.key(1))
  assert neighbour_corr(state.negatives) > 0.3


def test_learning_rate_decays_once_per_stage():
  config = _config(
    **{
      "train.optimizer": "sgd",
      "train.learning_rate": 1.0,
      "train.lr_decay": 0.5,
      "train.steps_per_stage": 3,
    }
  )
  tx = train.make_optimizer(config)
  params = {"w": jnp.zeros(())}
  state = tx.init(params)
  steps = []
  for _ in range(7):
    updates, state = tx.update({"w": jnp.ones(())}, state, params)
    steps.append(-float(updates["w"]))
  np.testing.assert_allclose(steps, [1, 1, 1, 0.5, 0.5, 0.5, 0.25])


def test_sample_stop_window_sets_the_fewest_steps_when_sampling():
  # An energy every image already passes: each pass stops as soon as its window of
  # stop_window steps is full, i.e. after stop_window - 1 applied steps.
  config = tiny.get_config()
  config.synthesis.stop_window = 20
  config.sample.max_steps = 30  # above every window tried
  passed = lambda params, x: jnp.full((x.shape[0],), 10.0) + 0.0 * params["b"][0]
  params = {"b": jnp.zeros((1, 1))}  # one stage
  x0 = jnp.zeros((2, 4, 4, 1))
  for window in (1, 5, 20):
    config.sample.stop_window = window
    config.sample.mode = "sequential"
    sampler = synthesis.make_generation_sampler(config, passed)
    _, info = sampler.run(params, x0, jax.random.key(0))
    assert int(np.sum(info.steps)) == window - 1
  # A config saved before the field existed samples with synthesis.stop_window.
  del config.sample["stop_window"]
  assert synthesis.sampling_stop_window(config) == 20
  config.sample.stop_window = 0
  with pytest.raises(ValueError, match="sample.stop_window"):
    config_checks.validate_config(config)


def test_configs_that_still_say_synthesis_energy_keep_their_meaning(tmp_path):
  from configs import default  # pylint: disable=g-import-not-at-top
  from innjax import export  # pylint: disable=g-import-not-at-top

  # A config file of an earlier release sets the old name on today's defaults.
  old = tiny.get_config()  # synthesis.mode = "sum"
  old.synthesis.energy = "sequential"
  upgraded = config_checks.upgrade_config(old)
  assert upgraded.synthesis.mode == "sequential" and "energy" not in upgraded.synthesis
  assert old.synthesis.energy == "sequential"  # the argument is left as it was
  assert config_checks.upgrade_config(upgraded) is upgraded
  assert not config_checks.check_config_fields(upgraded, default.get_config())
  # Training reads it: a bad value under the old name is refused under the new one.
  old.synthesis.energy = "max"
  with pytest.raises(ValueError, match="synthesis.mode must be one of"):
    train.train(old, str(tmp_path))
  # A config saved in a checkpoint or an export before the rename.
  saved = checkpointing.config_to_dict(tiny.get_config())
  saved["synthesis"]["energy"] = saved["synthesis"].pop("mode")
  assert export._config(saved).synthesis.mode == "sum"
