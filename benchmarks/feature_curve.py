"""Test error of the INNg features against training time, from evaluation reports.

Reads the `evaluation.json` that `python main.py --mode=evaluate
--config.evaluate.every_stages=K` writes (its `stage_curve`: the L2-SVM protocol on
every K-th trained classifier and the last) and draws the SVM test error of each
classifier's features against its stage, one line per report, beside the random
classifier's and the raw pixels' errors (dashed) from the same draws. Prints the
curve as a markdown table too.

Usage:
  python benchmarks/feature_curve.py --report "WINN critics=runs/cifar/evaluation.json" \
      --out docs/evaluation_feature_curve.png
"""

from __future__ import annotations

import argparse
import json

from PIL import Image, ImageDraw

from charts import CURVE_COLOURS, dashed_line, font, nice_ticks


def parse_args(argv=None):
  """The command line; see the module docstring."""
  p = argparse.ArgumentParser(
    description=__doc__.split("\n")[0],
    epilog=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument(
    "--report",
    action="append",
    required=True,
    help="LABEL=PATH of an evaluation.json with a stage_curve (repeatable)",
  )
  p.add_argument("--out", required=True, help="the PNG to write")
  args = p.parse_args(argv)
  reports = []
  for item in args.report:
    label, sep, path = item.partition("=")
    if not sep:
      p.error(f"--report {item!r}: expected LABEL=PATH")
    with open(path) as f:
      results = json.load(f)
    if not results.get("stage_curve"):
      p.error(
        f"{path} has no stage_curve: evaluate with --config.evaluate.every_stages=K"
      )
    reports.append((label, results))
  args.reports = reports
  return args


def table(reports) -> str:
  """The curves as markdown: test error and paired gain over random features."""
  lines = [
    "| Run | Classifier | Test error (mean ± std) | Gain over random (points, wins) |",
    "|---|---:|---:|---:|",
  ]
  for label, results in reports:
    for row in results["stage_curve"]:
      gain = row["gain_vs_random"]
      lines.append(
        f"| {label} | {row['classifier']} | {100 * row['test_error_mean']:.2f}% ± "
        f"{100 * row['test_error_std']:.2f}% | {100 * gain['gain_mean']:+.2f} ± "
        f"{100 * gain['gain_stderr']:.2f} ({gain['wins']}/{gain['draws']}) |"
      )
    for name, title in (("random", "random classifier"), ("pixels", "raw pixels")):
      r = results["svm"][name]
      lines.append(
        f"| {label} | {title} | {100 * r['test_error_mean']:.2f}% ± "
        f"{100 * r['test_error_std']:.2f}% | |"
      )
  return "\n".join(lines)


def plot(reports, path: str) -> None:
  """PNG: test error (%) against the classifier's stage, baselines dashed."""
  pw, ph, left, right, top, bottom = 460, 280, 60, 150, 40, 46
  canvas = Image.new("RGB", (left + pw + right, top + ph + bottom), "white")
  draw = ImageDraw.Draw(canvas)
  big, small = font(12), font(10)
  errors = [100 * row["test_error_mean"] for _, r in reports for row in r["stage_curve"]]
  # The baselines of the first report (every report's are the same network and data).
  refs = [
    (100 * reports[0][1]["svm"][name]["test_error_mean"], title)
    for name, title in (("random", "random features"), ("pixels", "raw pixels"))
  ]
  lo = min(errors + [v for v, _ in refs]) - 1.0
  hi = max(errors + [v for v, _ in refs]) + 1.0
  last = max(row["classifier"] for _, r in reports for row in r["stage_curve"])

  def to_xy(stage, value):
    return (
      left + pw * stage / max(last, 1),
      top + ph * (1 - (value - lo) / max(hi - lo, 1e-9)),
    )

  draw.text(
    (left, 14),
    "L2-SVM test error (%) of each classifier's features",
    fill="black",
    font=big,
  )
  draw.rectangle([left, top, left + pw, top + ph], outline=(120, 120, 120))
  for t in nice_ticks(0, last):
    x, _ = to_xy(t, lo)
    draw.line([(x, top + ph), (x, top + ph + 4)], fill="black")
    draw.text((x - 6, top + ph + 6), f"{t:g}", fill="black", font=small)
  draw.text(
    (left + pw // 2 - 60, top + ph + 24), "classifier (stage)", fill="black", font=small
  )
  for t in nice_ticks(lo, hi):
    _, y = to_xy(0, t)
    draw.line([(left - 4, y), (left, y)], fill="black")
    draw.text((left - 40, y - 6), f"{t:g}", fill="black", font=small)
  for value, label in refs:
    _, y = to_xy(0, value)
    dashed_line(draw, int(y), left, left + pw, (150, 150, 150))
    draw.text((left + pw + 6, y - 6), label, fill=(110, 110, 110), font=small)
  for j, (label, results) in enumerate(reports):
    colour = CURVE_COLOURS[j % len(CURVE_COLOURS)]
    xy = [
      to_xy(row["classifier"], 100 * row["test_error_mean"])
      for row in results["stage_curve"]
    ]
    if len(xy) > 1:
      draw.line(xy, fill=colour, width=2)
    for x, y in xy:
      draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    draw.text((left + pw + 6, top + 14 * j), label, fill=colour, font=small)
  canvas.save(path)


def main(argv=None):
  """Writes the PNG and prints the table."""
  args = parse_args(argv)
  plot(args.reports, args.out)
  print(table(args.reports))
  print(f"\nwrote {args.out}")


if __name__ == "__main__":
  main()
