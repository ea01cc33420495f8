"""innjax: introspective neural networks (INNg) in JAX.

The public API, importable from the package itself:

  innjax.Classifier           the paper's discriminator (innjax/models.py)
  innjax.make_logit_fn        a Classifier's pure `logit_fn(variables, x)`
  innjax.make_patch_logit_fn  the patch head: a patch classifier as an energy over
                              whole images of any size (innjax/patches.py)
  innjax.stack                per-stage variables stacked into one cascade pytree
  innjax.cascade_logits       the cascade's summed (or per-stage) logits
  innjax.make_sampler         the image-space sampler: init / step / run
  innjax.single               one energy's params as a one-stage cascade
  innjax.load                 a trained model from a workdir or a `--mode=export` file

Each name is imported on first use, so that `import innjax` (and `main.py --help`)
stays free of JAX until a name is needed.

Importing innjax adds the XLA:CPU flags that measured faster for its networks to
`XLA_FLAGS` (innjax/runtime.py; a flag the variable already names is left as set).
They take effect when JAX's CPU client starts, so import innjax before the first
JAX computation to get them.
"""

import importlib

from innjax import runtime as _runtime

_runtime.cpu_xla_flags()

# Public name -> the module that defines it.
_PUBLIC = {
  "Classifier": "innjax.models",
  "make_logit_fn": "innjax.models",
  "make_patch_logit_fn": "innjax.patches",
  "stack": "innjax.cascade",
  "cascade_logits": "innjax.cascade",
  "make_sampler": "innjax.sampler",
  "single": "innjax.sampler",
  "load": "innjax.export",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
  """Imports a public name's module on first access (PEP 562)."""
  module = _PUBLIC.get(name)
  if module is None:
    raise AttributeError(f"module 'innjax' has no attribute {name!r}")
  value = getattr(importlib.import_module(module), name)
  globals()[name] = value  # later lookups skip this function
  return value


def __dir__():
  return sorted(set(globals()) | set(_PUBLIC))
