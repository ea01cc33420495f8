"""The errors that a person can fix, as opposed to bugs in innjax.

`python main.py` prints an `InnjaxError` as one line, `innjax: error: MESSAGE`, and
exits with code 2; any other exception is a bug, shown with its traceback and a line
asking for a bug report (innjax/cli.py). Raise one of these classes only where the
message says what to change (a config field, a file, a workdir); an argument that a
library caller got wrong stays a plain ValueError or TypeError.

Each class also derives from the built-in exception that the same failure raised
before (ValueError, FileNotFoundError, OSError, RuntimeError), so that code catching
those keeps working.
"""

from __future__ import annotations


class InnjaxError(Exception):
  """A failure that the message explains and the user can fix: never a bug."""


class ConfigError(InnjaxError, ValueError):
  """A config field is missing, misspelt, out of range or inconsistent with another,
  or does not fit the machine (e.g. a batch that does not split over the devices)."""


class DataError(InnjaxError, ValueError):
  """Training or evaluation images cannot be used: unreadable, empty, of the wrong
  shape, dtype or value range, too small, or too large to decode."""


class DataNotFoundError(DataError, FileNotFoundError):
  """A dataset, image file or folder named by the config does not exist or is not
  prepared (a tfds dataset that has not been downloaded)."""


class MissingDependencyError(InnjaxError, ImportError):
  """An optional package that the config asks for (tensorflow-datasets, TensorFlow,
  scikit-image) is not installed; the message says what to install."""


class CheckpointError(InnjaxError):
  """A checkpoint or exported model cannot be used: absent, from another config,
  damaged, or impossible to save."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError, ValueError):
  """The workdir holds no checkpoint, or none with a trained stage, to read yet.

  Both a FileNotFoundError (what a missing checkpoint raised) and a ValueError (what
  a checkpoint without a trained stage raised).
  """


class WorkdirError(InnjaxError, OSError):
  """The workdir or an output folder or file cannot be written (permissions, a full
  disk, a file where a folder should be)."""


class TrainingError(InnjaxError, RuntimeError):
  """Training cannot go on (e.g. it diverged); the last good checkpoint is kept."""
