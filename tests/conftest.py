"""Fixtures shared by several test modules."""

import importlib.util
import os
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks")


def load_benchmark(name: str):
  """Imports benchmarks/NAME.py (a script, not a package) as a module."""
  if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)  # for the scripts' `import common` / `import charts`
  spec = importlib.util.spec_from_file_location(
    name, os.path.join(BENCHMARKS, f"{name}.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


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
