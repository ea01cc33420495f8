"""Fixtures shared by several test modules."""

import pytest


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
  """configs/tiny.py trained once without interruption: (workdir, final TrainState).

  Trained once per test session for the modules that read such a run. Tests leave it
  as they found it: one that writes into a workdir copies the checkpoints first.
  """
  # Imported here: collecting the tests should not import JAX.
  from configs import tiny  # pylint: disable=import-outside-toplevel
  from innjax import train  # pylint: disable=import-outside-toplevel

  workdir = str(tmp_path_factory.mktemp("tiny_run"))
  return workdir, train.train_and_evaluate(tiny.get_config(), workdir)
