"""The Colab notebook (notebooks/innjax_colab.ipynb) runs end to end on CPU.

The notebook is executed cell by cell in a fresh Jupyter kernel (nbclient) with the
tiny config, so a change in innjax's API that breaks it fails here. Skipped when
nbclient, nbformat or ipykernel (or one of innjax's requirements) is not installed.
"""

import os
import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
# What the notebook's install cell checks for; with all of them present it installs
# nothing, so the test never changes the environment.
for _name in (
  "flax",
  "optax",
  "orbax",
  "ml_collections",
  "tensorboard",
  "tqdm",
  "tensorflow_datasets",
  "skimage",
):
  pytest.importorskip(_name)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "innjax_colab.ipynb")


def _code_cells(nb):
  return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_notebook_has_a_colab_badge_and_redefines_nothing():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  assert "colab.research.google.com/github/" in nb.cells[0].source
  assert "notebooks/innjax_colab.ipynb" in nb.cells[0].source
  for cell in _code_cells(nb):  # it calls innjax; it holds no logic of its own
    assert not re.search(r"^\s*(def|class) ", cell.source, re.M), cell.source


def test_notebook_executes_with_the_tiny_config(tmp_path, monkeypatch):
  workdir = tmp_path / "run"
  monkeypatch.setenv("INNJAX_NOTEBOOK_CONFIG", "tiny")
  monkeypatch.setenv("INNJAX_NOTEBOOK_WORKDIR", str(workdir))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
    nb,
    timeout=900,
    kernel_name="python3",
    resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}},
  )
  client.execute()  # raises CellExecutionError, with the cell, if any cell fails

  outputs = [out for cell in _code_cells(nb) for out in cell.outputs]
  text = "".join(out.get("text", "") for out in outputs)
  assert "nothing installed" in text  # innjax was importable: the install was skipped
  assert "config 'tiny': 2 stages" in text
  assert "2 stages trained" in text
  shown = [out for out in outputs if "image/png" in out.get("data", {})]
  # Positives, one grid per stage, the samples and the direct sampler's output.
  assert len(shown) == 1 + 2 + 1 + 1
  for stage in (1, 2):
    assert (workdir / "negatives" / f"stage_{stage:03d}.png").stat().st_size > 0
  assert (workdir / "sampler_direct.png").stat().st_size > 0
