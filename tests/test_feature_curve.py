"""benchmarks/feature_curve.py: the curve and table from evaluation reports."""

import json

from conftest import load_benchmark
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def fc():
  return load_benchmark("feature_curve")


def _report(path, curve):
  gain = {"gain_mean": 0.01, "gain_stderr": 0.002, "wins": 15, "draws": 20}
  rows = [
    {
      "classifier": k,
      "slot": k - 1,
      "C": 1e-4,
      "test_error_mean": e,
      "test_error_std": 0.01,
      "gain_vs_random": gain,
    }
    for k, e in curve
  ]
  svm = {
    name: {"test_error_mean": e, "test_error_std": 0.01}
    for name, e in (("random", 0.6), ("pixels", 0.67))
  }
  path.write_text(json.dumps({"stage_curve": rows, "svm": svm}))
  return str(path)


def test_curve_png_and_table(fc, tmp_path, capsys):
  a = _report(tmp_path / "a.json", [(4, 0.59), (8, 0.58), (16, 0.57)])
  b = _report(tmp_path / "b.json", [(2, 0.61)])
  out = tmp_path / "curve.png"
  fc.main(["--report", f"A={a}", "--report", f"B={b}", "--out", str(out)])
  printed = capsys.readouterr().out
  assert "| A | 8 | 58.00% ± 1.00% | +1.00 ± 0.20 (15/20) |" in printed
  assert "| B | raw pixels | 67.00% ± 1.00% | |" in printed
  with Image.open(out) as image:
    assert image.size == (670, 366)
    # Both runs' colours were drawn.
    colours = {c for _, c in image.convert("RGB").getcolors(1 << 20)}
    assert fc.CURVE_COLOURS[0] in colours and fc.CURVE_COLOURS[1] in colours


def test_a_report_without_a_curve_is_refused(fc, tmp_path, capsys):
  path = tmp_path / "plain.json"
  path.write_text(json.dumps({"stage_curve": None, "svm": {}}))
  with pytest.raises(SystemExit):
    fc.main(["--report", f"x={path}", "--out", str(tmp_path / "c.png")])
  assert "every_stages" in capsys.readouterr().err
