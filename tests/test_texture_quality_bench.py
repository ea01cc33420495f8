"""The texture-quality benchmark's bookkeeping, without training anything.

benchmarks/texture_quality.py runs for hours; these check the parts a long run cannot
afford to get wrong: how --set flags reach each recipe, which stage counts the curve
samples, that reports read both its records and the INNg-only version's, and the
C2ST cache.
"""

from conftest import load_benchmark
import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def tq():
  return load_benchmark("texture_quality")


def test_overrides_reach_each_recipe_and_steps_come_from_its_config(tq):
  args = tq.parse_args(
    [
      "--set",
      "objective=hinge",
      "--set",
      "features=(4, 8)",
      "--set_winn",
      "sample_step_size=0.005",
      "--set_winn",
      "train.learning_rate=1e-3",
    ]
  )
  settings = tq.settings_from_args(args)
  inng = tq.recipe_settings(settings, "inng")
  winn = tq.recipe_settings(settings, "winn")
  assert inng["overrides"] == {"objective": "hinge"}  # a string: not a literal
  assert winn["overrides"] == {"objective": "hinge", "train.learning_rate": 1e-3}
  assert inng["features"] == winn["features"] == [4, 8]  # preset fields, not config
  assert inng["sample_step_size"] == inng["step_size"]
  assert winn["sample_step_size"] == 0.005
  # The 2x column: the first recipe keeps the preset's count, the others none.
  assert inng["num_2x"] == settings["num_2x"] == 1 and winn["num_2x"] == 0
  config = tq.make_config(winn, "x.png")
  assert config.train.learning_rate == 1e-3 and config.model.features == (4, 8)
  assert config.synthesis.step_size == winn["step_size"]


def test_misspelt_fields_and_unknown_recipes_stop_the_run(tq):
  for argv in (
    ["--set", "train.learnin_rate=1e-3"],
    ["--recipes", "inng,gan"],
    ["--set", "no_equals_sign"],
  ):
    with pytest.raises(SystemExit):
      tq.settings_from_args(tq.parse_args(argv))


def test_curve_stages(tq):
  assert tq.curve_stage_list(10, None) == [3, 5, 8, 10]
  assert tq.curve_stage_list(20, None) == [5, 10, 15, 20]
  assert tq.curve_stage_list(2, None) == [1, 2]
  assert tq.curve_stage_list(10, [2, 5, 10, 20]) == [2, 5, 10]


def _record(tq, texture, recipes, scale):
  settings = {"recipes": recipes, "num_2x": 1}
  methods = tq.report_methods(settings)
  distances = {
    m: {k: scale * (i + 1) for k in (*tq.METRICS, "c2st", "swd_ref_whole", "swd_whole")}
    for i, m in enumerate(methods)
  }
  runs = {
    r: {
      "stages": 2,
      "train_seconds": 10.0,
      "sample_seconds_1x": 1.0,
      "sample_seconds_2x": None,
      "curve_seconds": 1.0,
      "curve": [
        {"stage": k, "train_seconds": 5.0 * k, "swd_ref": 3.0 / k, "c2st": 0.9 / k}
        for k in (1, 2)
      ],
    }
    for r in recipes
  }
  return {
    "texture": texture,
    "settings": settings,
    "distances": distances,
    "recipes": runs,
    "metric_seconds": 1.0,
  }


def test_tables_and_curve_plot(tq, tmp_path):
  records = [_record(tq, f"t{i}", ["inng", "winn"], i + 1) for i in range(2)]
  table = tq.results_table(records, "swd_ref", 1)
  assert "WINN 1x" in table and "INNg 2x" in table and "WINN 1x < RP" in table
  assert "0/2" in table  # recipes come after random phase, so they score higher
  assert "1 stage" in tq.curve_table(records, "winn")
  assert tq.curve_summary(records)["inng"][0][:2] == (1, 5.0)
  path = tq.curve_plot(records, str(tmp_path / "curve.png"))
  with Image.open(path) as plot:  # two panels side by side
    assert plot.format == "PNG" and plot.width > plot.height


