"""`python main.py --help_config`: every config field with its value and meaning.

The meanings are the comments of configs/default.py, which defines every field: the
comment at the end of a field's line, or else the comment block right above it. The
values are those of the config being shown (`--config=FILE` and its overrides), so
`python main.py --config=configs/svhn.py --help_config` lists what that run would use.
Nothing here imports JAX, so the listing is instant.
"""

from __future__ import annotations

import os
import re

import ml_collections

# `config.section.field = value  # meaning` (the value may span several lines).
_ASSIGNMENT = re.compile(r"^\s*config\.([\w.]+)\s*=\s*(.*)$")


def _trailing_comment(line: str) -> str:
  """The `# ...` part of a code line, ignoring `#` inside string literals."""
  quote = None
  for i, char in enumerate(line):
    if quote:
      if char == quote:
        quote = None
    elif char in "'\"":
      quote = char
    elif char == "#":
      return line[i + 1 :].strip()
  return ""


def field_meanings(source: str) -> dict[str, str]:
  """Maps dotted field names to the comment that documents them in `source`.

  Args:
    source: the text of a config file written like configs/default.py.

  Returns:
    {"train.learning_rate": "the paper's SGD: 0.01; WINN's Adam: 1e-4", ...}; a
    section (a ConfigDict) gets the comment block above its creation.
  """
  meanings: dict[str, str] = {}
  block: list[str] = []
  for line in source.splitlines():
    stripped = line.strip()
    if stripped.startswith("#"):
      block.append(stripped.lstrip("#").strip())
      continue
    match = _ASSIGNMENT.match(line)
    if match:
      name = match.group(1)
      meaning = _trailing_comment(match.group(2)) or " ".join(block)
      if meaning:
        meanings[name] = meaning
    # A blank line or any other statement ends the comment block above a field.
    block = []
  return meanings


def default_config_source() -> str:
  """The text of configs/default.py, or "" when the `configs` package is absent."""
  try:
    from configs import default  # pylint: disable=g-import-not-at-top
  except ImportError:
    return ""
  with open(os.path.abspath(default.__file__), encoding="utf-8") as f:
    return f.read()


_SECTION = object()  # marks a section's header in `_leaves`


def _leaves(config: ml_collections.ConfigDict, order: dict[str, int], prefix: str = ""):
  """(dotted name, value) of every field, fields before sections, in `order`.

  Args:
    config: the config (or a section of it).
    order: dotted name -> position in the documenting file; others go last, sorted.
    prefix: the section's dotted name and a dot.
  """
  keys = sorted(
    config.keys(),
    key=lambda k: (
      isinstance(config[k], ml_collections.ConfigDict),
      order.get(prefix + k, len(order)),
      k,
    ),
  )
  for key in keys:
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict):
      yield prefix + key, _SECTION
      yield from _leaves(value, order, f"{prefix}{key}.")
    else:
      yield prefix + key, value


def describe(config: ml_collections.ConfigDict, source: str | None = None) -> str:
  """The listing printed by `--help_config`.

  Args:
    config: the config whose values are shown.
    source: the config file that documents the fields (default: configs/default.py).

  Returns:
    One line per field, `  name = value  # meaning`, a header line per section.
  """
  source = default_config_source() if source is None else source
  meanings = field_meanings(source)
  order = {
    m.group(1): i
    for i, m in enumerate(filter(None, map(_ASSIGNMENT.match, source.splitlines())))
  }
  lines = [
    "Config fields (override any with --config.NAME=VALUE; tuples as "
    "--config.model.features=32,64). Meanings from configs/default.py.",
    "",
  ]
  for name, value in _leaves(config, order):
    meaning = meanings.get(name, "")
    if value is _SECTION:
      lines += ["", f"[{name}]" + (f"  {meaning}" if meaning else "")]
      continue
    text = f"  {name} = {value!r}"
    lines.append(f"{text}  # {meaning}" if meaning else text)
  return "\n".join(lines)
