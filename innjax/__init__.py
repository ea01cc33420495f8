"""innjax: introspective neural networks (INNg) in JAX.

`innjax.load(path_or_workdir)` reads a trained model (innjax/export.py).
"""


def load(path_or_workdir: str):
  """A trained model from a `--mode=export` file or a workdir: `innjax.export.load`.

  Imported on first use, so that `import innjax` stays free of JAX.
  """
  from innjax import export  # pylint: disable=g-import-not-at-top
  return export.load(path_or_workdir)
