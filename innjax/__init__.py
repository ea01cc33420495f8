"""innjax: introspective neural networks (INNg) in JAX.

`innjax.load(path_or_workdir)` reads a trained model (innjax/export.py).

Importing innjax adds the XLA:CPU flags that measured faster for its networks to
`XLA_FLAGS` (innjax/runtime.py; a flag the variable already names is left as set).
They take effect when JAX's CPU client starts, so import innjax before the first
JAX computation to get them.
"""

from innjax import runtime as _runtime

_runtime.cpu_xla_flags()


def load(path_or_workdir: str):
  """A trained model from a `--mode=export` file or a workdir: `innjax.export.load`.

  Imported on first use, so that `import innjax` stays free of JAX.
  """
  from innjax import export  # pylint: disable=g-import-not-at-top
  return export.load(path_or_workdir)
