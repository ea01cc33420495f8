"""benchmarks/gpu_check.sh --dry_run: the GPU check runs every section on a CPU.

The check itself is meant for a GPU machine that is lent for minutes; this dry run at
tiny sizes keeps it from rotting between such runs. It takes a minute or two of CPU.
"""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_dry_run_runs_every_section_and_writes_json_and_table(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHON=sys.executable)
  proc = subprocess.run(
    [
      "bash",
      os.path.join(REPO, "benchmarks", "gpu_check.sh"),
      "--dry_run",
      "--out",
      str(tmp_path),
    ],
    env=env,
    capture_output=True,
    text=True,
    timeout=1200,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((tmp_path / "gpu_check.json").read_text())["results"]
  assert set(results) == {
    "matmul",
    "sampler",
    "texture",
    "train",
    "svhn",
    "texture_stage",
  }
  assert not [name for name, r in results.items() if "error" in r]
  assert len(results["sampler"]["rows"]) == 4  # sum/sequential x float32/bfloat16
  assert set(results["svhn"]["crossed"]) == {"float32", "bfloat16"}
  table = (tmp_path / "gpu_check.md").read_text()
  assert "| section" in table and "texture_stage" in table


def test_a_missing_package_without_wheels_is_one_line_and_exit_2(tmp_path):
  # A Python that cannot import ml_collections, and no wheels to install from.
  fake = tmp_path / "python3"
  fake.write_text(
    f'#!/bin/sh\nif [ "$1" = -c ]; then exit 1; fi\nexec {sys.executable} "$@"\n'
  )
  fake.chmod(0o755)
  repo = tmp_path / "repo"
  (repo / "benchmarks").mkdir(parents=True)
  script = repo / "benchmarks" / "gpu_check.sh"
  script.write_text(open(os.path.join(REPO, "benchmarks", "gpu_check.sh")).read())
  (repo / "requirements.txt").write_text("ml_collections==1.1.0\n")
  proc = subprocess.run(
    ["bash", str(script)],
    env=dict(os.environ, PYTHON=str(fake)),
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "--prepare" in lines[0], proc.stderr
