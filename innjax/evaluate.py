"""Evaluation of a trained INNg model: unsupervised features (paper 4.5) and samples.

`evaluate(config, workdir)` answers two questions about the cascade trained in
`workdir`, and writes the answers to `workdir/evaluation.json` and
`workdir/evaluation.md` (an earlier report is kept: see `evaluate`):

1. **How good are the learned features?** The paper's protocol (section 4.5, after
   DCGAN, Radford et al. 2016): the activations of the last three conv layers of a
   trained classifier, flattened and concatenated, feed an L2-SVM (linear SVM, squared
   hinge loss) trained on 1000 labelled examples; C is chosen on a 10000-example
   validation split held out from the labelled training set; the test error is
   averaged over 100 random 1000-example draws from the rest. The same protocol runs
   on two baselines so the number means something on its own: a randomly initialised
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
   distance on pixels (`metrics.swd`), which needs no network at all.

The Frechet/KID feature space. FID/KID are defined on an ImageNet Inception network,
which cannot be downloaded here (no network access, and no pretrained weights ship
with the project), and would be a poor fit for 16x16 gray images anyway. So the
evaluation trains its own: `MetricNet`, a small CNN trained with labels (softmax
cross-entropy, Adam, `config.evaluate.metric_net_steps` updates) on the labelled
training split, independently of the INNg model. Its global-average-pooled last conv
layer (`metric_net_features[-1]` dimensions, like Inception's pool3) is the headline
space, and its test accuracy is reported so that the reader can tell whether the space
separates the classes at all. It is pooled, not the 14336-dimensional SVM features,
because a Frechet distance needs a covariance estimated from more samples than
dimensions and an eigendecomposition that costs D^3. The same distances are also
reported in the pooled last conv layer of the trained INNg classifier and of a random
one of the same architecture; these cost one extra pass over the generated images, but
the generator was trained to fool the INNg classifier, so distances in its space can
understate the gap an independent network sees. All these numbers are comparable only
between runs on the same data with the same metric-net settings, not with published
FID/KID values.

Memory: features are extracted batch by batch on the device and gathered on the host,
so device memory is bounded by one batch; host memory holds N x D float32 (for SVHN's
73257 training images and 14336 dimensions, about 4.2 GB).

Cost: the SVMs dominate. Each is trained on an exact 1000-dimensional reparametrisation
of its 14336-dimensional problem (`_prepare_draw`), 1-17 s per SVM on a shared 2-core
CPU depending on C (liblinear needs more passes for larger C). On a CPU shared with
other work, multi-threaded OpenBLAS slowed the small LAPACK calls here 10-30x;
`OPENBLAS_NUM_THREADS=1` avoids that.
"""

from __future__ import annotations

import functools
import json
import os
import time
import warnings
from typing import Any, Callable, NamedTuple, Sequence

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import scipy.linalg

from innjax import console
from innjax import data as data_lib
from innjax import generate as generate_lib
from innjax import images as images_lib
from innjax import metrics
from innjax import models
from innjax import outputs
from innjax import train

# Log-spaced grid for the SVM's C. Features are standardised first, so the useful range
# does not depend on the network's activation scale; with ~10^4 dimensions and 10^3
# examples the best C is usually small (strong regularisation).
DEFAULT_CS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)

# Rows per chunk when scoring test/validation features: bounds the float64 copy made
# for the matrix product (4096 x 14336 x 8 B = 470 MB at most).
_SCORE_CHUNK = 4096

FEATURE_SETS = ("inng", "random", "pixels")
_ROW_NAMES = {
    "inng": "INNg classifier",
    "random": "Random classifier (same architecture)",
    "pixels": "Raw pixels",
}


def default_evaluate_config() -> ml_collections.ConfigDict:
  """The `config.evaluate` block: the paper's protocol (4.5) and sample-quality settings.

  Returns:
    A ConfigDict with:
      stage: which trained classifier gives the features, indexing the trained cascade
        slots Python-style (-1 = the last trained one, 0 = the first).
      layers: conv blocks whose activations are concatenated (paper: the last three).
      num_labelled: labelled examples per SVM draw (paper: 1000).
      val_size: examples held out of the labelled training split to choose C (paper:
        10000).
      num_draws: random labelled draws the test error is averaged over (paper: 100).
      select_draws: draws C is chosen with (validation error averaged over them), made
        once before the test draws.
      Cs: the grid of SVM C values.
      batch_size: images per feature-extraction batch (one compiled shape).
      num_samples: images generated for the sample-quality metrics; compared with as
        many real test images (capped at half the test set); 0 skips them.
      train_split, test_split: labelled splits of `config.data` (tfds/folder/npz with
        '{split}' in the path).
      train_path, test_path: for sources 'npz'/'folder', files used instead of
        `config.data.path` when non-empty.
      metric_net_steps: Adam updates of the supervised metric net (`MetricNet`, trained
        with labels on the labelled training split) whose pooled features are the
        Frechet/KID feature space; 0 skips it (only the INNg-feature values remain).
      metric_net_features: its conv widths (the last is the feature dimension).
      metric_net_batch_size: images per metric-net update.
      metric_net_learning_rate: its Adam step size.
      seed: seeds the SVM draws, the random classifier, generation, the metric net and
        the metrics.
  """
  ev = ml_collections.ConfigDict()
  ev.stage = -1
  ev.layers = (-3, -2, -1)
  ev.num_labelled = 1000
  ev.val_size = 10000
  ev.num_draws = 100
  ev.select_draws = 3
  ev.Cs = DEFAULT_CS
  ev.batch_size = 500
  ev.num_samples = 1000
  ev.train_split = "train"
  ev.test_split = "test"
  ev.train_path = ""
  ev.test_path = ""
  ev.metric_net_steps = 1000
  ev.metric_net_features = (32, 64, 128)
  ev.metric_net_batch_size = 128
  ev.metric_net_learning_rate = 1e-3
  ev.seed = 0
  return ev


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