def test_records_of_the_inng_only_version_still_report(tq):
  old = {
    "texture": "t",
    "settings": {"num_2x": 1, "step_size": 0.1},
    "distances": {
      m: {"swd": 1.0, "spectrum": 1.0, "histogram": 1.0}
      for m in ("noise", "random_phase", "inng_1x", "inng_2x", "crops")
    },
    "train_seconds": 3.0,
    "train_sessions": 1,
    "stages": 2,
    "sample_seconds_1x": 1.0,
    "sample_seconds_2x": 1.0,
    "metric_seconds": 1.0,
  }
  record = tq.upgrade_record(old)
  assert record["settings"]["recipes"] == ["inng"]
  row = tq.results_table([record], "swd_ref", 1).splitlines()[-1]
  assert {cell.strip() for cell in row.split("|")[2:-1]} == {"-"}  # not measured then
  assert "1.0" in tq.results_table([record], "swd", 1)
  assert "INNg" in tq.timing_table([record])


def test_c2st_results_are_cached(tq, tmp_path, monkeypatch):
  calls = []

  def fake_c2st(reference, images, crop, steps, seed):
    calls.append(crop)
    return tq.c2st.C2STResult(accuracy=0.75, train_accuracy=1.0, num_test=1)

  monkeypatch.setattr(tq.c2st, "c2st", fake_c2st)
  cache = str(tmp_path / "c2st.json")
  a = np.zeros((8, 16, 3), np.float32)
  b = np.ones((2, 8, 16, 3), np.float32)
  first = tq.c2st_accuracy(a, b, 4, 10, 0, cache)
  assert (
    tq.c2st_accuracy(a, b, 4, 10, 0, cache)
    == first
    == {"accuracy": 0.75, "train_accuracy": 1.0}
  )
  tq.c2st_accuracy(a, b, 4, 20, 0, cache)  # another recipe: measured again
  assert len(calls) == 2


def test_cached_samples_are_redrawn_for_more_stages_or_other_sampling(
  tq, tmp_path, monkeypatch
):
  """A workdir extended from 20 to 60 stages must not reuse the 20-stage samples."""
  settings = tq.settings_from_args(tq.parse_args(["--recipes", "innjax"]))
  config = tq.make_config(tq.recipe_settings(settings, "innjax"), "x.png")
  draws = []

  def fake_generate(config, workdir, size):
    draws.append(int(config.num_stages))
    return np.full((2, *size, 3), len(draws), np.float32), {}

  monkeypatch.setattr(tq.generate, "generate", fake_generate)
  workdir = str(tmp_path)
  first, _ = tq.sample_model(config, workdir, 4, 2, 0.01)
  again, _ = tq.sample_model(config, workdir, 4, 2, 0.01)
  assert np.array_equal(again, first) and len(draws) == 1  # cached
  config.num_stages = 60
  extended, _ = tq.sample_model(config, workdir, 4, 2, 0.01)
  assert draws[1] == 60 and not np.array_equal(extended, first)
  config.sample.stop_window = 5
  tq.sample_model(config, workdir, 4, 2, 0.01)
  assert len(draws) == 3  # another sampling window: drawn again


def test_sampling_overrides_do_not_count_as_other_training(tq):
  """--set_innjax sample.stop_window=5 re-samples an existing workdir; a training
  field still refuses it."""

  def innjax(*flags):
    args = tq.parse_args(["--recipes", "innjax", *flags])
    return tq.recipe_settings(tq.settings_from_args(args), "innjax")

  base = innjax()
  window = innjax("--set_innjax", "sample.stop_window=5")
  rate = innjax("--set_innjax", "train.learning_rate=1e-4")
  assert not tq.same_settings(base, window)  # sampled and measured again
  assert tq.same_settings(tq.training_settings(base), tq.training_settings(window))
  assert not tq.same_settings(tq.training_settings(base), tq.training_settings(rate))
