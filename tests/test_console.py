"""The console: --help and --help_config."""

import os
import subprocess
import sys

from configs import default
from innjax import cli
from innjax import config_help

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args, env=None):
  """Runs `python main.py ARGS` from the repository root; returns the process."""
  return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)


def test_help_exits_0_and_points_to_the_config_fields():
  for flag in ("--help", "-h", "--helpfull"):
    done = _main(flag)
    assert done.returncode == 0, (flag, done.stderr)
    assert "--help_config" in done.stdout


def test_help_config_lists_every_field_with_its_value_and_meaning():
  done = _main("--config=configs/tiny.py", "--config.train.learning_rate=0.5",
               "--help_config")
  assert done.returncode == 0, done.stderr
  lines = done.stdout.splitlines()
  # The run's own values, overrides included, and default.py's comment as meaning.
  assert any(line.startswith("  train.learning_rate = 0.5  # ") for line in lines)
  assert "  num_stages = 3" in lines
  for name in cli.config_fields(default.get_config()):
    assert any(line.startswith(f"  {name} = ") for line in lines), name


def test_field_meanings_take_the_line_comment_or_the_block_above():
  source = ("  # The pool.\n  # Second line.\n  config.pool.size = 3\n"
            "  config.lr = 0.1  # a '#' in text\n  config.x = '#not a comment'\n")
  assert config_help.field_meanings(source) == {
      "pool.size": "The pool. Second line.", "lr": "a '#' in text"}