def extract_features(feature_fn: Callable, variables: Any, images_uint8: Any,
                     batch_size: int) -> np.ndarray:
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
        "convert float images in [-1, 1] with innjax.data.to_uint8 first.")
  if images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(f"extract_features expects a non-empty (N, H, W, C) batch, got "
                     f"shape {images.shape}.")
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
    out[start:start + count] = host[:count]

  for start in range(0, n, batch_size):
    batch = images[start:start + batch_size]
    count = batch.shape[0]
    if count < batch_size:
      batch = np.concatenate(
          [batch, np.zeros((batch_size - count, *batch.shape[1:]), np.uint8)])
    feats = apply(variables, batch)
    if pending is not None:
      collect(*pending)
    pending = (start, count, feats)
  collect(*pending)
  return out


def make_evaluation_feature_fn(model: models.Classifier,
                               layers: Sequence[int] = (-3, -2, -1)) -> Callable:
  """Returns `fn(variables, x) -> (N, D + C)`: SVM features, then pooled features.

  The first D columns are exactly `models.make_feature_fn(model, layers)` (the chosen
  conv blocks, flattened and concatenated); the last C = features[-1] columns are the
  last conv block averaged over space, the feature space of the sample-quality metrics
  (small enough for a Frechet covariance, like Inception's pool3; see the module
  docstring). One forward pass and one compilation give both, and the test set's
  pooled features come for free with its SVM features.

  Args:
    model: a `Classifier`.
    layers: conv blocks for the SVM features (negative counts from the last).

  Returns:
    fn(variables, x) returning float32 features of shape (N, D + features[-1]).
  """
  def fn(variables, x):
    _, feats = model.apply(variables, x, train=False, return_features=True)
    flat = [feats[i].reshape(feats[i].shape[0], -1).astype(jnp.float32)
            for i in layers]
    pooled = jnp.mean(feats[-1].astype(jnp.float32), axis=(1, 2))
    return jnp.concatenate(flat + [pooled], axis=-1)
  return fn


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
# The supervised metric network: the feature space of Frechet and KID.


