"""Reliability: interruption, SIGKILL, divergence and every bad input a user can give.

Each row of docs/troubleshooting.md's table names the test here that checks it.
Checks that need the real command line run `python main.py` in a subprocess (flag
errors exit before JAX is imported, so those are quick); the rest call the same
functions in this process. Training runs use the tiny config; the in-process ones
start from a copy of the first checkpoint of one shared uninterrupted run
(conftest.py's `tiny_run`). Bad inputs that a module's own tests already cover are
checked there: dataset and image-file errors in test_data.py, sampler arguments in
test_sampler.py.
"""

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from configs import default, tiny
from innjax import checkpointing, cli, config_checks, data, preemption, synthesis, train
import soak_harness

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**overrides):
  return cli.with_overrides(tiny.get_config(), overrides)


def _snapshot(folder):
  """Every file under `folder` with its size and modification time."""
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      st = os.stat(path)
      out[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
  return out


def _run_cli(mode, config, workdir, capsys):
  """cli.run as main.py calls it; returns (exit code, stderr)."""
  rc = cli.run(mode, config, str(workdir))
  err = capsys.readouterr().err
  assert "Traceback" not in err
  return rc, err


def _main(*args, timeout=300, env=None):
  """`python main.py ARGS` from the repository root; returns (exit code, output)."""
  result = subprocess.run(
    [sys.executable, "main.py", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=timeout,
    env=env,
  )
  return result.returncode, result.stdout + result.stderr


# --------------------------------------------------------------------------------------
# Workdirs that start from the first checkpoint of the shared uninterrupted run.


def _after_stage_1(tiny_run, tmp_path):
  """A workdir holding only the checkpoint of stage 1 of `tiny_run`."""
  workdir = tmp_path / "run"
  shutil.copytree(os.path.join(tiny_run[0], "checkpoints"), workdir / "checkpoints")
  for step in soak_harness.committed_steps(workdir):
    if step > 1:
      shutil.rmtree(workdir / "checkpoints" / str(step))
  return str(workdir)


# --------------------------------------------------------------------------------------
# Interruption.


def test_signal_guard_records_the_first_signal_and_restores_handlers():
  calls = []
  previous = signal.signal(signal.SIGTERM, lambda *a: calls.append("previous"))
  try:
    with preemption.SignalGuard() as stop:
      assert stop() is None
      os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(0.01)
      assert stop() == "SIGTERM" and calls == []
      with pytest.raises(preemption.TrainingInterrupted, match="SIGTERM"):
        preemption.raise_if_requested(stop)
    os.kill(os.getpid(), signal.SIGTERM)  # the previous handler is back
    time.sleep(0.01)
    assert calls == ["previous"]
  finally:
    signal.signal(signal.SIGTERM, previous)


def test_a_second_signal_goes_to_the_previous_handler_at_once():
  calls = []
  previous = signal.signal(signal.SIGINT, lambda *a: calls.append("previous"))
  try:
    with preemption.SignalGuard() as stop:
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(0.01)
      assert stop() == "SIGINT" and calls == []
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(0.01)
      assert calls == ["previous"]
  finally:
    signal.signal(signal.SIGINT, previous)


def test_stop_request_drops_the_stage_and_resume_is_exact(tiny_run, tmp_path):
  workdir = _after_stage_1(tiny_run, tmp_path)
  polls = []

  def should_stop():  # asks for a stop before the second classifier chunk of stage 2
    polls.append(1)
    return "SIGTERM" if len(polls) == 3 else None

  with pytest.raises(preemption.TrainingInterrupted) as info:
    train.train_and_evaluate(_config(), workdir, should_stop=should_stop)
  assert info.value.completed_stages == 1 and info.value.reason == "SIGTERM"
  assert soak_harness.committed_steps(workdir) == [1]
  resumed = train.train_and_evaluate(_config(), workdir)
  assert soak_harness.states_equal(resumed, tiny_run[1])


def test_sigterm_stops_cleanly_with_exit_0_and_the_resume_command(tmp_path):
  workdir = str(tmp_path / "run")
  process = soak_harness.Process(
    soak_harness.train_command(workdir, {"num_stages": 200}),
    soak_harness.subprocess_env(soak_harness.CACHE_DIR),
  )
  try:  # wait until training is under way
    process.wait_for(re.compile(r"stage 1/200"), time.monotonic() + 300)
    process.popen.send_signal(signal.SIGTERM)
    rc = process.wait(timeout=120)
  finally:
    process.popen.kill()
  out = process.text()
  assert rc == 0, out
  assert "Traceback" not in out
  match = re.search(
    r"innjax: SIGTERM received: stopped cleanly during stage (\d+) of "
    r"200; the checkpoint of stage (\d+) is committed",
    out,
  )
  assert match, out
  assert int(match.group(2)) == int(match.group(1)) - 1 >= 1
  assert "Rerun the same command to resume" in out and f"--workdir={workdir}" in out
  assert soak_harness.committed_steps(workdir)[-1] == int(match.group(2))


def test_three_sigkills_then_resume_equals_an_uninterrupted_run(tiny_run, tmp_path):
  # `python main.py` killed three times (twice while training, once while starting),
  # then run to the end: its final state must equal the uninterrupted tiny_run.
  summary = soak_harness.run_soak(
    kills=3,
    seed=0,
    stages=int(_config().num_stages),
    root=str(tmp_path / "soak"),
    cache_dir=soak_harness.CACHE_DIR,
    max_seconds=900,
    timing=soak_harness.Timing(startup_s=10.0, stage_s=0.3),
    kinds=["stage", "start", "stage"],
    reference_dir=tiny_run[0],
    log=lambda line: None,
  )
  assert summary["kills"] == 3
  assert [k.restored_ok for k in summary["kill_log"]] == [True] * 3, summary["kill_log"]
  assert summary["all_equal"] and summary["survived"] == 3, summary


# --------------------------------------------------------------------------------------
# Divergence.


def test_nan_in_the_classifier_keeps_the_last_good_checkpoint(tiny_run, tmp_path):
  workdir = _after_stage_1(tiny_run, tmp_path)
  before = _snapshot(os.path.join(workdir, "checkpoints"))
  with pytest.raises(
    train.TrainingDivergedError,
    match=r"stage 2, classification: the classifier loss.*NaN/inf.*"
    r"checkpoint of stage 1 is kept.*learning_rate=1e\+29",
  ):
    train.train_and_evaluate(_config(**{"train.learning_rate": 1e30}), workdir)
  assert soak_harness.committed_steps(workdir) == [1]
  assert _snapshot(os.path.join(workdir, "checkpoints")) == before
  # The documented recovery: the learning rate is not part of the architecture, so a
  # rerun with a lower one resumes from stage 1 (resuming is exact, see the stop test).
  lower = _config(**{"train.learning_rate": 0.001})
  assert int(soak_harness.load_state(workdir, lower).stage) == 1


def test_nan_in_synthesised_images_names_synthesis(
  tiny_run, tmp_path, monkeypatch, capsys
):
  workdir = _after_stage_1(tiny_run, tmp_path)

  def poisoned(run_fn, stacked, mask, x0, *args, **kwargs):
    # What a sampler that blew up returns; the real one need not be compiled here.
    return x0.at[0, 0, 0, 0].set(np.nan), np.zeros(1), np.zeros(1)

  monkeypatch.setattr(synthesis, "synthesize", poisoned)
  rc, err = _run_cli("train", _config(), workdir, capsys)
  assert rc == 2
  smaller = _config().synthesis.step_size / 10
  assert re.search(
    r"innjax: error: stage 2, synthesis: the synthesised "
    r"pseudo-negatives contain NaN/inf\. The checkpoint of stage 1 is "
    rf"kept.*synthesis\.step_size={smaller:g}\.",
    err,
  ), err
  assert soak_harness.committed_steps(workdir) == [1]


# --------------------------------------------------------------------------------------
# Checkpoints: another architecture, half-written steps, a full disk.


def test_checkpoint_from_another_architecture_is_refused(tiny_run, tmp_path, capsys):
  workdir = _after_stage_1(tiny_run, tmp_path)
  before = _snapshot(workdir)
  other = _config(**{"model.features": (4, 8)})
  rc, err = _run_cli("train", other, workdir, capsys)
  assert rc == 2 and "innjax: error:" in err and "model.features" in err
  assert "Nothing was changed on disk" in err
  assert _snapshot(workdir) == before


def test_half_written_step_is_ignored_and_cleaned_up(tiny_run, tmp_path):
  workdir = _after_stage_1(tiny_run, tmp_path)
  # What a save killed half way leaves: Orbax's temporary folder for step 2.
  partial = os.path.join(workdir, "checkpoints", "2.orbax-checkpoint-tmp")
  shutil.copytree(
    os.path.join(tiny_run[0], "checkpoints", "2", "state"), os.path.join(partial, "state")
  )
  good = _snapshot(os.path.join(workdir, "checkpoints", "1"))
  reader = checkpointing.Manager(workdir, _config(), read_only=True)
  assert reader.latest_step() == 1 and os.path.exists(partial)  # readers leave it
  trainer = checkpointing.Manager(workdir, _config())
  state = trainer.restore_latest(soak_harness.state_template(_config()))
  trainer.wait_until_finished()
  trainer.close()
  assert int(state.stage) == 1
  assert not os.path.exists(partial)
  assert _snapshot(os.path.join(workdir, "checkpoints", "1")) == good


@pytest.mark.parametrize("damage", ["missing_files", "truncated_arrays"])
def test_damaged_latest_step_is_named_and_kept(tiny_run, tmp_path, capsys, damage):
  workdir = str(tmp_path / "run")
  shutil.copytree(
    os.path.join(tiny_run[0], "checkpoints"), os.path.join(workdir, "checkpoints")
  )
  step = os.path.join(workdir, "checkpoints", "3")
  if damage == "missing_files":  # e.g. a copy cut short
    os.remove(os.path.join(step, "_CHECKPOINT_METADATA"))
    shutil.rmtree(os.path.join(step, "state", "ocdbt.process_0"))
  else:
    for root, _, files in os.walk(os.path.join(step, "state")):
      for name in files:
        if os.path.basename(root) == "d":
          with open(os.path.join(root, name), "r+b") as f:
            f.truncate(8)
  before = _snapshot(workdir)
  rc, err = _run_cli("train", _config(), workdir, capsys)
  assert rc == 2
  assert re.search(r"innjax: error: Checkpoint step 3 .* is incomplete or damaged", err)
  assert f"mv {step} {step}.damaged" in err and "Nothing was changed on disk" in err
  assert _snapshot(workdir) == before
  # The fix the message gives: move the step aside, and training resumes from step 2.
  os.rename(step, step + ".damaged")
  assert int(soak_harness.load_state(workdir, _config()).stage) == 2


def test_disk_full_during_save_keeps_the_previous_checkpoint(
  tiny_run, tmp_path, monkeypatch, capsys
):
  from orbax.checkpoint._src.handlers import json_checkpoint_handler

  async def disk_full(self, item, directory):
    raise OSError(errno.ENOSPC, "No space left on device")

  workdir = _after_stage_1(tiny_run, tmp_path)
  good = _snapshot(os.path.join(workdir, "checkpoints", "1"))
  with monkeypatch.context() as patch:
    # Fails inside Orbax's own (asynchronous) save, where a full disk would.
    patch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", disk_full)
    rc, err = _run_cli("train", _config(), workdir, capsys)
  assert rc == 2
  assert re.search(
    r"innjax: error: Saving the checkpoint of stage 2 to .* failed "
    r"\(OSError: .*No space left on device\): the disk is full; free "
    r"space, then rerun the same command to resume\. Nothing else was "
    r"lost: step 1 is the newest complete checkpoint",
    err,
  ), err
  assert soak_harness.committed_steps(workdir) == [1]
  assert _snapshot(os.path.join(workdir, "checkpoints", "1")) == good
  folder = os.path.join(workdir, "checkpoints")
  assert [n for n in os.listdir(folder) if "tmp" in n]  # the failed save's leftovers
  # Space freed, the same command starts again: it removes the leftovers and resumes
  # from stage 1 (resuming from there is exact, see the stop test).
  trainer = checkpointing.Manager(workdir, _config())
  assert int(trainer.restore_latest(soak_harness.state_template(_config())).stage) == 1
  trainer.wait_until_finished()
  trainer.close()
  assert not [n for n in os.listdir(folder) if "tmp" in n]
  assert _snapshot(os.path.join(folder, "1")) == good


# --------------------------------------------------------------------------------------
# Workdirs.


def _read_only_dir(tmp_path):
  folder = tmp_path / "read_only"
  folder.mkdir()
  folder.chmod(0o555)
  if not os.access(folder, os.W_OK):
    return str(folder / "run")
  # Running as root, which ignores permissions: /sys refuses new folders.
  try:
    os.makedirs("/sys/innjax_write_test")
  except OSError:
    return "/sys/innjax_write_test/run"
  os.rmdir("/sys/innjax_write_test")
  pytest.skip("no read-only location available")


def test_read_only_workdir_is_refused(tmp_path, capsys):
  workdir = _read_only_dir(tmp_path)
  rc, err = _run_cli("train", _config(), workdir, capsys)
  assert rc == 2
  assert re.search(
    r"innjax: error: .*Cannot write to workdir .*choose a writable "
    r"--workdir",
    err,
  ), err


def test_workdir_that_is_a_file_is_refused(tmp_path, capsys):
  path = tmp_path / "a_file"
  path.write_text("not a folder")
  rc, err = _run_cli("train", _config(), path, capsys)
  assert rc == 2 and "Cannot write to workdir" in err
  assert path.read_text() == "not a folder"


def test_sampling_a_workdir_without_checkpoint_creates_nothing(tmp_path, capsys):
  workdir = tmp_path / "never_trained"
  rc, err = _run_cli("sample", _config(), workdir, capsys)
  assert rc == 2 and "innjax: error: No checkpoint in" in err and "train first" in err
  assert not workdir.exists()


# --------------------------------------------------------------------------------------
# Config values.


def test_config_file_misspelt_field(capsys, tmp_path):
  config = _config()
  config.train.learnig_rate = 0.5
  rc, err = _run_cli("train", config, tmp_path, capsys)
  assert rc == 2
  assert (
    "train.learnig_rate is not a config field (did you mean train.learning_rate?)" in err
  )


def test_unknown_field_unlike_any_other_is_only_a_note():
  config = _config()
  config.data.my_note = "hello"
  notes = config_checks.check_config_fields(config, default.get_config())
  assert notes == ["config field data.my_note is not used by innjax and is ignored"]


@pytest.mark.parametrize(
  "override, match",
  [
    ({"data.image_size": 0}, "data.image_size must be positive"),
    ({"data.image_size": -16}, "data.image_size must be positive"),
    ({"num_stages": 0}, "num_stages must be >= 1"),
    ({"train.pos_batch": 0}, "train.pos_batch must be >= 1"),
    ({"train.steps_per_stage": -5}, "train.steps_per_stage must be >= 1"),
    ({"pool.negatives_per_stage": 0}, "pool.negatives_per_stage must be >= 1"),
    ({"pool.capacity": 4}, "pool.capacity"),
    ({"synthesis.batch_size": 0}, "synthesis.batch_size must be >= 1"),
    ({"sample.num": 0}, "sample.num must be >= 1"),
    ({"sample.batch_size": -1}, "sample.batch_size must be >= 1"),
    ({"data.image_size": 18}, "not divisible by 4"),
    ({"data.channels": 4}, "data.channels must be 1 or 3"),
    ({"model.features": (8, 0)}, "model.features must be positive"),
  ],
)
def test_bad_sizes_are_refused(override, match, tmp_path, capsys):
  rc, err = _run_cli("train", _config(**override), tmp_path, capsys)
  assert rc == 2 and "innjax: error: Bad config:" in err and match in err, err
  assert not os.listdir(tmp_path)


def test_patch_larger_than_the_image(tmp_path, capsys):
  config = _config(**{"patch.size": 64})
  rc, err = _run_cli("train", config, tmp_path, capsys)
  assert rc == 2
  assert "patch.size=64 is larger than the training image (data.image_size=16)" in err


@pytest.mark.parametrize(
  "override, match",
  [
    ({"synthesis.stop_prob": 1.5}, "synthesis.stop_prob must be in the open interval"),
    ({"synthesis.step_size": -0.1}, "synthesis.step_size must be a positive"),
    ({"synthesis.beta1": 1.0}, "synthesis.beta1 must be in [0, 1)"),
    ({"synthesis.noise_schedule": "warm"}, "synthesis.noise_schedule must be one of"),
    ({"synthesis.mode": "max"}, "synthesis.mode must be one of"),
    ({"sample.mode": "gibbs"}, "sample.mode must be one of"),
    ({"variant": "gan"}, "variant must be one of"),
    ({"model.dtype": "float16"}, "model.dtype must be"),
    ({"train.learning_rate": -1.0}, "train.learning_rate must be > 0"),
    ({"train.learning_rate": 0.0}, "train.learning_rate must be > 0"),
    ({"pool.age_decay": 0.0}, "pool.age_decay must be in (0, 1]"),
  ],
)
def test_bad_config_values_are_refused(override, match, tmp_path, capsys):
  rc, err = _run_cli("train", _config(**override), tmp_path, capsys)
  assert rc == 2 and "innjax: error:" in err and match in err, err


# --------------------------------------------------------------------------------------
# Image files (the other dataset and image-file errors are checked in test_data.py).


def test_grayscale_rgba_and_16_bit_images_are_converted(tmp_path):
  # To one channel; test_data.py checks the same files converted to three.
  folder = tmp_path / "images"
  folder.mkdir()
  Image.fromarray(np.full((20, 20), 100, np.uint8)).save(folder / "a_gray.png")
  rgba = np.zeros((20, 20, 4), np.uint8)  # fully transparent: composited on white
  Image.fromarray(rgba).save(folder / "b_rgba.png")
  Image.fromarray(np.full((20, 20), 32896, np.uint16)).save(folder / "c_16bit.png")
  config = _config(
    **{"data.source": "folder", "data.path": str(folder), "data.channels": 1}
  ).data
  dataset = data.load_dataset(config)
  assert dataset.images.shape == (3, 16, 16, 1) and dataset.images.dtype == np.uint8
  np.testing.assert_array_equal(dataset.images[0], 100)
  np.testing.assert_array_equal(dataset.images[1], 255)
  np.testing.assert_array_equal(dataset.images[2], 128)  # 32896 / 257, not clipped


def test_a_missing_npz_file_is_refused():
  config = _config(**{"data.source": "npz", "data.path": "/nonexistent/x.npz"}).data
  with pytest.raises(ValueError, match=r"'/nonexistent/x\.npz' not found"):
    data.load_dataset(config)


# --------------------------------------------------------------------------------------
# Command-line flags (these exit before JAX is imported).


@pytest.mark.parametrize(
  "args, match",
  [
    (["--config.train.learnig_rate=0.1"], 'Did you mean "learning_rate"'),
    (["--config.num_stages=abc"], "flag --config.num_stages=abc"),
    (["--wrkdir=/tmp/x"], "Unknown command line flag 'wrkdir'. Did you mean: workdir"),
    (["--mode=generate"], "flag --mode=generate: value should be one of"),
    (["stray_argument"], "unexpected arguments: stray_argument"),
  ],
)
def test_command_line_flag_errors(args, match):
  rc, out = _main("--config=configs/tiny.py", *args)
  assert rc == 2 and "innjax: error:" in out and match in out, out
  assert "Traceback" not in out


def test_missing_config_file_is_refused():
  rc, out = _main("--config=configs/nope.py")
  assert rc == 2 and "innjax: error:" in out and "configs/nope.py" in out
  assert "Traceback" not in out


def test_config_file_missing_a_field_through_main(tmp_path):
  config_file = tmp_path / "my_config.py"
  config_file.write_text(
    "from configs import tiny\n\n\ndef get_config():\n"
    "  config = tiny.get_config()\n  del config.sample['seed']\n  return config\n"
  )
  workdir = tmp_path / "run"
  rc, out = _main(f"--config={config_file}", f"--workdir={workdir}")
  assert rc == 2
  assert "innjax: error: Bad config: the config lacks field(s) sample.seed" in out, out
  assert "Traceback" not in out and not workdir.exists()
