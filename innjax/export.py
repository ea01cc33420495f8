"""Trained models as one portable file: `--mode=export` writes it, `load` reads it.

The file is an `.npz` (a zip of `.npy` arrays, read with `allow_pickle=False`, so
loading it never runs code):

* `cascade/<path>`: each leaf of the stacked cascade variables, e.g.
  `cascade/params/conv0/kernel` of shape (slots, 5, 5, 1, 32);
* `active`: the (slots,) mask of the trained slots;
* `header`: UTF-8 JSON as uint8, `{"format": "innjax.export", "version": 1,
  "stages": ..., "empty": [...], "config": {...}}` (`empty`: the empty
  collections of the variables, e.g. `cascade/batch_stats` without BatchNorm), the
  run's whole config: the architecture that
  rebuilds the logit function and the sampler's settings.

`load(path_or_workdir)` returns a `Model`: the logit function, the stacked params,
the mask, the config, a ready sampler, and `sample()`, which gives the images of
`--mode=sample` with the same settings and seed. It needs neither the workdir's
layout nor the `configs` package; a workdir is read from its newest checkpoint and
the config saved with it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from innjax import config_checks
from innjax import errors

FORMAT = "innjax.export"
VERSION = 1


class ExportFormatError(errors.CheckpointError, ValueError):
  """The file is not an innjax export, is damaged, or comes from a newer format."""


def _flatten(tree, prefix: str, empty: list) -> dict:
  """{"prefix/a/b": array} for a nested dict of arrays; empty dicts (a model without
  BatchNorm has no statistics) are added to `empty` by name."""
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}/{key}"
    if isinstance(value, dict):
      if not value:
        empty.append(name)
      flat.update(_flatten(value, name, empty))
    else:
      flat[name] = np.asarray(value)
  return flat


def _unflatten(flat: dict, prefix: str, empty=()) -> dict:
  """The nested dict that `_flatten(tree, prefix, empty)` came from."""
  tree: dict = {}
  for name, value in [*flat.items(), *((e, None) for e in empty)]:
    if not name.startswith(prefix + "/"):
      continue
    *parents, leaf = name[len(prefix) + 1 :].split("/")
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = {} if value is None else value
  return tree


def _plain(tree):
  """Flax FrozenDicts and other mappings as plain nested dicts."""
  if hasattr(tree, "items"):
    return {key: _plain(value) for key, value in tree.items()}
  return tree


def export(
  config: ml_collections.ConfigDict, workdir: str, output_dir: str | None = None
) -> str:
  """Writes the trained cascade in `workdir` as one file; returns its path.

  The file goes to `output_dir` (default: the workdir) as `model_stageNNN.npz`
  (`-2`, `-3`, ... when the name is taken: an earlier export is never replaced).

  Raises:
    FileNotFoundError: the workdir holds no checkpoint.
  """
  from innjax import checkpointing, generate, outputs, sharding  # pylint: disable=g-import-not-at-top

  stacked, active, stages = generate.load_cascade(config, workdir)
  out_dir = output_dir or workdir
  outputs.ensure_output_dir(out_dir, "the export")
  empty = []
  arrays = _flatten(
    _plain(jax.tree_util.tree_map(sharding.to_host, stacked)), "cascade", empty
  )
  arrays["active"] = np.asarray(sharding.to_host(active), bool)
  header = {
    "format": FORMAT,
    "version": VERSION,
    "stages": stages,
    "empty": empty,
    "config": checkpointing.config_to_dict(config),
  }
  arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
  if not sharding.is_main_process():
    return ""
  paths = outputs.write_new(
    out_dir,
    f"model_stage{stages:03d}",
    {".npz": lambda f: np.savez_compressed(f, **arrays)},
  )
  return paths[".npz"]


@dataclasses.dataclass
class Model:
  """A trained cascade, ready to sample from.

  Attributes:
    logit_fn: `fn(stage_variables, x) -> logits` of one classifier (the patch head
      takes a PRNG key as well: `fn.needs_key`).
    params: the stacked variables of every slot (leading slot axis).
    mask: (slots,) bool, the trained slots.
    config: the run's config (an `ml_collections.ConfigDict`).
    stages: how many stages were trained.
    sampler: the sampler with the run's `sample.*` settings (`sampler.run(params, x0,
      key, mask)`).
  """

  logit_fn: Callable
  params: Any
  mask: jax.Array
  config: ml_collections.ConfigDict
  stages: int
  sampler: Any
  # `sample()`'s compiled synthesis, one per image size, built on first use.
  _synthesizers: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

  def sample(self, num: int | None = None, seed: int | None = None, size=None):
    """Images from fresh noise, as `--mode=sample` makes them.

    Args:
      num: how many (default `config.sample.num`).
      seed: the PRNG seed (default `config.sample.seed`).
      size: (height, width) for patch-head models (default `config.sample.size`).

    Returns:
      float32 (num, H, W, C) images in [-1, 1].
    """
    from innjax import energy, synthesis  # pylint: disable=g-import-not-at-top

    hw = energy.target_hw(
      synthesis.geometry(self.config), self.config.sample.size if size is None else size
    )
    if hw not in self._synthesizers:  # compiled once per size, not at every call
      self._synthesizers[hw] = synthesis.make_image_synthesizer(self.config, hw)
    seed = int(self.config.sample.seed if seed is None else seed)
    x, _ = self._synthesizers[hw](
      self.params, self.mask, int(num or self.config.sample.num), jax.random.key(seed)
    )
    return x


def _read(path: str) -> tuple[dict, dict]:
  """(header, arrays) of an export file, with clear errors for bad files."""
  from innjax import outputs  # pylint: disable=g-import-not-at-top

  try:
    if outputs.is_uri(path):  # gs://, s3://, ...: np.load needs a seekable file
      from etils import epath  # pylint: disable=g-import-not-at-top

      source = io.BytesIO(epath.Path(path).read_bytes())
    else:
      source = path
    with np.load(source, allow_pickle=False) as data:
      arrays = {name: data[name] for name in data.files}
  except FileNotFoundError:
    raise
  except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
    raise ExportFormatError(
      f"{path} is not an innjax export or is damaged ({type(err).__name__}: {err}); "
      "export the run again with `python main.py --mode=export --workdir=RUN`."
    ) from err
  try:
    header = json.loads(arrays.pop("header").tobytes().decode())
    assert header["format"] == FORMAT
    version = int(header["version"])
  except Exception as err:  # pylint: disable=broad-except
    raise ExportFormatError(
      f"{path} has no innjax export header; it was not written by `--mode=export`."
    ) from err
  if version > VERSION:
    raise ExportFormatError(
      f"{path} is export format {version}, newer than this innjax reads "
      f"({VERSION}); upgrade innjax."
    )
  missing = [key for key in ("stages", "config") if key not in header]
  if missing or not isinstance(header.get("config"), dict):
    raise ExportFormatError(
      f"{path} has an incomplete export header (no {' or '.join(missing or ['config'])}"
      f"); {_EXPORT_AGAIN}"
    )
  return header, arrays


# The fix for a file that lacks part of what `export` writes.
_EXPORT_AGAIN = (
  "it is damaged or was not written by `--mode=export`; export the run "
  "again with `python main.py --mode=export --workdir=RUN`."
)


def _cascade(path: str, arrays: dict, header: dict, config, model):
  """(stacked params, mask) of an export file, checked against its architecture.

  Every variable of the classifier that the saved config describes must be there
  with one row per slot of `active`; a file that lacks one (cut short when written,
  edited, or from another architecture) would otherwise fail later with a KeyError
  or a shape error deep inside the sampler.
  """
  from innjax import energy, models, synthesis  # pylint: disable=g-import-not-at-top

  active = arrays.get("active")
  if active is None or active.ndim != 1 or active.dtype != np.bool_:
    what = (
      "has no `active` array"
      if active is None
      else (
        f"has an `active` array of {active.dtype} {active.shape}, not a (slots,) bool"
      )
    )
    raise ExportFormatError(f"{path} {what}; {_EXPORT_AGAIN}")
  expected = jax.eval_shape(
    lambda: models.init_variables(
      model, jax.random.key(0), energy.model_input_shape(synthesis.geometry(config))
    )
  )
  wrong = []
  for key_path, leaf in jax.tree_util.tree_flatten_with_path(_plain(expected))[0]:
    name = "cascade/" + "/".join(str(k.key) for k in key_path)
    shape = (active.shape[0], *leaf.shape)
    if name not in arrays:
      wrong.append(f"{name} is missing")
    elif arrays[name].shape != shape:
      wrong.append(f"{name} has shape {arrays[name].shape}, not {shape}")
  if wrong:
    listed = "; ".join(wrong[:3]) + (
      f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
    )
    raise ExportFormatError(
      f"{path} does not hold the cascade its config describes ({listed}); {_EXPORT_AGAIN}"
    )
  params = jax.tree_util.tree_map(
    jax.numpy.asarray, _unflatten(arrays, "cascade", header.get("empty", ()))
  )
  return params, jax.numpy.asarray(active)


def _from_workdir(workdir: str):
  """(config, stacked, active, stages) from a workdir's newest checkpoint."""
  from innjax import checkpointing, generate  # pylint: disable=g-import-not-at-top

  probe = checkpointing.Manager(workdir, ml_collections.ConfigDict(), read_only=True)
  try:
    saved = probe.saved_config()
  finally:
    probe.close()
  if saved is None:
    raise errors.CheckpointNotFoundError(
      f"No checkpoint in {os.path.join(workdir, 'checkpoints')}."
    )
  config = _config(saved)
  stacked, active, stages = generate.load_cascade(config, workdir)
  return config, stacked, active, stages


def _config(saved: dict) -> ml_collections.ConfigDict:
  """The config saved as JSON, with the tuples JSON turned into lists restored and
  fields renamed since it was saved under their current names."""

  def tuples(node):
    if isinstance(node, dict):
      return {k: tuples(v) for k, v in node.items()}
    return tuple(node) if isinstance(node, list) else node

  return config_checks.upgrade_config(ml_collections.ConfigDict(tuples(saved)))


def load(path_or_workdir: str) -> Model:
  """A trained model from an export file or a workdir, ready to sample.

  Args:
    path_or_workdir: a file written by `--mode=export`, or a training run's folder.

  Raises:
    ExportFormatError: the file is damaged, not an export, or of a newer format.
    FileNotFoundError: there is no such file, or the workdir has no checkpoint.
  """
  from innjax import energy, outputs, synthesis  # pylint: disable=g-import-not-at-top

  if outputs.is_uri(path_or_workdir):
    from etils import epath  # pylint: disable=g-import-not-at-top

    is_workdir = epath.Path(path_or_workdir).is_dir()
  else:
    is_workdir = os.path.isdir(path_or_workdir)
  if is_workdir:
    config, params, mask, stages = _from_workdir(path_or_workdir)
    model = synthesis.build_model(config)
  else:
    header, arrays = _read(path_or_workdir)
    config = _config(header["config"])
    model = synthesis.build_model(config)
    params, mask = _cascade(path_or_workdir, arrays, header, config, model)
    stages = int(header["stages"])
  logit_fn = energy.make_stage_logit_fn(model, synthesis.geometry(config))
  sampler = synthesis.make_generation_sampler(config, logit_fn)
  return Model(
    logit_fn=logit_fn,
    params=params,
    mask=mask,
    config=config,
    stages=stages,
    sampler=sampler,
  )
