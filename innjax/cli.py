"""What `main.py` runs: dispatch on --mode and turn known failures into clear messages.

Errors that a person can fix (a bad config value, a missing dataset or image, a
checkpoint from another config, an unwritable workdir, a workdir that another training
run is using, divergence) are `innjax.errors.InnjaxError`s: printed as one message with
the fix and exit code 2, without a traceback. Anything else is a bug (JAX, for one,
reports shape errors as ValueError): it keeps its traceback, followed by a line asking
for a bug report, and exit code 1. SIGTERM or
SIGINT during training stops it at the next safe point with the last completed stage
saved, a message saying how to resume, and exit code 0 (see innjax/preemption.py); a
second Ctrl-C stops at once (exit code 130). A Ctrl-C in the other modes says what
their files are left as (exit code 130).
"""

from __future__ import annotations

import importlib.metadata
import logging as py_logging
import os
import platform
import shlex
import signal
import sys
import traceback

from absl import logging
import ml_collections

from innjax import config_checks
from innjax import errors

MODES = ("train", "sample", "evaluate", "style", "export")


class _QuietLibraries(py_logging.Filter):
  """Drops INFO records from Orbax, TensorFlow and JAX so the per-stage lines stand
  out (JAX's is the failed probe for a TPU, `libtpu.so`, on every other machine)."""

  def filter(self, record):
    noisy = (
      "orbax" in record.pathname
      or "tensorflow" in record.pathname
      or record.name.startswith("jax.")
    )
    return record.levelno >= py_logging.WARNING or not noisy


def quiet_library_logs() -> None:
  """Keeps library chatter out of the run's log (warnings still show).

  Also TensorFlow's C++ INFO lines (the oneDNN notice), unless the environment sets
  TF_CPP_MIN_LOG_LEVEL itself; TensorFlow reads it when imported, which is later
  (only to read a tfds dataset: TensorBoard events are written without it).
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  from innjax import console  # pylint: disable=g-import-not-at-top

  console.quiet_tensorflow_import()  # its load-time notices ignore that variable
  py_logging.getLogger("absl").addFilter(_QuietLibraries())
  for handler in py_logging.getLogger().handlers:
    handler.addFilter(_QuietLibraries())


def with_overrides(
  config: ml_collections.ConfigDict, overrides: dict
) -> ml_collections.ConfigDict:
  """Sets dotted fields, e.g. {"train.learning_rate": 0.001}, as --config.X=Y would.

  For scripts, tests and notebooks that build a config in Python; an unknown field
  raises the same error as a misspelt command-line override.
  """
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


def _reference_config():
  """configs/default.py's config, or None when `configs` is not importable."""
  try:
    from configs import default  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return default.get_config()


def resume_command() -> str:
  """The command line this process was started with, ready to paste."""
  return " ".join(["python"] + [shlex.quote(arg) for arg in sys.argv])


# What a Ctrl-C in each mode leaves behind, and what to do next.
_INTERRUPTED = {
  "train": "Checkpoints are committed atomically, so the last completed one is "
  "intact; rerun the same command to go on",
  "sample": "--mode=sample stopped. Sample files are complete under their final "
  "name or absent, never half-written, and earlier ones are never "
  "replaced; rerun the same command to sample again",
  "style": "--mode=style stopped. Its images are complete under their final name "
  "or absent, never half-written, and earlier ones are never replaced; "
  "rerun the same command to render again",
  "evaluate": "--mode=evaluate stopped. Its reports are complete under their final "
  "name or absent, never half-written, and earlier ones are never "
  "replaced; rerun the same command to evaluate again",
  "export": "--mode=export stopped. The export file is complete under its final "
  "name or absent; rerun the same command to export again",
}


def _version(package: str) -> str:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return "not installed"


def bug_report_request() -> str:
  """The line printed after the traceback of an unexpected error: what to report."""
  versions = ", ".join(
    f"{name} {_version(name)}"
    for name in ("innjax", "jax", "flax", "optax", "orbax-checkpoint")
  )
  return (
    "innjax: unexpected error (traceback above). Unless it is about this machine "
    "(a full disk, missing permissions), it is a bug in innjax: please report it "
    "on the innjax issue tracker with the command line, the config file and "
    "overrides, this whole output and the versions: "
    f"{versions}, Python {platform.python_version()} on {platform.platform()}."
  )


