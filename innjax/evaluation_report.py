"""The markdown report of an evaluation: `to_markdown(results)`.

Renders the dict that `innjax.evaluate.evaluate` returns and writes as
`evaluation.json`; it imports no JAX, so a saved report renders anywhere.
"""

from __future__ import annotations

_ROW_NAMES = {
  "inng": "INNg classifier",
  "random": "Random classifier (same architecture)",
  "pixels": "Raw pixels",
}


def _pct(x) -> str:
  """A fraction as a percentage with two decimals, or "n/a" for None."""
  return "n/a" if x is None else f"{100 * x:.2f}%"


def _c(result: dict) -> str:
  """The chosen C, starred when it ends the grid."""
  return f"{result['C']:g}" + ("\\*" if result.get("C_at_grid_edge") else "")


def _points(gain: dict) -> str:
  """A paired gain as "mean ± standard error points (wins/draws)"."""
  return (
    f"{100 * gain['gain_mean']:+.2f} ± {100 * gain['gain_stderr']:.2f} "
    f"({gain['wins']}/{gain['draws']})"
  )


def _paired_lines(results: dict) -> list[str]:
  """The paired differences between the feature sets (absent in older reports)."""
  paired = results.get("svm_paired")
  if not paired:
    return []
  lines = [
    "",
    "Paired over the same draws: how many points lower the first set's test error is "
    "(mean ± standard error over draws; in parentheses the draws where it was lower).",
    "",
    "| Comparison | Gain (points) |",
    "|---|---:|",
  ]
  for key, label in (
    ("inng_vs_random", "INNg vs random classifier"),
    ("inng_vs_pixels", "INNg vs raw pixels"),
    ("random_vs_pixels", "Random classifier vs raw pixels"),
  ):
    lines.append(f"| {label} | {_points(paired[key])} |")
  return lines


def _stage_curve_lines(results: dict) -> list[str]:
  """Test error of every k-th trained classifier (`evaluate.every_stages`), if run."""
  curve = results.get("stage_curve")
  if not curve:
    return []
  lines = [
    "",
    "## Features of the classifiers in training order",
    "",
    "| Classifier | C | Test error (mean ± std) | Gain over random features (points) |",
    "|---:|---:|---:|---:|",
  ]
  for row in curve:
    lines.append(
      f"| {row['classifier']} | {_c(row)} | {_pct(row['test_error_mean'])} ± "
      f"{_pct(row['test_error_std'])} | {_points(row['gain_vs_random'])} |"
    )
  return lines


def to_markdown(results: dict) -> str:
  """Renders an evaluation's results as a markdown report (two tables).

  Args:
    results: the dict `innjax.evaluate.evaluate` returns (and writes as
      evaluation.json).

  Returns:
    The markdown text.
  """
  ev, info = results["config"], results["model"]
  lines = [
    f"# INNg evaluation of `{results['workdir']}`",
    "",
    f"Features: classifier slot {info['slot']} of {info['trained_slots']} trained "
    f"({info['completed_stages']} completed stages), conv layers {info['layers']}. "
    f"Labelled data: {results['data']['num_train']} training / "
    f"{results['data']['num_test']} test images ({results['data']['name']}).",
    "",
    f"L2-SVM protocol (paper 4.5): {ev['val_size']} validation examples choose C "
    f"(validation error averaged over {results['svm']['inng']['select_draws']} "
    f"draw(s)); test error is the mean ± std over {ev['num_draws']} SVMs, each "
    f"trained on {ev['num_labelled']} random labelled examples.",
    "",
    "| Features | Dim | C | Val. error | Test error (mean ± std) |",
    "|---|---:|---:|---:|---:|",
  ]
  for name, r in results["svm"].items():  # in the order evaluate ran them
    label = _ROW_NAMES[name] + (f" (layers {info['layers']})" if name == "inng" else "")
    lines.append(
      f"| {label} | {r['feature_dim']} | {_c(r)} | {_pct(r['val_error'])} "
      f"| {_pct(r['test_error_mean'])} ± {_pct(r['test_error_std'])} |"
    )
  if any(r.get("C_at_grid_edge") for r in results["svm"].values()):
    lines += [
      "",
      "\\* C is the smallest or largest value of the grid: a better C may lie beyond "
      "it (widen `evaluate.Cs`).",
    ]
  lines += _paired_lines(results)
  lines += _stage_curve_lines(results)
  q = results.get("quality")
  if q and "skipped" not in q:
    lines += [
      "",
      f"## Sample quality ({q['num_images']} generated vs {q['num_images']} real "
      "test images)",
      "",
    ]
    net = q.get("metric_net")
    if net:
      lines += [
        f"Headline feature space: a supervised CNN (conv widths {net['features']}, "
        f"{net['steps']} Adam steps) trained with labels on the {net['num_train']} "
        f"labelled training images; its test accuracy is "
        f"{100 * net['test_accuracy']:.2f}% ({net['num_classes']} classes, chance "
        f"{100 / net['num_classes']:.1f}%). Frechet/KID use its global-average-pooled "
        "last conv layer (no pretrained Inception network is available offline).",
        "",
      ]
    lines += [
      "The INNg rows use the pooled last conv layer of the trained INNg classifier "
      "(which the samples were optimised against) and of a random classifier of the "
      "same architecture. The floor compares two disjoint real halves of the same "
      "size. Lower is better.",
      "",
      "| Metric | Generated vs real | Real vs real (floor) |",
      "|---|---:|---:|",
    ]
    for name, label in (
      ("metric_net", "supervised net"),
      ("trained", "INNg classifier"),
      ("random", "random classifier"),
    ):
      f = q.get(f"{name}_features")
      if f is None:
        continue
      lines.append(
        f"| Frechet, {label} features (dim {f['dim']}) | "
        f"{f['frechet']['generated']:.4g} | {f['frechet']['real_floor']:.4g} |"
      )
      lines.append(
        f"| KID, {label} features | {f['kid']['generated']:.4g} ± "
        f"{f['kid']['generated_std']:.2g} | {f['kid']['real_floor']:.4g} ± "
        f"{f['kid']['real_floor_std']:.2g} |"
      )
    lines.append(
      f"| SWD (pixels, mean over levels) | {q['swd']['generated']:.4g} | "
      f"{q['swd']['real_floor']:.4g} |"
    )
  elif q:
    lines += ["", f"Sample quality skipped: {q['skipped']}."]
  lines += ["", f"Total time {results['seconds']:.1f}s.", ""]
  return "\n".join(lines)
