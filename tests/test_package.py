"""The package's face: `import innjax` is cheap and exposes the public API."""

import importlib
import os
import subprocess
import sys

import pytest

import innjax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str, cwd) -> str:
  """Runs `code` in a fresh interpreter outside the repository; returns stdout."""
  env = dict(os.environ)
  env.pop("PYTHONPATH", None)  # what an installed package sees, not the checkout
  done = subprocess.run(
    [sys.executable, "-c", code],
    cwd=cwd,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
    check=True,
  )
  return done.stdout.strip()


def test_import_innjax_does_not_import_jax(tmp_path):
  # main.py --help and config parsing must not pay for JAX's start-up.
  out = _python("import sys, innjax; print('jax' in sys.modules)", tmp_path)
  assert out == "False"


@pytest.mark.parametrize("name", innjax.__all__)
def test_public_name_is_the_defining_modules_object(name):
  module = importlib.import_module(innjax._PUBLIC[name])  # pylint: disable=protected-access
  assert getattr(innjax, name) is getattr(module, name)


def test_public_api_covers_the_documented_pieces():
  assert {
    "Classifier",
    "make_logit_fn",
    "stack",
    "cascade_logits",
    "make_sampler",
    "load",
    "make_patch_logit_fn",
  } <= set(innjax.__all__)
  assert set(innjax.__all__) <= set(dir(innjax))


def test_unknown_attribute_is_an_attribute_error():
  with pytest.raises(AttributeError, match="no attribute 'nope'"):
    innjax.nope  # pylint: disable=pointless-statement


def test_configs_import_from_outside_the_checkout(tmp_path):
  # The CLI checks configs against configs/default.py; after `pip install` that
  # must not depend on the current directory.
  out = _python("import configs.default as d; print(d.__file__)", tmp_path)
  with open(out) as installed, open(os.path.join(REPO, "configs", "default.py")) as ours:
    assert installed.read() == ours.read()
