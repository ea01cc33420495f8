"""A small supervised CNN whose pooled features are the Frechet/KID feature space.

FID and KID are defined on an ImageNet Inception network, which cannot be downloaded
here (no network access, and no pretrained weights ship with the project), and would be
a poor fit for 16x16 gray images anyway. So the evaluation trains its own:
`MetricNet`, trained with labels (softmax cross-entropy, Adam) on the labelled training
split, independently of the INNg model. Its global-average-pooled last conv layer
(`features[-1]` dimensions, like Inception's pool3) is the headline space of
`innjax.evaluate`, which also reports the net's test accuracy, so that the reader can
tell whether the space separates the classes at all. Distances in this space are
comparable only between runs on the same data with the same net settings, not with
published FID/KID values.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from innjax import console
from innjax import data as data_lib
from innjax import errors
from innjax import models


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
      kernel = self.param(
        f"conv{i}_kernel",
        models.flat_normal(np.sqrt(2.0 / fan_in)),
        (3, 3, h.shape[-1], width),
      )
      bias = self.param(f"conv{i}_bias", nn.initializers.zeros, (width,))
      h = nn.leaky_relu(models.conv2d(h, kernel, 2, impl) + bias, 0.2)
    pooled = jnp.mean(h, axis=(1, 2))
    logits = nn.Dense(
      self.num_classes,
      kernel_init=models.flat_normal(np.sqrt(1.0 / pooled.shape[-1])),
      name="head",
    )(pooled)
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


def train_metric_net(
  images_uint8: np.ndarray,
  labels: np.ndarray,
  *,
  features: Sequence[int] = (32, 64, 128),
  steps: int = 1000,
  batch_size: int = 128,
  learning_rate: float = 1e-3,
  key=None,
  conv_impl: str = "auto",
  chunk_steps: int = 100,
) -> tuple[MetricNet, Any, dict]:
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
    raise ValueError(
      f"train_metric_net expects non-empty uint8 (N, H, W, C) images, "
      f"got {images.dtype} {images.shape}."
    )
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
  net = MetricNet(
    features=tuple(int(f) for f in features),
    num_classes=int(classes.size),
    conv_impl=conv_impl,
  )
  init_key, data_key = jax.random.split(key)
  params = jax.jit(lambda k: net.init(k, jnp.zeros((1, *images.shape[1:]))))(init_key)[
    "params"
  ]
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
  with console.Progress(
    num_chunks, f"metric net ({chunk} steps a chunk)", "chunk"
  ) as bar:
    for _ in range(num_chunks):
      idx = rng.integers(0, images.shape[0], (chunk, batch_size))
      carry, (losses, accs) = run_chunk(carry, (images[idx], y[idx].astype(np.int32)))
      bar.track(losses)
  params = carry[0]
  losses, accs = np.asarray(losses), np.asarray(accs)
  if not np.all(np.isfinite(losses)):
    raise errors.TrainingError(
      "The metric net's training loss is NaN or inf; lower "
      "config.evaluate.metric_net_learning_rate."
    )
  info = {
    "steps": num_chunks * chunk,
    "batch_size": batch_size,
    "num_classes": int(classes.size),
    "classes": [int(c) for c in classes],
    "final_loss": float(losses.mean()),
    "train_accuracy": float(accs.mean()),
    "seconds": time.perf_counter() - t0,
  }
  return net, params, info
