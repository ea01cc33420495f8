"""The console: --help, --help_config, quiet start-up, TensorBoard events."""

import fcntl
import logging as py_logging
import os
import pty
import struct
import subprocess
import sys
import termios

import jax
import jax.numpy as jnp
import numpy as np

from configs import default
import tensorboard_events
from innjax import cli
from innjax import config_checks
from innjax import config_help
from innjax import console
from innjax import summaries

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args, env=None):
  """Runs `python main.py ARGS` from the repository root; returns the process."""
  return subprocess.run(
    [sys.executable, "main.py", *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_help_exits_0_and_points_to_the_config_fields():
  for flag in ("--help", "-h", "--helpfull"):
    done = _main(flag)
    assert done.returncode == 0, (flag, done.stderr)
    assert "--help_config" in done.stdout


def test_help_config_lists_every_field_with_its_value_and_meaning():
  done = _main(
    "--config=configs/tiny.py", "--config.train.learning_rate=0.5", "--help_config"
  )
  assert done.returncode == 0, done.stderr
  lines = done.stdout.splitlines()
  # The run's own values, overrides included, and default.py's comment as meaning.
  assert any(line.startswith("  train.learning_rate = 0.5  # ") for line in lines)
  assert "  num_stages = 3" in lines
  for name in config_checks.config_fields(default.get_config()):
    assert any(line.startswith(f"  {name} = ") for line in lines), name


def test_field_meanings_take_the_line_comment_or_the_block_above():
  source = (
    "  # The pool.\n  # Second line.\n  config.pool.size = 3\n"
    "  config.lr = 0.1  # a '#' in text\n  config.x = '#not a comment'\n"
  )
  assert config_help.field_meanings(source) == {
    "pool.size": "The pool. Second line.",
    "lr": "a '#' in text",
  }


def test_a_missing_backend_is_one_line_and_exit_2(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="tpu")
  done = _main("--config=configs/tiny.py", f"--workdir={tmp_path / 'run'}", env=env)
  assert done.returncode == 2
  assert done.stderr.count("\n") == 1, done.stderr
  assert "JAX_PLATFORMS=tpu asks for a backend this machine does not have" in done.stderr
  assert not (tmp_path / "run").exists()


def test_a_fallback_backend_is_named_in_one_warning(monkeypatch, caplog):
  monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
  assert console.backend_problem() is None
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert warnings == [
    "JAX_PLATFORMS asks for cuda first, which is not available here: running on cpu."
  ]


def test_library_info_lines_are_dropped_and_warnings_kept():
  quiet = cli._QuietLibraries()

  def record(name, level, path="/x.py"):
    return py_logging.LogRecord(name, level, path, 1, "m", None, None)

  assert not quiet.filter(record("jax._src.xla_bridge", py_logging.INFO))
  assert quiet.filter(record("jax._src.xla_bridge", py_logging.WARNING))
  assert quiet.filter(record("absl", py_logging.INFO, "/work/innjax/train.py"))


def test_load_time_notices_of_a_module_are_dropped(tmp_path, monkeypatch, capfd):
  # A module whose import writes to file descriptor 2, as TensorFlow's C++ code does.
  (tmp_path / "noisy_native.py").write_text(
    "import os\nos.write(2, b'I0000 port.cc] oneDNN custom operations are on\\n'"
    "\n  b'a real problem\\n')\n".replace("\n  b", " + b")
  )
  monkeypatch.syspath_prepend(str(tmp_path))
  hook = console.QuietImport("noisy_native")
  monkeypatch.setattr(sys, "meta_path", [hook] + sys.meta_path)
  import noisy_native  # pylint: disable=import-outside-toplevel,unused-import

  err = capfd.readouterr().err
  assert "a real problem" in err and "oneDNN" not in err
  assert hook not in sys.meta_path  # it acts on the first import only


def test_event_files_hold_scalars_and_images_without_tensorflow(tmp_path):
  writer = summaries.EventWriter(str(tmp_path))
  writer.write_scalars(1, {"loss": 0.5})
  writer.write_images(2, {"negatives": np.full((4, 6, 1), 7, np.uint8)})
  writer.close()
  (path,) = [p for p in tmp_path.iterdir() if "tfevents" in p.name]
  events = tensorboard_events.read_events(str(path))
  assert events[0].file_version == "brain.Event:2"
  assert [(e.step, v.tag) for e in events[1:] for v in e.summary.value] == [
    (1, "loss"),
    (2, "negatives"),
  ]
  assert events[1].summary.value[0].simple_value == 0.5
  image = events[2].summary.value[0].image
  assert (image.height, image.width, image.colorspace) == (4, 6, 1)
  assert image.encoded_image_string.startswith(b"\x89PNG")


_PROGRESS_SCRIPT = """
import time
from absl import logging
from innjax import console
logging.set_verbosity(logging.INFO)
with console.Progress(4, "sampling", interval=float({interval})) as bar:
  for _ in range(4):
    time.sleep(0.05)
    bar.update()
print("end")
"""


def _progress_output(interval, use_pty):
  """stderr and stdout of a 4-step Progress loop, stderr a terminal or a pipe."""
  script = _PROGRESS_SCRIPT.format(interval=interval)
  if not use_pty:
    done = subprocess.run(
      [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    return done.stderr + done.stdout
  return _in_terminal([sys.executable, "-c", script])


def _in_terminal(command, timeout=60):
  """Everything `command` writes to its stdout and stderr, both a terminal."""
  main, child = pty.openpty()
  # A new pseudo-terminal is 0 columns wide; a real one has a size.
  fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
  proc = subprocess.Popen(
    command, cwd=ROOT, stdout=child, stderr=child, stdin=subprocess.DEVNULL
  )
  os.close(child)
  chunks = []
  while True:
    try:
      data = os.read(main, 4096)
    except OSError:  # the child closed the terminal
      break
    if not data:
      break
    chunks.append(data)
  proc.wait(timeout=timeout)
  os.close(main)
  return b"".join(chunks).decode(errors="replace")


def test_progress_is_a_bar_in_a_terminal():
  out = _progress_output(30, use_pty=True)
  assert "sampling:" in out and "4/4" in out and "\r" in out  # tqdm redraws in place
  assert out.rstrip().endswith("end")


def test_progress_is_quiet_in_a_log_and_plain_lines_when_due():
  assert _progress_output(30, use_pty=False).strip() == "end"  # a short loop: nothing
  lines = _progress_output(0, use_pty=False)
  assert "\r" not in lines and "sampling: 1/4 batches (25%)" in lines and "ETA" in lines


def test_progress_counts_device_work_once_computed():
  x = jnp.ones((64, 64))
  with console.Progress(3, "test", bar=False) as bar:
    for _ in range(3):
      x = x @ x / 64.0
      bar.track(x)
  assert bar.done == 3


def test_training_stages_show_bars_in_a_terminal_and_stay_quiet_in_a_log(tmp_path):
  # One configs/tiny.py stage twice at once: on a terminal, and into a pipe as in CI.
  def command(name):
    return [
      sys.executable,
      "main.py",
      "--config=configs/tiny.py",
      "--config.num_stages=1",
      f"--workdir={tmp_path / name}",
    ]

  piped = subprocess.Popen(
    command("log"), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
  )
  shown = _in_terminal(command("terminal"), timeout=300)
  logged, _ = piped.communicate(timeout=300)
  assert piped.returncode == 0, logged
  for out in (shown, logged):  # the per-stage summary line as before
    assert "stage 1/1: classifier loss" in out, out
  # tqdm redraws the bars in place, and clears them before the summary line.
  assert "stage 1/1 classifier:" in shown and "/10 [" in shown and "\r" in shown
  assert "stage 1/1 synthesis:" in shown
  # A stage of seconds prints no progress line in a log.
  assert "stage 1/1 classifier" not in logged and "stage 1/1 synthesis" not in logged


def test_stage_progress_counts_updates_and_synthesis_batches(caplog):
  from absl import logging  # pylint: disable=import-outside-toplevel
  from configs import tiny  # pylint: disable=import-outside-toplevel
  from innjax import synthesis, train  # pylint: disable=import-outside-toplevel

  logging.set_verbosity(logging.INFO)
  config = tiny.get_config()
  config.train.steps_per_stage, config.train.log_every = 12, 5  # 3 chunks of 5
  metrics = {
    "loss": 0.5,
    "acc_pos": 1.0,
    "acc_neg": 1.0,
    "finite_loss": True,
    "finite_logits": True,
  }

  def chunk(params, batch_stats, opt_state, pool, positives, key):
    del pool, positives, key
    return params, batch_stats, opt_state, metrics

  state = train.TrainState(
    stage=0,
    params={},
    batch_stats={},
    opt_state=(),
    cascade={},
    pool=None,
    negatives=None,
    key=None,
  )
  assert train.updates_per_stage(config) == 15
  with console.Progress(
    15, "stage 1/1 classifier", "update", interval=0, bar=False
  ) as progress:
    _, summary = train.classification_step(
      state, chunk, None, config, jax.random.key(0), progress=progress
    )
  assert progress.done == summary["classifier_updates"] == 15
  assert "stage 1/1 classifier: 5/15 updates (33%)" in caplog.text

  class Info:  # what the sampler's run returns besides the images
    steps, mean_prob = jnp.ones(4), jnp.float32(0.5)

  with console.Progress(3, "stage 1/1 synthesis", interval=0, bar=False) as progress:
    x, _, _ = synthesis.synthesize(
      lambda p, x0, key, mask, cap: (x0 + 1, Info),
      None,
      None,
      jnp.zeros((12, 2)),
      jax.random.key(0),
      4,
      10,
      progress=progress,
    )
  assert progress.done == 3 and float(x.sum()) == 24.0
  assert "stage 1/1 synthesis: 1/3 batches" in caplog.text
