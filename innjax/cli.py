"""What `main.py` runs: dispatch on --mode and turn known failures into clear messages.

Errors that a person can fix (a bad config value, a missing dataset or image, a
checkpoint from another config, an unwritable workdir, divergence) are printed as one
message with the fix and exit code 2, without a traceback; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import logging as py_logging
import sys

from absl import logging

MODES = ("train", "sample", "evaluate")


class _QuietLibraries(py_logging.Filter):
  """Drops INFO records from Orbax and TensorFlow so the per-stage lines stand out."""

  def filter(self, record):
    noisy = ("orbax" in record.pathname or "tensorflow" in record.pathname
             or "clu" in record.pathname)
    return record.levelno >= py_logging.WARNING or not noisy


def quiet_library_logs() -> None:
  """Keeps library chatter out of the run's log (warnings still show)."""
  py_logging.getLogger("absl").addFilter(_QuietLibraries())
  for handler in py_logging.getLogger().handlers:
    handler.addFilter(_QuietLibraries())


def run(mode: str, config, workdir: str) -> int:
  """Runs `mode` and returns the process exit code."""
  quiet_library_logs()
  # Imported here so `main.py --help` answers without loading JAX and TensorFlow.
  from innjax import checkpointing, evaluate, generate, train
  try:
    if mode == "train":
      state = train.train_and_evaluate(config, workdir)
      logging.info("Training finished after %d stages; checkpoints in %s. Sample with "
                   "`python main.py --config=... --workdir=%s --mode=sample`.",
                   int(state.stage), workdir, workdir)
    elif mode == "sample":
      _, stats = generate.generate(config, workdir)
      print(f"Wrote {stats['png']} and {stats['npz']}")
    elif mode == "evaluate":
      results = evaluate.evaluate(config, workdir)
      print(evaluate.to_markdown(results))
      print(f"Wrote {workdir}/evaluation.json and {workdir}/evaluation.md")
    else:
      raise ValueError(f"Unknown --mode={mode!r}; choose one of {MODES}.")
  except (ValueError, FileNotFoundError, OSError,
          checkpointing.IncompatibleCheckpointError,
          train.TrainingDivergedError) as err:
    print(f"innjax: error: {err}", file=sys.stderr)
    return 2
  return 0