class MetricNet(nn.Module):
  """A small supervised CNN whose pooled features are the Frechet/KID feature space.

  3x3 stride-2 convolutions with leaky ReLU 0.2, global average pooling (the
  `features[-1]`-dimensional penultimate layer, the analogue of Inception's pool3), and
  a linear `num_classes`-way head. He-initialised and without BatchNorm, so it has no
  state besides its parameters and one image's features never depend on the rest of
  the batch. Global pooling makes it work for any image size.

  Attributes:
    features: output channels of each convolution.
    num_classes: classes of the softmax head.
    conv_impl: "auto", "xla" or "im2col" (see `models.conv2d`).
  """
  features: Sequence[int] = (32, 64, 128)
  num_classes: int = 10
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns (logits (N, num_classes), pooled features (N, features[-1])).

    Args:
      x: (N, H, W, C) float images in [-1, 1].
    """
    impl = models.resolve_conv_impl(self.conv_impl)
    h = x
    for i, width in enumerate(self.features):
      fan_in = 9 * h.shape[-1]
      # He initialisation keeps the activation scale through the unnormalised stack.
      kernel = self.param(f"conv{i}_kernel", models.flat_normal(np.sqrt(2.0 / fan_in)),
                          (3, 3, h.shape[-1], width))
      bias = self.param(f"conv{i}_bias", nn.initializers.zeros, (width,))
      h = nn.leaky_relu(models.conv2d(h, kernel, 2, impl) + bias, 0.2)
    pooled = jnp.mean(h, axis=(1, 2))
    logits = nn.Dense(self.num_classes, kernel_init=models.flat_normal(
        np.sqrt(1.0 / pooled.shape[-1])), name="head")(pooled)
    return logits, pooled


def make_metric_feature_fn(net: MetricNet) -> Callable:
  """Returns `fn(params, x) -> (N, D + K)`: pooled features, then the K logits.

  One pass over the test set gives both the Frechet/KID features and the predictions
  the reported accuracy is computed from.
  """
  def fn(params, x):
    logits, pooled = net.apply({"params": params}, x)
    return jnp.concatenate([pooled, logits], axis=-1).astype(jnp.float32)
  return fn


def train_metric_net(images_uint8: np.ndarray, labels: np.ndarray, *,
                     features: Sequence[int] = (32, 64, 128), steps: int = 1000,
                     batch_size: int = 128, learning_rate: float = 1e-3, key=None,
                     conv_impl: str = "auto",
                     chunk_steps: int = 100) -> tuple[MetricNet, Any, dict]:
  """Trains a `MetricNet` with labels (softmax cross-entropy, Adam).

  Minibatches are drawn uniformly with replacement. They are gathered on the host,
  `chunk_steps` at a time, and each chunk runs as one jitted `lax.scan`: the device
  holds one chunk of uint8 images, never the whole training set, and every chunk has
  the same shape, so the loop compiles once. The number of updates is therefore
  `steps` rounded up to a whole number of chunks (reported as `steps`).

  Args:
    images_uint8: (N, H, W, C) uint8 labelled training images.
    labels: (N,) integer class labels (any values; mapped to 0..K-1 in sorted order).
    features: conv widths of the net.
    steps: Adam updates (>= 1).
    batch_size: images per update.
    learning_rate: Adam step size.
    key: PRNG key for the initialisation and the minibatch draws.
    conv_impl: convolution implementation.
    chunk_steps: updates per jitted scan.

  Returns:
    (net, params, info) with info = {steps, batch_size, num_classes, classes,
    final_loss (mean over the last chunk), train_accuracy (same), seconds}.

  Raises:
    ValueError: fewer than two classes, mismatched shapes or non-uint8 images.
  """
  t0 = time.perf_counter()
  images = np.asarray(images_uint8)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(f"train_metric_net expects non-empty uint8 (N, H, W, C) images, "
                     f"got {images.dtype} {images.shape}.")
  labels = np.asarray(labels)
  if labels.shape != (images.shape[0],):
    raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}.")
  classes, y = np.unique(labels, return_inverse=True)
  if classes.size < 2:
    raise ValueError("The metric net needs labels of two or more classes.")
  steps, batch_size = int(steps), int(batch_size)
  if steps < 1 or batch_size < 1:
    raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}.")
  if key is None:
    key = jax.random.key(0)
  chunk = min(int(chunk_steps), steps)
  num_chunks = -(-steps // chunk)
  net = MetricNet(features=tuple(int(f) for f in features), num_classes=int(classes.size),
                  conv_impl=conv_impl)
  init_key, data_key = jax.random.split(key)
  params = jax.jit(lambda k: net.init(k, jnp.zeros((1, *images.shape[1:]))))(
      init_key)["params"]
  tx = optax.adam(float(learning_rate))
  opt_state = tx.init(params)

  def step(carry, batch):
    params, opt_state = carry
    x_u8, yb = batch

    def loss_fn(p):
      logits, _ = net.apply({"params": p}, data_lib.to_float(x_u8))
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
      return loss, jnp.mean(jnp.argmax(logits, -1) == yb)

    (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), (loss, acc)

  run_chunk = jax.jit(lambda carry, batches: jax.lax.scan(step, carry, batches))
  # Host-side minibatch indices from a generator seeded by the key, so the draws are
  # reproducible without any global random state.
  rng = np.random.default_rng(np.asarray(jax.random.key_data(data_key)).astype(np.uint64))
  carry = (params, opt_state)
  with console.Progress(num_chunks, f"metric net ({chunk} steps a chunk)",
                        "chunk") as bar:
    for _ in range(num_chunks):
      idx = rng.integers(0, images.shape[0], (chunk, batch_size))
      carry, (losses, accs) = run_chunk(carry, (images[idx], y[idx].astype(np.int32)))
      bar.track(losses)
  params = carry[0]
  losses, accs = np.asarray(losses), np.asarray(accs)
  if not np.all(np.isfinite(losses)):
    raise ValueError("The metric net's training loss is NaN or inf; lower "
                     "config.evaluate.metric_net_learning_rate.")
  info = {"steps": num_chunks * chunk, "batch_size": batch_size,
          "num_classes": int(classes.size), "classes": [int(c) for c in classes],
          "final_loss": float(losses.mean()), "train_accuracy": float(accs.mean()),
          "seconds": time.perf_counter() - t0}
  return net, params, info


# ----------------------------------------------------------------------------
# The L2-SVM protocol.


def _check_features(feats, labels, name):
  feats = np.asarray(feats) if not isinstance(feats, np.ndarray) else feats
  if labels is None:
    raise ValueError(
        f"{name}_labels is None: the SVM protocol needs a labelled dataset (e.g. "
        "tfds svhn_cropped/cifar10, or an .npz with a 'y' array).")
  labels = np.asarray(labels)
  if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
    raise ValueError(f"{name}_feats must be a non-empty (N, D) array, got shape "
                     f"{feats.shape}.")
  if labels.ndim != 1 or labels.shape[0] != feats.shape[0]:
    raise ValueError(f"{name}_labels must have shape ({feats.shape[0]},) to match "
                     f"{name}_feats, got {labels.shape}.")
  return feats, labels


class _Draw(NamedTuple):
  """One labelled draw, standardised and put in the form the SVM is trained on."""
  mean: np.ndarray      # (D,) standardisation fitted on the draw
  scale: np.ndarray     # (D,)
  design: np.ndarray    # (n, r) the matrix LinearSVC sees
  augmented: np.ndarray | None  # (n, D + 1) standardised draw with a ones column
  factor: tuple | None  # how `design` was made from `augmented` (see _prepare_draw)


def _standardiser(x: np.ndarray):
  """Per-dimension mean and scale of the labelled draw.

  Fitted on the draw alone: in the semi-supervised setting the labelled examples are
  all the SVM may be tuned on. Constant dimensions (e.g. dead ReLUs) get scale 1
  instead of a division by zero.
  """
  mean = x.mean(axis=0)
  scale = x.std(axis=0)
  scale[scale <= 1e-12 * max(float(scale.max()), 1e-30)] = 1.0
  return mean, scale


def _prepare_draw(x: np.ndarray) -> _Draw:
  """Standardises a draw and, when D >= n, reduces it exactly to n dimensions.

  liblinear's L2-SVM with an intercept is the problem
    min_w 1/2 |w|^2 + C sum_i max(0, 1 - y_i w.x~_i)^2,   x~_i = [x_i, 1]
  (the intercept is the weight of a constant feature and is regularised too). Its
  solution lies in the span of the x~_i (a component orthogonal to them adds to |w|
  and changes no margin), so with a factor K = X~ X~^T = L L^T (n x n) and w = X~^T
  L^-T b, the problem in b on the rows of L is the same problem: same margins, same
  norm. Training on 1000 x 1000 instead of 1000 x 14336 made each SVM ~15x faster
  here (liblinear's coordinate descent touches every feature each pass), and the
  weights agree with a direct fit to 1e-8 (tests/test_evaluate.py).
  """
  x = np.asarray(x, np.float64)
  if not np.all(np.isfinite(x)):
    raise ValueError("train_feats contain NaN or inf in the labelled draw.")
  mean, scale = _standardiser(x)
  xs = (x - mean) / scale
  n, d = xs.shape
  if d + 1 <= n:  # fewer features than examples: nothing to gain, fit directly
    return _Draw(mean, scale, xs, None, None)
  augmented = np.concatenate([xs, np.ones((n, 1))], axis=1)
  gram = augmented @ augmented.T
  try:
    chol = np.linalg.cholesky(gram)
    return _Draw(mean, scale, chol, augmented, ("cholesky", chol))
  except np.linalg.LinAlgError:
    # Rank-deficient draw (e.g. repeated images): keep the non-null eigendirections.
    evals, evecs = np.linalg.eigh(gram)
    keep = evals > evals.max() * n * np.finfo(np.float64).eps
    root = np.sqrt(evals[keep])
    return _Draw(mean, scale, evecs[:, keep] * root, augmented,
                 ("eigh", evecs[:, keep], root))


def _fit_svm(draw: _Draw, y: np.ndarray, C: float, max_iter: int, tol: float,
             seed: int):
  """Trains one L2-SVM (one-vs-rest) on a prepared draw.

  Returns:
    ((coef (k, D), intercept (k,), classes) on standardised features, converged).
  """
  from sklearn.exceptions import ConvergenceWarning  # pylint: disable=g-import-not-at-top
  from sklearn.svm import LinearSVC  # pylint: disable=g-import-not-at-top
  reduced = draw.factor is not None
  # Reduced (n x n): the dual (one variable per example) converged in ~60 passes for
  # every C tried, while the primal Newton solver slowed badly at large C on the
  # ill-conditioned factor. Direct (more examples than features): the primal, as the
  # scikit-learn documentation advises for n_samples > n_features.
  clf = LinearSVC(C=float(C), loss="squared_hinge", penalty="l2", dual=reduced,
                  fit_intercept=not reduced, tol=tol, max_iter=max_iter,
                  random_state=seed)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", ConvergenceWarning)
    clf.fit(draw.design, y)
  converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
  if not reduced:
    return (clf.coef_, clf.intercept_, clf.classes_), converged
  if draw.factor[0] == "cholesky":  # w = X~^T L^-T b
    a = scipy.linalg.solve_triangular(draw.factor[1], clf.coef_.T, trans="T",
                                      lower=True)
  else:  # design = U s: w = X~^T U s^-1 b
    a = draw.factor[1] @ (clf.coef_.T / draw.factor[2][:, None])
  w = (draw.augmented.T @ a).T  # (k, D + 1)
  return (w[:, :-1], w[:, -1], clf.classes_), converged


def _error_rate(model, mean, scale, feats: np.ndarray, labels: np.ndarray,
                name: str) -> float:
  """Error rate of a linear model on raw features, standardised on the fly.

  The standardisation is folded into the model (w / scale, b - w . mean / scale), so
  the (possibly multi-GB) test matrix is never copied whole; rows are scored in
  chunks. Same decision rule as LinearSVC.predict.
  """
  coef, intercept, classes = model
  w = coef / scale
  b = intercept - w @ mean
  wrong = 0
  for start in range(0, feats.shape[0], _SCORE_CHUNK):
    scores = np.asarray(feats[start:start + _SCORE_CHUNK], np.float64) @ w.T + b
    if not np.all(np.isfinite(scores)):
      raise ValueError(f"{name} contain NaN or inf (rows {start}..).")
    if scores.shape[1] == 1:  # binary: one weight vector, positive means classes[1]
      pred = classes[(scores[:, 0] > 0).astype(int)]
    else:
      pred = classes[np.argmax(scores, axis=1)]
    wrong += int(np.sum(pred != labels[start:start + _SCORE_CHUNK]))
  return wrong / feats.shape[0]


def svm_protocol(train_feats, train_labels, test_feats, test_labels, *,
                 num_labelled: int = 1000, val_size: int = 10000,
                 num_draws: int = 100, Cs: Sequence[float] = DEFAULT_CS,
                 seed: int = 0, select_draws: int = 3, max_iter: int = 2000,
                 tol: float = 1e-4) -> dict:
  """The paper's semi-supervised L2-SVM protocol (section 4.5, after DCGAN).

  1. A random `val_size` examples of the labelled training set are held out for
     model selection; the rest is the pool labelled draws come from.
  2. C is chosen once: for each of `select_draws` random `num_labelled`-example draws
     from the pool, an SVM is trained for every C in `Cs` and scored on the validation
     split; the C with the lowest validation error averaged over those draws wins
     (ties go to the smaller, more regularised C). The paper does not say how many
     draws it selected with; averaging a few keeps one unlucky draw from deciding.
  3. For each of `num_draws` fresh random draws of `num_labelled` pool examples, an
     L2-SVM (scikit-learn `LinearSVC(loss='squared_hinge')`, one-vs-rest, intercept
     regularised as liblinear does) with the chosen C is trained and its test error
     recorded.
  Features are standardised with the mean and standard deviation of each labelled
  draw (not of the test or validation data). When there are more features than
  labelled examples (14336 vs 1000 in the paper), each SVM is trained on an exact
  n-dimensional reparametrisation of the same problem (see `_prepare_draw`) and its
  weights mapped back; the solution is the same, ~15x faster. All randomness comes
  from `seed`.

  Args:
    train_feats: (N, D) features of the labelled training set (a numpy array or
      memmap; only the rows drawn are read into float64).
    train_labels: (N,) class labels.
    test_feats: (M, D) features of the test set.
    test_labels: (M,) class labels.
    num_labelled: labelled examples per SVM (paper: 1000).
    val_size: held-out validation examples for choosing C (paper: 10000); may be 0
      only when `Cs` has a single value.
    num_draws: SVMs the test error is averaged over (paper: 100).
    Cs: candidate values of the SVM's C.
    seed: seeds the split, the draws and liblinear.
    select_draws: draws used to choose C.
    max_iter: liblinear iteration cap per SVM.
    tol: liblinear stopping tolerance.

  Returns:
    dict with test_error_mean, test_error_std (sample std over draws; 0 for one draw),
    test_errors (one per draw), C (chosen), val_error (its validation error),
    val_errors (list of {C, error}), feature_dim, num_train, num_test, num_labelled,
    val_size, num_draws, select_draws, not_converged (SVMs that hit max_iter),
    seconds.

  Raises:
    ValueError: missing labels, inconsistent shapes, too few training examples for
      val_size + num_labelled, fewer than two classes in a draw, bad Cs or counts.
  """
  t0 = time.perf_counter()
  train_feats, train_labels = _check_features(train_feats, train_labels, "train")
  test_feats, test_labels = _check_features(test_feats, test_labels, "test")
  if train_feats.shape[1] != test_feats.shape[1]:
    raise ValueError(f"train_feats have {train_feats.shape[1]} dimensions but test_feats "
                     f"have {test_feats.shape[1]}; extract both with the same function.")
  num_labelled, val_size = int(num_labelled), int(val_size)
  num_draws, select_draws = int(num_draws), int(select_draws)
  if num_labelled < 2:
    raise ValueError(f"num_labelled must be >= 2, got {num_labelled}.")
  if val_size < 0:
    raise ValueError(f"val_size must be >= 0, got {val_size}.")
  if num_draws < 1 or select_draws < 1:
    raise ValueError(f"num_draws and select_draws must be >= 1, got {num_draws} and "
                     f"{select_draws}.")
  Cs = tuple(float(c) for c in np.atleast_1d(np.asarray(Cs, dtype=float)))
  if not Cs or not all(np.isfinite(c) and c > 0 for c in Cs):
    raise ValueError(f"Cs must be a non-empty sequence of positive numbers, got {Cs}.")
  if val_size == 0 and len(Cs) > 1:
    raise ValueError(f"val_size=0 leaves no validation split to choose among {len(Cs)} "
                     "values of C; give a single C or a positive val_size.")
  n = train_feats.shape[0]
  if n < val_size + num_labelled:
    raise ValueError(
        f"The labelled training set has {n} examples, but val_size ({val_size}) + "
        f"num_labelled ({num_labelled}) = {val_size + num_labelled} are needed; lower "
        "val_size or num_labelled (e.g. --config.evaluate.val_size=...).")
  if np.unique(train_labels).size < 2:
    raise ValueError("train_labels hold a single class; a classifier needs two or more.")

  # Independent streams, so changing num_draws does not change the split or the C
  # chosen, and changing select_draws does not change the test draws.
  split_ss, select_ss, draw_ss = np.random.SeedSequence(int(seed)).spawn(3)
  perm = np.random.default_rng(split_ss).permutation(n)
  val_idx, pool_idx = np.sort(perm[:val_size]), perm[val_size:]
  val_feats, val_labels = train_feats[val_idx], train_labels[val_idx]
  not_converged = 0

  def draw(rng):
    # Sorted indices read a memmap sequentially; the order does not affect the SVM
    # beyond liblinear's seeded shuffling.
    idx = np.sort(rng.choice(pool_idx, num_labelled, replace=False))
    y = train_labels[idx]
    if np.unique(y).size < 2:
      raise ValueError(
          f"A random draw of {num_labelled} labelled examples holds a single class; "
          "raise num_labelled.")
    return train_feats[idx], y

  def fit(prepared, y, C, i):
    nonlocal not_converged
    # liblinear shuffles its coordinates: seeded per SVM from the protocol's seed.
    svm_seed = int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0] >> 1)
    model, ok = _fit_svm(prepared, y, C, max_iter, tol, seed=svm_seed)
    not_converged += not ok
    return model

  if len(Cs) == 1:
    best_c, val_errors = Cs[0], {}
  else:
    select_rng = np.random.default_rng(select_ss)
    errs = {c: [] for c in Cs}
    with console.Progress(select_draws * len(Cs), "SVM: choosing C", "fit") as bar:
      for k in range(select_draws):
        x, y = draw(select_rng)
        prepared = _prepare_draw(x)  # shared by every C
        for c in Cs:
          model = fit(prepared, y, c, k)
          errs[c].append(_error_rate(model, prepared.mean, prepared.scale, val_feats,
                                     val_labels, "train_feats (validation rows)"))
          bar.update()
    val_errors = {c: float(np.mean(errs[c])) for c in Cs}
    best_c = min(sorted(Cs), key=lambda c: val_errors[c])  # min is stable: smaller C
    logging.info("SVM: C=%g chosen on %d validation examples (errors %s).", best_c,
                 val_size, {f"{c:g}": round(e, 4) for c, e in val_errors.items()})

  draw_rng = np.random.default_rng(draw_ss)
  errors = []
  with console.Progress(num_draws, "SVM: test draws", "draw") as bar:
    for d in range(num_draws):
      x, y = draw(draw_rng)
      prepared = _prepare_draw(x)
      model = fit(prepared, y, best_c, 1000 + d)
      errors.append(_error_rate(model, prepared.mean, prepared.scale, test_feats,
                                test_labels, "test_feats"))
      bar.update()
  errors = np.asarray(errors)
  return {
      "test_error_mean": float(errors.mean()),
      "test_error_std": float(errors.std(ddof=1)) if num_draws > 1 else 0.0,
      "test_errors": [float(e) for e in errors],
      "C": best_c,
      "val_error": val_errors.get(best_c),
      "val_errors": [{"C": c, "error": e} for c, e in val_errors.items()],
      "feature_dim": int(train_feats.shape[1]),
      "num_train": int(n), "num_test": int(test_feats.shape[0]),
      "num_labelled": num_labelled, "val_size": val_size, "num_draws": num_draws,
      "select_draws": select_draws if len(Cs) > 1 else 0,
      "not_converged": int(not_converged),
      "seconds": time.perf_counter() - t0,
  }


# ----------------------------------------------------------------------------
# evaluate(config, workdir).


def _evaluate_config(config) -> ml_collections.ConfigDict:
  """`config.evaluate` over the defaults, so configs without the block still work."""
  ev = default_evaluate_config().to_dict()
  given = config.evaluate.to_dict() if "evaluate" in config else {}
  unknown = sorted(set(given) - set(ev))
  if unknown:
    raise ValueError(f"Unknown config.evaluate keys {unknown}; known: {sorted(ev)}.")
  ev.update(given)
  ev = ml_collections.ConfigDict(ev)
  for key in ("num_labelled", "num_draws", "select_draws", "batch_size"):
    if int(ev[key]) < 1:
      raise ValueError(f"config.evaluate.{key} must be >= 1, got {ev[key]}.")
  for key in ("val_size", "num_samples", "metric_net_steps"):
    if int(ev[key]) < 0:
      raise ValueError(f"config.evaluate.{key} must be >= 0, got {ev[key]}.")
  if not len(ev.layers):
    raise ValueError("config.evaluate.layers must name at least one conv layer.")
  if int(ev.metric_net_steps) > 0:
    if int(ev.metric_net_batch_size) < 1 or not float(ev.metric_net_learning_rate) > 0:
      raise ValueError("config.evaluate.metric_net_batch_size must be >= 1 and "
                       "metric_net_learning_rate > 0, got "
                       f"{ev.metric_net_batch_size} and {ev.metric_net_learning_rate}.")
    if not len(ev.metric_net_features) or min(int(f) for f in ev.metric_net_features) < 1:
      raise ValueError("config.evaluate.metric_net_features must be a non-empty tuple of "
                       f"positive widths, got {ev.metric_net_features}.")
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
    raise ValueError(
        f"config.evaluate.layers={layers} names layers {bad}, but the classifier has "
        f"{depth} conv layers; e.g. --config.evaluate.layers='{tuple(range(-min(depth, 3), 0))}'.")
  if len({i % depth for i in layers}) != len(layers):
    raise ValueError(f"config.evaluate.layers={layers} names a layer twice.")
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
    raise ValueError("The checkpoint has no trained stage yet; train first.")
  if not -trained.size <= int(stage) < trained.size:
    raise ValueError(
        f"config.evaluate.stage={stage} is out of range: the checkpoint holds "
        f"{trained.size} trained classifiers (use -{trained.size}..{trained.size - 1}).")
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
        raise ValueError(
            f"config.evaluate.train_path/test_path apply to data sources 'npz' and "
            f"'folder', not {cfg.source!r}; use train_split/test_split instead.")
      cfg.path = path
      split = None  # the file is the split
    dataset = data_lib.load_dataset(cfg, split=split)
    if dataset.labels is None:
      raise ValueError(
          f"The {dataset.name!r} dataset ({cfg.source}, split {split}) has no labels; "
          "the SVM protocol needs a labelled dataset (tfds svhn_cropped/cifar10, or an "
          ".npz with 'x' and 'y'; set config.evaluate.train_path/test_path).")
    return dataset

  train_ds = load(ev.train_split, ev.train_path)
  test_ds = load(ev.test_split, ev.test_path)
  return train_ds, test_ds


class _Space(NamedTuple):
  """A feature space for Frechet/KID: how to embed images, and the real test set."""
  feature_fn: Callable   # (variables, x) -> (N, >= start + dim) features
  variables: Any
  start: int             # the space is columns start .. start + dim of feature_fn
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
      "frechet": {"generated": metrics.frechet_distance(fa, fg),
                  "real_floor": metrics.frechet_distance(fa, fb)},
      "kid": {"generated": kid_gen.mean, "generated_std": kid_gen.std,
              "real_floor": kid_real.mean, "real_floor_std": kid_real.std},
  }


def _metric_net_space(config, ev, train_ds, test_ds) -> tuple[_Space, dict]:
  """Trains the supervised metric net on the labelled training split; scores the test set.

  Returns:
    (its feature space, info dict: training statistics and test_accuracy).
  """
  net, params, info = train_metric_net(
      train_ds.images, train_ds.labels, features=ev.metric_net_features,
      steps=int(ev.metric_net_steps), batch_size=int(ev.metric_net_batch_size),
      learning_rate=float(ev.metric_net_learning_rate),
      key=jax.random.fold_in(jax.random.key(int(ev.seed)), 2),
      conv_impl=config.model.conv_impl)
  fn = make_metric_feature_fn(net)
  out = extract_features(fn, params, test_ds.images, int(ev.batch_size))
  dim = int(ev.metric_net_features[-1])
  pred = np.asarray(info["classes"])[np.argmax(out[:, dim:], axis=1)]
  info["test_accuracy"] = float(np.mean(pred == test_ds.labels))
  info["num_train"], info["num_test"] = train_ds.num_examples, test_ds.num_examples
  info["features"] = [int(f) for f in ev.metric_net_features]
  logging.info("Metric net: %d steps, test accuracy %.2f%% (%d classes).", info["steps"],
               100 * info["test_accuracy"], info["num_classes"])
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
  generated, gen_stats = generate_lib.synthesize_images(
      config, stacked, active, n, key, size=(0, 0))
  # Generated images are quantised like the real ones (as they would be saved), so
  # neither set gets features of values the other cannot take.
  gen_u8 = np.asarray(data_lib.to_uint8(generated))
  # Two disjoint real halves of the same size as the generated set: the floor then has
  # the same small-sample bias as the generated-vs-real number it is read against.
  perm = np.random.default_rng(int(ev.seed)).permutation(test_images.shape[0])
  half_a, half_b = perm[:n], perm[n:2 * n]

  out = {"num_images": n, "generation": gen_stats}
  for key_name, space in spaces.items():
    dim = space.test_feats.shape[1]
    fg = extract_features(space.feature_fn, space.variables, gen_u8,
                          int(ev.batch_size))[:, space.start:space.start + dim]
    out[key_name] = _distances(space.test_feats[half_a], space.test_feats[half_b], fg,
                               int(ev.seed))
  fa, fb, fg = (data_lib.to_float(x)
                for x in (test_images[half_a], test_images[half_b], gen_u8))
  swd_gen = metrics.swd(fa, fg, rng=int(ev.seed))
  swd_real = metrics.swd(fa, fb, rng=int(ev.seed))
  levels = sorted(k for k in swd_gen if k != "mean")
  out["swd"] = {"generated": swd_gen["mean"], "real_floor": swd_real["mean"],
                "levels_generated": [swd_gen[k] for k in levels],
                "levels_real_floor": [swd_real[k] for k in levels]}
  return out, generated


def _pct(x):
  return "n/a" if x is None else f"{100 * x:.2f}%"


def to_markdown(results: dict) -> str:
  """Renders `evaluate`'s results as a markdown report (two tables).

  Args:
    results: the dict `evaluate` returns (and writes as evaluation.json).

  Returns:
    The markdown text.
  """
  ev, info = results["config"], results["model"]
  lines = [
      f"# INNg evaluation of `{results['workdir']}`", "",
      f"Features: classifier slot {info['slot']} of {info['trained_slots']} trained "
      f"({info['completed_stages']} completed stages), conv layers {info['layers']}. "
      f"Labelled data: {results['data']['num_train']} training / "
      f"{results['data']['num_test']} test images ({results['data']['name']}).", "",
      f"L2-SVM protocol (paper 4.5): {ev['val_size']} validation examples choose C "
      f"(validation error averaged over {results['svm']['inng']['select_draws']} "
      f"draw(s)); test error is the mean ± std over {ev['num_draws']} SVMs, each "
      f"trained on {ev['num_labelled']} random labelled examples.", "",
      "| Features | Dim | C | Val. error | Test error (mean ± std) |",
      "|---|---:|---:|---:|---:|",
  ]
  for name in FEATURE_SETS:
    r = results["svm"][name]
    label = _ROW_NAMES[name] + (f" (layers {info['layers']})" if name == "inng" else "")
    lines.append(f"| {label} | {r['feature_dim']} | {r['C']:g} | {_pct(r['val_error'])} "
                 f"| {_pct(r['test_error_mean'])} ± {_pct(r['test_error_std'])} |")
  q = results.get("quality")
  if q and "skipped" not in q:
    lines += [
        "", f"## Sample quality ({q['num_images']} generated vs {q['num_images']} real "
        "test images)", "",
    ]
    net = q.get("metric_net")
    if net:
      lines += [
          f"Headline feature space: a supervised CNN (conv widths {net['features']}, "
          f"{net['steps']} Adam steps) trained with labels on the {net['num_train']} "
          f"labelled training images; its test accuracy is "
          f"{100 * net['test_accuracy']:.2f}% ({net['num_classes']} classes, chance "
          f"{100 / net['num_classes']:.1f}%). Frechet/KID use its global-average-pooled "
          "last conv layer (no pretrained Inception network is available offline).", "",
      ]
    lines += [
        "The INNg rows use the pooled last conv layer of the trained INNg classifier "
        "(which the samples were optimised against) and of a random classifier of the "
        "same architecture. The floor compares two disjoint real halves of the same "
        "size. Lower is better.", "",
        "| Metric | Generated vs real | Real vs real (floor) |", "|---|---:|---:|",
    ]
    for name, label in (("metric_net", "supervised net"), ("trained", "INNg classifier"),
                        ("random", "random classifier")):
      f = q.get(f"{name}_features")
      if f is None:
        continue
      lines.append(f"| Frechet, {label} features (dim {f['dim']}) | "
                   f"{f['frechet']['generated']:.4g} | {f['frechet']['real_floor']:.4g} |")
      lines.append(f"| KID, {label} features | {f['kid']['generated']:.4g} ± "
                   f"{f['kid']['generated_std']:.2g} | {f['kid']['real_floor']:.4g} ± "
                   f"{f['kid']['real_floor_std']:.2g} |")
    lines.append(f"| SWD (pixels, mean over levels) | {q['swd']['generated']:.4g} | "
                 f"{q['swd']['real_floor']:.4g} |")
  elif q:
    lines += ["", f"Sample quality skipped: {q['skipped']}."]
  lines += ["", f"Total time {results['seconds']:.1f}s.", ""]
  return "\n".join(lines)


def evaluate(config: ml_collections.ConfigDict, workdir: str,
             output_dir: str | None = None) -> dict:
  """Evaluates the trained cascade in `workdir`; writes evaluation.json and .md there.

  Runs the L2-SVM protocol (`svm_protocol`) on the trained classifier's features
  (`config.evaluate.stage`, `config.evaluate.layers`), a randomly initialised
  classifier of the same architecture and raw pixels; then, unless
  `config.evaluate.num_samples` is 0, trains the supervised metric net
  (`train_metric_net`, unless `metric_net_steps` is 0), generates images from the
  whole cascade (`config.sample` settings) and compares them with real test images
  (Frechet and KID in the metric net's and the INNg classifiers' feature spaces, SWD
  on pixels, each with its real-vs-real floor). See the module docstring for the
  choices.

  The report goes to `output_dir` (default `workdir`) as `evaluation.json`,
  `evaluation.md` and `evaluation_samples.png` (a grid of 64 generated images); when
  one of these names is in use, all three get `-2`, `-3`, ... after `evaluation`, so
  no earlier report is replaced. Each file is written whole or not at all.

  Args:
    config: the run's config; `config.evaluate` (see `default_evaluate_config`) is
      optional and falls back to the defaults.
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
  if "patch" in config and int(config.patch.size) > 0:
    # The SVM features and the Frechet/KID comparison need a classifier of whole
    # labelled images; a patch head sees config.patch.size crops of textures.
    raise ValueError(
        f"--mode=evaluate needs a whole-image classifier, but config.patch.size="
        f"{config.patch.size} trains a patch head (textures); evaluate a model trained "
        "with config.patch.size=0 on a labelled dataset.")
  train.validate_config(config)
  model = train.build_model(config)
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
      model, jax.random.fold_in(jax.random.key(int(ev.seed)), 0), shape)

  train_ds, test_ds = load_labelled(config, ev)
  for ds in (train_ds, test_ds):
    if ds.image_shape != shape:
      raise ValueError(f"The labelled {ds.name!r} images have shape {ds.image_shape}, "
                       f"the model expects {shape}.")
  # Checked before any feature is extracted, so a wrong size fails in seconds.
  if train_ds.num_examples < int(ev.val_size) + int(ev.num_labelled):
    raise ValueError(
        f"The labelled training split has {train_ds.num_examples} examples, but "
        f"val_size ({ev.val_size}) + num_labelled ({ev.num_labelled}) are needed; lower "
        "--config.evaluate.val_size or --config.evaluate.num_labelled.")
  logging.info("Evaluating slot %d (of %d trained) on %d train / %d test images.", slot,
               int(np.sum(np.asarray(active))), train_ds.num_examples,
               test_ds.num_examples)

  protocol = dict(num_labelled=int(ev.num_labelled), val_size=int(ev.val_size),
                  num_draws=int(ev.num_draws), Cs=tuple(ev.Cs), seed=int(ev.seed),
                  select_draws=int(ev.select_draws))
  feature_fn = make_evaluation_feature_fn(model, layers)
  variables = {"inng": trained_vars, "random": random_vars}
  svm, timings, test_pooled = {}, {}, {}
  svm_dim = None
  for name in FEATURE_SETS:
    t0 = time.perf_counter()
    if name == "pixels":
      tr, te = pixel_features(train_ds.images), pixel_features(test_ds.images)
    else:
      tr, te = (extract_features(feature_fn, variables[name], ds.images,
                                 int(ev.batch_size)) for ds in (train_ds, test_ds))
      svm_dim = tr.shape[1] - int(config.model.features[-1])
      test_pooled[name] = te[:, svm_dim:].copy()
      tr, te = tr[:, :svm_dim], te[:, :svm_dim]  # views: no copy of the N x D array
    timings[f"features_{name}_s"] = time.perf_counter() - t0
    svm[name] = svm_protocol(tr, train_ds.labels, te, test_ds.labels, **protocol)
    del tr, te  # release the N x D host array before the next feature set
    logging.info("SVM on %s features (%d dims): test error %.2f%% ± %.2f%% (C=%g).",
                 name, svm[name]["feature_dim"], 100 * svm[name]["test_error_mean"],
                 100 * svm[name]["test_error_std"], svm[name]["C"])

  quality, generated = None, None
  if int(ev.num_samples) > 0:
    spaces, net_info = {}, None
    # No net to train when there are too few test images to compare with (_quality
    # then reports why it skipped).
    if (int(ev.metric_net_steps) > 0
        and min(int(ev.num_samples), test_ds.num_examples // 2) >= 2):
      t0 = time.perf_counter()
      spaces["metric_net_features"], net_info = _metric_net_space(config, ev, train_ds,
                                                                  test_ds)
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
      "model": {"slot": slot, "trained_slots": int(np.sum(np.asarray(active))),
                "completed_stages": stages, "layers": list(layers),
                "features": list(config.model.features)},
      "data": {"name": train_ds.name, "num_train": train_ds.num_examples,
               "num_test": test_ds.num_examples},
      "svm": svm,
      "quality": quality,
      "timings": timings,
      "seconds": time.perf_counter() - t_start,
  }
  writers = {
      ".json": lambda f: f.write(json.dumps(results, indent=2).encode("utf-8")),
      ".md": lambda f: f.write(to_markdown(results).encode("utf-8"))}
  if generated is not None:
    writers["_samples.png"] = functools.partial(
        images_lib.write_png, images_lib.make_grid(generated[:64]))
  files = outputs.write_new(out_dir, "evaluation", writers)
  logging.info("Wrote %s.", ", ".join(files.values()))
  return {**results, "files": files}
