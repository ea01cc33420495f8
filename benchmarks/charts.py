"""Small line-chart helpers for the benchmark reports, drawn with PIL.

matplotlib is not a dependency; the reports' curves need only axes, ticks, lines,
markers and dashed reference lines.
"""

from __future__ import annotations

import numpy as np
from PIL import ImageFont

CURVE_COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
  """About `count` round tick values (1, 2 or 5 x 10^n apart) covering [lo, hi]."""
  span = max(hi - lo, 1e-9)
  raw = span / count
  base = 10 ** np.floor(np.log10(raw))
  step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw)
  first = np.ceil(lo / step) * step
  return [float(t) for t in np.arange(first, hi + step * 1e-6, step)]


def dashed_line(draw, y: int, x0: int, x1: int, colour, dash: int = 6) -> None:
  """A horizontal dashed line (PIL has none)."""
  for x in range(x0, x1, 2 * dash):
    draw.line([(x, y), (min(x + dash, x1), y)], fill=colour, width=1)


def font(size: int):
  """PIL's bundled font at `size` px where the Pillow version can scale it."""
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1 has one fixed-size default font
    return ImageFont.load_default()