def _print_written(paths) -> None:
  """Says which files a mode wrote (none on the other hosts of a multi-host run)."""
  paths = [p for p in paths if p]
  if paths:
    print("Wrote " + ", ".join(paths))


def run(mode: str, config, workdir: str, output_dir: str | None = None) -> int:
  """Runs `mode` and returns the process exit code.

  Args:
    mode: one of MODES.
    config: the run's config.
    workdir: the run's folder.
    output_dir: sample, style, evaluate and export: write there instead of the workdir.
  """
  if logging.get_verbosity() < logging.DEBUG:  # --verbosity=1 shows them
    quiet_library_logs()
  # Imported here so `main.py --help` answers without loading JAX, and each mode
  # below imports only its own module: evaluation's SciPy costs a sampling run 0.2 s.
  from innjax import console
  from innjax import preemption

  problem = console.backend_problem()
  if problem:
    print(f"innjax: error: {problem}", file=sys.stderr)
    return 2
  try:
    if output_dir and mode == "train":
      raise errors.ConfigError(
        "--output_dir is for --mode=sample, style, evaluate and "
        "export; training writes everything in --workdir."
      )
    config_checks.check_config_type(config)
    config = config_checks.upgrade_config(config)  # e.g. synthesis.energy, now .mode
    reference = _reference_config()
    if reference is not None:
      for note in config_checks.check_config_fields(config, reference):
        logging.warning("%s.", note)
    if mode == "train":
      import jax  # pylint: disable=g-import-not-at-top
      from innjax import train  # pylint: disable=g-import-not-at-top

      # Hosts must agree where to stop: with several, SIGTERM stays with JAX's
      # preemption service and the loop asks Orbax at stage boundaries instead.
      signals = (signal.SIGTERM, signal.SIGINT) if jax.process_count() == 1 else ()
      with preemption.SignalGuard(signals) as stop:
        state = train.train(config, workdir, should_stop=stop)
      logging.info(
        "Training finished after %d stages; checkpoints in %s. Sample with "
        "`python main.py --config=... --workdir=%s --mode=sample`.",
        int(state.stage),
        workdir,
        workdir,
      )
    elif mode == "sample":
      from innjax import generate  # pylint: disable=g-import-not-at-top

      _, stats = generate.generate(config, workdir, output_dir=output_dir)
      _print_written([stats["png"], stats["npz"]])
    elif mode == "evaluate":
      from innjax import evaluate  # pylint: disable=g-import-not-at-top

      results = evaluate.evaluate(config, workdir, output_dir=output_dir)
      print(evaluate.to_markdown(results))
      _print_written(results["files"].values())
    elif mode == "style":
      from innjax import style  # pylint: disable=g-import-not-at-top

      _, stats = style.stylize(config, workdir, output_dir=output_dir)
      _print_written([stats["png"], stats["side_by_side"]])
    elif mode == "export":
      from innjax import export  # pylint: disable=g-import-not-at-top

      _print_written([export.export(config, workdir, output_dir=output_dir)])
    else:
      raise errors.ConfigError(f"Unknown --mode={mode!r}; choose one of {MODES}.")
  except preemption.TrainingInterrupted as stop:
    done = stop.completed_stages or 0
    saved = (
      f"the checkpoint of stage {done} is committed in {workdir}/checkpoints"
      if done
      else "no stage had been completed, so there is nothing to keep"
    )
    print(
      f"innjax: {stop.reason} received: stopped cleanly during stage {done + 1} "
      f"of {int(config.num_stages)}; {saved}. Rerun the same command to resume "
      f"after stage {done} (the dropped stage is redone exactly):\n"
      f"  {resume_command()}",
      file=sys.stderr,
    )
    return 0
  except KeyboardInterrupt:
    print(
      f"innjax: interrupted. {_INTERRUPTED.get(mode, _INTERRUPTED['train'])}:\n"
      f"  {resume_command()}",
      file=sys.stderr,
    )
    return 130
  except errors.InnjaxError as err:
    print(f"innjax: error: {err}", file=sys.stderr)
    return 2
  except Exception:  # pylint: disable=broad-except
    traceback.print_exc()
    print(bug_report_request(), file=sys.stderr)
    return 1
  return 0
