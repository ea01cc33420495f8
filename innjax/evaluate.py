"""Evaluation of a trained INNg model: unsupervised features (paper 4.5) and samples.

`evaluate(config, workdir)` answers two questions about the cascade trained in
`workdir`, and writes the answers to `workdir/evaluation.json` and
`workdir/evaluation.md` (an earlier report is kept: see `evaluate`). This module reads
the config and orchestrates; each measurement lives in its own module:

- `innjax.svm_protocol`: the paper's L2-SVM protocol on feature arrays;
- `innjax.metric_network`: the supervised CNN whose pooled features are the
  Frechet/KID space;
- `innjax.evaluation_report`: the markdown report;
- `innjax.metrics`: the Frechet, kernel (KID) and sliced Wasserstein distances.

1. **How good are the learned features?** The activations of the last three conv
   layers of a trained classifier, flattened and concatenated
   (`models.make_feature_fn`), feed the L2-SVM protocol. The same protocol runs on two
   baselines so the number means something on its own: a randomly initialised
   classifier of the same architecture (how much comes from the architecture alone)
   and raw pixels. The dimension: the paper's network has four 5x5 stride-2 "SAME"
   convolutions with 64, 128, 256 and 512 channels, so a 32x32 image gives blocks of
   16x16x64, 8x8x128, 4x4x256 and 2x2x512; the last three flattened are
   8*8*128 + 4*4*256 + 2*2*512 = 8192 + 4096 + 2048 = 14336 dimensions, the paper's
   number. (The general formula is the sum over the chosen blocks of
   (H / 2^(i+1))^2 * features[i]; the first block alone would add 16384 more.)

2. **How close are the samples to the data?** Frechet (FID formula) and kernel (KID
   formula) distances between generated and real test images, each beside the
   real-vs-real floor (two disjoint halves of the test set of the same size, since both
   estimators are biased by the sample size), and the multi-scale sliced Wasserstein
   distance on pixels (`metrics.swd`), which needs no network at all. The headline
   feature space is the supervised metric net's (`innjax.metric_network` says why).
   It is pooled, not the 14336-dimensional SVM features, because a Frechet distance
   needs a covariance estimated from more samples than dimensions and an
   eigendecomposition that costs D^3. The same distances are also reported in the
   pooled last conv layer of the trained INNg classifier and of a random one of the
   same architecture; these cost one extra pass over the generated images, but the
   generator was trained to fool the INNg classifier, so distances in its space can
   understate the gap an independent network sees.

Memory: features are extracted batch by batch on the device and gathered on the host,
so device memory is bounded by one batch; host memory holds N x D float32 (for SVHN's
73257 training images and 14336 dimensions, about 4.2 GB).

The settings are `config.evaluate`, documented and defaulted in one place:
`configs/default.py` (`evaluate_config`), whose values also fill in a config saved
before the section existed.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Callable, NamedTuple, Sequence

from absl import logging
import jax
import ml_collections
import numpy as np

from innjax import config_checks
from innjax import data as data_lib
from innjax import errors
from innjax import evaluation_report
from innjax import generate as generate_lib
from innjax import images as images_lib
from innjax import metric_network
from innjax import metrics
from innjax import models
from innjax import outputs
from innjax import svm_protocol as svm_lib
from innjax import synthesis

# The CLI prints the report with `evaluate.to_markdown`.
to_markdown = evaluation_report.to_markdown

FEATURE_SETS = ("inng", "random", "pixels")

# ----------------------------------------------------------------------------
# Features.


@functools.lru_cache(maxsize=16)
def _jit_on_uint8(feature_fn: Callable) -> Callable:
  """One jitted `(variables, uint8 batch) -> features` per feature function.

  Cached so that the train set, the test set and the generated images (and a second
  set of variables of the same shapes) reuse one compilation. The uint8 -> [-1, 1]
  conversion happens inside, on the device: only uint8 crosses the host-device link.
  """
  return jax.jit(lambda variables, x: feature_fn(variables, data_lib.to_float(x)))


def extract_features(
  feature_fn: Callable, variables: Any, images_uint8: Any, batch_size: int
) -> np.ndarray:
  """Computes features of a uint8 image set, batch by batch, into a host array.

  Every batch has the same shape (the last one is padded with zeros and the padding's
  features dropped), so the function compiles once. While the host copies one batch's
  features out, the next batch is already dispatched (JAX dispatch is asynchronous),
  and no more than two batches' features are on the device at any time.

  Args:
    feature_fn: pure `feature_fn(variables, x) -> (n, D)` on float images in [-1, 1],
      e.g. `models.make_feature_fn(model, layers)`.
    variables: the classifier variables `feature_fn` takes.
    images_uint8: (N, H, W, C) uint8 images (host or device array).
    batch_size: images per device batch.

  Returns:
    float32 numpy array of shape (N, D).

  Raises:
    ValueError: images that are not a non-empty uint8 NHWC array, or batch_size < 1.
  """
  images = np.asarray(images_uint8)
  if images.dtype != np.uint8:
    raise ValueError(
      f"extract_features expects uint8 images in [0, 255], got dtype {images.dtype}; "
      "convert float images in [-1, 1] with innjax.data.to_uint8 first."
    )
  if images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(
      f"extract_features expects a non-empty (N, H, W, C) batch, got "
      f"shape {images.shape}."
    )
  batch_size = int(batch_size)
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  apply = _jit_on_uint8(feature_fn)
  # Once, not once per batch; committed to one device so that variables restored from
  # a checkpoint (committed) and fresh ones (uncommitted) hit the same compilation.
  variables = jax.device_put(variables, jax.local_devices()[0])
  n = images.shape[0]
  out = None
  pending = None  # (start, count, device features) of the batch in flight

  def collect(start, count, feats):
    nonlocal out
    host = np.asarray(jax.device_get(feats), dtype=np.float32)
    if out is None:
      out = np.empty((n, host.shape[-1]), np.float32)
    out[start : start + count] = host[:count]

  for start in range(0, n, batch_size):
    batch = images[start : start + batch_size]
    count = batch.shape[0]
    if count < batch_size:
      batch = np.concatenate(
        [batch, np.zeros((batch_size - count, *batch.shape[1:]), np.uint8)]
      )
    feats = apply(variables, batch)
    if pending is not None:
      collect(*pending)
    pending = (start, count, feats)
  collect(*pending)
  return out


def pixel_features(images_uint8: np.ndarray) -> np.ndarray:
  """Raw pixels in [-1, 1], flattened: the SVM protocol's no-learning baseline.

  Args:
    images_uint8: (N, H, W, C) uint8 images.

  Returns:
    float32 array of shape (N, H * W * C).
  """
  images = np.asarray(images_uint8)
  return data_lib.to_float(images).reshape(images.shape[0], -1)


# ----------------------------------------------------------------------------
# evaluate(config, workdir).


def _default_evaluate_config() -> ml_collections.ConfigDict:
  """The defaults of `config.evaluate`, from their one definition in configs/default.py.

  Imported here, not at the top, so that the library imports without `configs`; only
  evaluation needs the defaults.
  """
  try:
    from configs import default  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.MissingDependencyError(
      "--mode=evaluate takes the defaults of config.evaluate from configs/default.py, "
      "but the `configs` package is not importable; run from the innjax repository "
      "root or install the package with its configs."
    ) from e
  return default.evaluate_config()


def _evaluate_config(config) -> ml_collections.ConfigDict:
  """`config.evaluate` over the defaults, so configs without the block still work."""
  ev = _default_evaluate_config().to_dict()
  given = config.evaluate.to_dict() if "evaluate" in config else {}
  unknown = sorted(set(given) - set(ev))
  if unknown:
    raise errors.ConfigError(
      f"Unknown config.evaluate keys {unknown}; known: {sorted(ev)}."
    )
  ev.update(given)
  ev = ml_collections.ConfigDict(ev)
  config_checks.check_evaluate(ev)
  return ev


def resolve_layers(layers: Sequence[int], depth: int) -> tuple[int, ...]:
  """Checks conv-layer indices against the network's depth.

  Args:
    layers: indices into the conv blocks (negative counts from the last).
    depth: number of conv blocks (`len(config.model.features)`).

  Returns:
    The indices as a tuple of ints, unchanged.

  Raises:
    ValueError: an index outside the network, or a layer named twice.
  """
  layers = tuple(int(i) for i in layers)
  bad = [i for i in layers if not -depth <= i < depth]
  if bad:
    raise errors.ConfigError(
      f"config.evaluate.layers={layers} names layers {bad}, but the classifier has "
      f"{depth} conv layers; e.g. --config.evaluate.layers='{tuple(range(-min(depth, 3), 0))}'."
    )
  if len({i % depth for i in layers}) != len(layers):
    raise errors.ConfigError(f"config.evaluate.layers={layers} names a layer twice.")
  return layers


def select_slot(active, stage: int) -> int:
  """The cascade slot of trained classifier `stage` (Python-style index).

  Args:
    active: (num_slots,) bool mask of trained slots.
    stage: index among the trained slots; -1 is the last trained one.

  Returns:
    The slot index into the stacked cascade.

  Raises:
    ValueError: no trained slot, or `stage` out of range.
  """
  trained = np.flatnonzero(np.asarray(jax.device_get(active)))
  if trained.size == 0:
    raise errors.CheckpointNotFoundError(
      "The checkpoint has no trained stage yet; train first."
    )
  if not -trained.size <= int(stage) < trained.size:
    raise errors.ConfigError(
      f"config.evaluate.stage={stage} is out of range: the checkpoint holds "
      f"{trained.size} trained classifiers (use -{trained.size}..{trained.size - 1})."
    )
  return int(trained[int(stage)])


def load_labelled(config, ev) -> tuple[data_lib.Dataset, data_lib.Dataset]:
  """Loads the labelled train and test splits the SVM protocol runs on.

  Args:
    config: the run's config (`config.data` describes the dataset).
    ev: the evaluate block (splits and optional npz/folder paths).

  Returns:
    (train dataset, test dataset), both with labels.

  Raises:
    ValueError: a split without labels, or images of another shape than the model's.
  """

  def load(split, path):
    cfg = config.data.copy_and_resolve_references()
    # The protocol needs every labelled example: a cap on training positives
    # (data.max_examples) must not silently shrink the test set.
    cfg.max_examples = 0
    if path:
      if cfg.source not in ("npz", "folder"):
        raise errors.ConfigError(
          f"config.evaluate.train_path/test_path apply to data sources 'npz' and "
          f"'folder', not {cfg.source!r}; use train_split/test_split instead."
        )
      cfg.path = path
      split = None  # the file is the split
    dataset = data_lib.load_dataset(cfg, split=split)
    if dataset.labels is None:
      raise errors.DataError(
        f"The {dataset.name!r} dataset ({cfg.source}, split {split}) has no labels; "
        "the SVM protocol needs a labelled dataset (tfds svhn_cropped/cifar10, or an "
        ".npz with 'x' and 'y'; set config.evaluate.train_path/test_path)."
      )
    return dataset

  train_ds = load(ev.train_split, ev.train_path)
  test_ds = load(ev.test_split, ev.test_path)
  return train_ds, test_ds


class _Space(NamedTuple):
  """A feature space for Frechet/KID: how to embed images, and the real test set."""

  feature_fn: Callable  # (variables, x) -> (N, >= start + dim) features
  variables: Any
  start: int  # the space is columns start .. start + dim of feature_fn
  test_feats: np.ndarray  # (M, dim) features of the whole test set


def _distances(fa: np.ndarray, fb: np.ndarray, fg: np.ndarray, seed: int) -> dict:
  """Frechet and KID of generated vs real half a, beside real half b vs a (the floor)."""
  # Subsets of half the set, so that the 100 subsets differ and their spread (the
  # reported std) means something; with subsets of all n rows every one is the same.
  kid_size = min(1000, max(2, fa.shape[0] // 2))
  kid_gen = metrics.kernel_distance(fa, fg, subset_size=kid_size, rng=seed)
  kid_real = metrics.kernel_distance(fa, fb, subset_size=kid_size, rng=seed)
  return {
    "dim": int(fa.shape[1]),
    "frechet": {
      "generated": metrics.frechet_distance(fa, fg),
      "real_floor": metrics.frechet_distance(fa, fb),
    },
    "kid": {
      "generated": kid_gen.mean,
      "generated_std": kid_gen.std,
      "real_floor": kid_real.mean,
      "real_floor_std": kid_real.std,
    },
  }


def _metric_net_space(config, ev, train_ds, test_ds) -> tuple[_Space, dict]:
  """Trains the supervised metric net on the labelled training split; scores the test set.

  Returns:
    (its feature space, info dict: training statistics and test_accuracy).
  """
  net, params, info = metric_network.train_metric_net(
    train_ds.images,
    train_ds.labels,
    features=ev.metric_net_features,
    steps=int(ev.metric_net_steps),
    batch_size=int(ev.metric_net_batch_size),
    learning_rate=float(ev.metric_net_learning_rate),
    key=jax.random.fold_in(jax.random.key(int(ev.seed)), 2),
    conv_impl=config.model.conv_impl,
  )
  fn = metric_network.make_metric_feature_fn(net)
  out = extract_features(fn, params, test_ds.images, int(ev.batch_size))
  dim = int(ev.metric_net_features[-1])
  pred = np.asarray(info["classes"])[np.argmax(out[:, dim:], axis=1)]
  info["test_accuracy"] = float(np.mean(pred == test_ds.labels))
  info["num_train"], info["num_test"] = train_ds.num_examples, test_ds.num_examples
  info["features"] = [int(f) for f in ev.metric_net_features]
  logging.info(
    "Metric net: %d steps, test accuracy %.2f%% (%d classes).",
    info["steps"],
    100 * info["test_accuracy"],
    info["num_classes"],
  )
  return _Space(fn, params, 0, out[:, :dim].copy()), info


def _quality(config, ev, spaces: dict, stacked, active, test_images):
  """Frechet / KID / SWD of generated vs real test images, with real-vs-real floors.

  `spaces` maps a result key (e.g. "metric_net_features") to a `_Space` whose test-set
  features are already computed; only the generated images go through the networks
  here.

  Returns:
    (the results dict, the generated images or None when skipped).
  """
  n = min(int(ev.num_samples), test_images.shape[0] // 2)
  if n < 2:
    return {"skipped": f"needs num_samples >= 2 and >= 4 test images (n={n})"}, None
  key = jax.random.fold_in(jax.random.key(int(ev.seed)), 1)
  generated, gen_stats = synthesis.synthesize_images(
    config, stacked, active, n, key, size=(0, 0)
  )
  # Generated images are quantised like the real ones (as they would be saved), so
  # neither set gets features of values the other cannot take.
  gen_u8 = np.asarray(data_lib.to_uint8(generated))
  # Two disjoint real halves of the same size as the generated set: the floor then has
  # the same small-sample bias as the generated-vs-real number it is read against.
  perm = np.random.default_rng(int(ev.seed)).permutation(test_images.shape[0])
  half_a, half_b = perm[:n], perm[n : 2 * n]

  out = {"num_images": n, "generation": gen_stats}
  for key_name, space in spaces.items():
    dim = space.test_feats.shape[1]
    fg = extract_features(space.feature_fn, space.variables, gen_u8, int(ev.batch_size))[
      :, space.start : space.start + dim
    ]
    out[key_name] = _distances(
      space.test_feats[half_a], space.test_feats[half_b], fg, int(ev.seed)
    )
  fa, fb, fg = (
    data_lib.to_float(x) for x in (test_images[half_a], test_images[half_b], gen_u8)
  )
  swd_gen = metrics.swd(fa, fg, rng=int(ev.seed))
  swd_real = metrics.swd(fa, fb, rng=int(ev.seed))
  levels = sorted(k for k in swd_gen if k != "mean")
  out["swd"] = {
    "generated": swd_gen["mean"],
    "real_floor": swd_real["mean"],
    "levels_generated": [swd_gen[k] for k in levels],
    "levels_real_floor": [swd_real[k] for k in levels],
  }
  return out, generated


def _stage_curve(
  feature_fn,
  stacked,
  active,
  evaluated_slot,
  svm,
  train_ds,
  test_ds,
  svm_dim,
  ev,
  protocol,
) -> list[dict]:
  """The SVM protocol on every `ev.every_stages`-th trained classifier and the last.

  Every classifier sees the same validation split and draws as the baselines in
  `svm`, so each row's gain over random features is paired. The slot evaluated
  already (`evaluated_slot`) reuses its result.
  """
  rows = []
  trained = np.flatnonzero(np.asarray(active))
  for i, slot in enumerate(trained):
    if (i + 1) % int(ev.every_stages) and i + 1 < trained.size:
      continue
    if int(slot) == evaluated_slot:
      result = svm["inng"]
    else:
      variables = jax.tree_util.tree_map(lambda v, s=int(slot): v[s], stacked)
      tr, te = (
        extract_features(feature_fn, variables, ds.images, int(ev.batch_size))[
          :, :svm_dim
        ]
        for ds in (train_ds, test_ds)
      )
      result = svm_lib.svm_protocol(tr, train_ds.labels, te, test_ds.labels, **protocol)
      del tr, te
    gain = svm_lib.paired_gain(svm["random"], result)
    logging.info(
      "Classifier %d: test error %.2f%%, %.2f ± %.2f points below random features.",
      i + 1,
      100 * result["test_error_mean"],
      100 * gain["gain_mean"],
      100 * gain["gain_stderr"],
    )
    rows.append(
      {
        "classifier": i + 1,
        "slot": int(slot),
        "C": result["C"],
        "C_at_grid_edge": result["C_at_grid_edge"],
        "test_error_mean": result["test_error_mean"],
        "test_error_std": result["test_error_std"],
        "gain_vs_random": gain,
      }
    )
  return rows


def evaluate(
  config: ml_collections.ConfigDict, workdir: str, output_dir: str | None = None
) -> dict:
  """Evaluates the trained cascade in `workdir`; writes evaluation.json and .md there.

  Runs the L2-SVM protocol (`svm_protocol.svm_protocol`) on the trained classifier's
  features (`config.evaluate.stage`, `config.evaluate.layers`), a randomly initialised
  classifier of the same architecture and raw pixels (their paired differences in
  "svm_paired"); with `config.evaluate.every_stages=k`, also on every k-th trained
  classifier's features and the last's ("stage_curve"); then, unless
  `config.evaluate.num_samples` is 0, trains the supervised metric net
  (`metric_network.train_metric_net`, unless `metric_net_steps` is 0), generates
  images from the whole cascade (`config.sample` settings) and compares them with real
  test images (Frechet and KID in the metric net's and the INNg classifiers' feature
  spaces, SWD on pixels, each with its real-vs-real floor). See the module docstring
  for the choices.

  The report goes to `output_dir` (default `workdir`) as `evaluation.json`,
  `evaluation.md` and `evaluation_samples.png` (a grid of 64 generated images); when
  one of these names is in use, all three get `-2`, `-3`, ... after `evaluation`, so
  no earlier report is replaced. Each file is written whole or not at all.

  Args:
    config: the run's config; `config.evaluate` (documented in configs/default.py,
      `evaluate_config`) is optional: missing keys take the defaults there.
    workdir: a trained run's folder (only read unless it is also the output folder).
    output_dir: where the report goes (default `workdir`).

  Returns:
    The results dict written to `evaluation.json`, plus "files": suffix (".json",
    ".md", "_samples.png") -> the path written.

  Raises:
    FileNotFoundError: no checkpoint in `workdir`.
    ValueError: unlabelled data, bad `config.evaluate` values, too few examples.
  """
  t_start = time.perf_counter()
  ev = _evaluate_config(config)
  # The config checks read config.evaluate too: give them the block with its defaults,
  # so that a config saved before the block existed evaluates.
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.evaluate = ev
  if "patch" in config and int(config.patch.size) > 0:
    # The SVM features and the Frechet/KID comparison need a classifier of whole
    # labelled images; a patch head sees config.patch.size crops of textures.
    raise errors.ConfigError(
      f"--mode=evaluate needs a whole-image classifier, but config.patch.size="
      f"{config.patch.size} trains a patch head (textures); evaluate a model trained "
      "with config.patch.size=0 on a labelled dataset."
    )
  config_checks.validate_config(config)
  model = synthesis.build_model(config)
  depth = len(config.model.features)
  layers = resolve_layers(ev.layers, depth)
  stacked, active, stages = generate_lib.load_cascade(config, workdir)
  out_dir = output_dir or workdir
  outputs.ensure_output_dir(out_dir, "the evaluation report")  # before the long work
  slot = select_slot(active, int(ev.stage))
  trained_vars = jax.tree_util.tree_map(lambda v: v[slot], stacked)
  shape = (config.data.image_size, config.data.image_size, config.data.channels)
  # Its own key (not config.seed's init key), so the baseline never equals the
  # initialisation the trained classifier started from.
  random_vars = models.init_variables(
    model, jax.random.fold_in(jax.random.key(int(ev.seed)), 0), shape
  )

  train_ds, test_ds = load_labelled(config, ev)
  for ds in (train_ds, test_ds):
    if ds.image_shape != shape:
      raise errors.DataError(
        f"The labelled {ds.name!r} images have shape "
        f"{ds.image_shape}, the model expects {shape}."
      )
  # Checked before any feature is extracted, so a wrong size fails in seconds.
  if train_ds.num_examples < int(ev.val_size) + int(ev.num_labelled):
    raise errors.ConfigError(
      f"The labelled training split has {train_ds.num_examples} examples, but "
      f"val_size ({ev.val_size}) + num_labelled ({ev.num_labelled}) are needed; lower "
      "--config.evaluate.val_size or --config.evaluate.num_labelled."
    )
  logging.info(
    "Evaluating slot %d (of %d trained) on %d train / %d test images.",
    slot,
    int(np.sum(np.asarray(active))),
    train_ds.num_examples,
    test_ds.num_examples,
  )

  protocol = dict(
    num_labelled=int(ev.num_labelled),
    val_size=int(ev.val_size),
    num_draws=int(ev.num_draws),
    Cs=tuple(ev.Cs),
    seed=int(ev.seed),
    select_draws=int(ev.select_draws),
  )
  feature_fn = models.make_feature_fn(model, layers, append_pooled=True)
  variables = {"inng": trained_vars, "random": random_vars}
  svm, timings, test_pooled = {}, {}, {}
  svm_dim = None
  for name in FEATURE_SETS:
    t0 = time.perf_counter()
    if name == "pixels":
      tr, te = pixel_features(train_ds.images), pixel_features(test_ds.images)
    else:
      tr, te = (
        extract_features(feature_fn, variables[name], ds.images, int(ev.batch_size))
        for ds in (train_ds, test_ds)
      )
      svm_dim = tr.shape[1] - int(config.model.features[-1])
      test_pooled[name] = te[:, svm_dim:].copy()
      tr, te = tr[:, :svm_dim], te[:, :svm_dim]  # views: no copy of the N x D array
    timings[f"features_{name}_s"] = time.perf_counter() - t0
    svm[name] = svm_lib.svm_protocol(tr, train_ds.labels, te, test_ds.labels, **protocol)
    del tr, te  # release the N x D host array before the next feature set
    logging.info(
      "SVM on %s features (%d dims): test error %.2f%% ± %.2f%% (C=%g).",
      name,
      svm[name]["feature_dim"],
      100 * svm[name]["test_error_mean"],
      100 * svm[name]["test_error_std"],
      svm[name]["C"],
    )

  paired = {
    "inng_vs_random": svm_lib.paired_gain(svm["random"], svm["inng"]),
    "inng_vs_pixels": svm_lib.paired_gain(svm["pixels"], svm["inng"]),
    "random_vs_pixels": svm_lib.paired_gain(svm["pixels"], svm["random"]),
  }
  stage_curve = None
  if int(ev.every_stages) > 0:
    t0 = time.perf_counter()
    stage_curve = _stage_curve(
      feature_fn, stacked, active, slot, svm, train_ds, test_ds, svm_dim, ev, protocol
    )
    timings["stage_curve_s"] = time.perf_counter() - t0

  quality, generated = None, None
  if int(ev.num_samples) > 0:
    spaces, net_info = {}, None
    # No net to train when there are too few test images to compare with (_quality
    # then reports why it skipped).
    if (
      int(ev.metric_net_steps) > 0
      and min(int(ev.num_samples), test_ds.num_examples // 2) >= 2
    ):
      t0 = time.perf_counter()
      spaces["metric_net_features"], net_info = _metric_net_space(
        config, ev, train_ds, test_ds
      )
      timings["metric_net_s"] = time.perf_counter() - t0
    for name, key_name in (("inng", "trained_features"), ("random", "random_features")):
      spaces[key_name] = _Space(feature_fn, variables[name], svm_dim, test_pooled[name])
    t0 = time.perf_counter()
    quality, generated = _quality(config, ev, spaces, stacked, active, test_ds.images)
    if net_info is not None and "skipped" not in quality:
      quality["metric_net"] = net_info
    timings["quality_s"] = time.perf_counter() - t0

  results = {
    # A bucket's URI as given ("gs://b" would become "$PWD/gs:/b").
    "workdir": workdir if outputs.is_uri(workdir) else os.path.abspath(workdir),
    "config": ev.to_dict(),
    "model": {
      "slot": slot,
      "trained_slots": int(np.sum(np.asarray(active))),
      "completed_stages": stages,
      "layers": list(layers),
      "features": list(config.model.features),
    },
    "data": {
      "name": train_ds.name,
      "num_train": train_ds.num_examples,
      "num_test": test_ds.num_examples,
    },
    "svm": svm,
    "svm_paired": paired,
    "stage_curve": stage_curve,
    "quality": quality,
    "timings": timings,
    "seconds": time.perf_counter() - t_start,
  }
  writers = {
    ".json": lambda f: f.write(json.dumps(results, indent=2).encode("utf-8")),
    ".md": lambda f: f.write(to_markdown(results).encode("utf-8")),
  }
  if generated is not None:
    writers["_samples.png"] = functools.partial(
      images_lib.write_png, images_lib.make_grid(generated[:64])
    )
  files = outputs.write_new(out_dir, "evaluation", writers)
  logging.info("Wrote %s.", ", ".join(files.values()))
  return {**results, "files": files}
