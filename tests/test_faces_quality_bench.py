"""benchmarks/faces_quality.py's comparison, on image sets with known answers."""

from conftest import load_benchmark
import numpy as np
import pytest


@pytest.fixture(scope="module")
def fq():
  return load_benchmark("faces_quality")


def test_compare_averages_several_c2st_critics(fq):
  rng = np.random.default_rng(0)
  noise = lambda n: np.clip(0.3 * rng.standard_normal((n, 16, 16, 3)), -1, 1)
  args = fq.parse_args(["--c2st_seeds", "2", "--c2st_steps", "150"])
  same = fq.compare(noise(40).astype(np.float32), noise(40).astype(np.float32), args)
  flat = fq.compare(
    noise(40).astype(np.float32), np.zeros((40, 16, 16, 3), np.float32), args
  )
  assert len(same["c2st_all"]) == len(flat["c2st_all"]) == 2
  assert same["c2st"] == pytest.approx(np.mean(same["c2st_all"]))
  assert same["c2st"] < 0.75 and min(flat["c2st_all"]) > 0.95
  assert fq.c2st_text(flat).startswith(f"{flat['c2st']:.3f} (")
  assert fq.c2st_text({"c2st": 0.5}) == "0.500"


def test_c2st_seeds_below_one_are_refused(fq, capsys):
  with pytest.raises(SystemExit):
    fq.parse_args(["--c2st_seeds", "0"])
  assert "--c2st_seeds must be at least 1" in capsys.readouterr().err
