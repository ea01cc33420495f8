"""The tree stays formatted: `ruff format --check` (settings in pyproject.toml)."""

import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sources_are_formatted():
  ruff = shutil.which("ruff")
  if ruff is None:
    pytest.skip("ruff is not installed (pip install -r requirements.txt)")
  done = subprocess.run(
    [ruff, "format", "--check", "."],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert done.returncode == 0, (
    "files need formatting; run `ruff format .`:\n" + done.stdout + done.stderr
  )
