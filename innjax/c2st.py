"""Classifier two-sample test (C2ST): can a fresh critic tell two image sets apart?

A small CNN, trained from scratch with a fixed recipe and seed, learns to separate
random crops of one set (e.g. the texture exemplar) from random crops of another (a
method's samples). Its accuracy on held-out crops is the statistic: 0.5 means the
critic found nothing to tell them apart by, 1.0 that they are trivially different
(Lopez-Paz and Oquab, ICLR 2017). Unlike distances on fixed descriptors it cannot be
flattered by a normalisation: whatever differs, contrast, colour, left-over noise or
missing structure, a critic can learn.

Held-out crops come from regions disjoint from the training crops: every image is
tiled into a checkerboard of cells twice the crop's side, training crops are cut
inside the cells of one colour and test crops inside the others, so the critic cannot
score by recognising pixels it trained on, while both sets still cover the whole image.
The critic is never one of the model's own classifiers.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from innjax import errors
from innjax import models


class C2STResult(NamedTuple):
  """The outcome of `c2st`.

  Attributes:
    accuracy: held-out accuracy of the critic (0.5 = indistinguishable).
    train_accuracy: its accuracy on the last training batches (a critic that
      cannot even fit its training crops makes a weak test).
    num_test: held-out crops per set.
  """

  accuracy: float
  train_accuracy: float
  num_test: int


class Critic(nn.Module):
  """The fixed C2ST critic: three 3x3 stride-2 convolutions, swish, mean pool, dense.

  The convolutions are the classifier's (`models.Conv`), whose gradients avoid
  XLA:CPU's slow strided-convolution input gradient, with LeCun-normal weights
  rather than the DCGAN's N(0, 0.02^2): with those the critic needed many more steps
  to see a change of contrast.
  """

  features: tuple = (32, 64, 128)

  @nn.compact
  def __call__(self, x):
    for i, width in enumerate(self.features):
      conv = models.Conv(
        width,
        kernel_size=3,
        stride=2,
        name=f"conv{i}",
        kernel_init=nn.initializers.lecun_normal(),
      )
      x = nn.swish(conv(x))
    return nn.Dense(1)(jnp.mean(x, axis=(1, 2)))[:, 0]


def _as_nhwc(x: Any, name: str) -> np.ndarray:
  arr = np.asarray(x, np.float32)
  if arr.ndim == 3:
    arr = arr[None]
  if arr.ndim != 4 or arr.size == 0:
    raise ValueError(
      f"{name} must be NHWC images or one HWC image, got shape {arr.shape}."
    )
  if not np.all(np.isfinite(arr)):
    raise errors.DataError(f"{name} contains NaN or infinite values.")
  return arr


def random_crops(
  rng: np.random.Generator, images: np.ndarray, crop: int, num: int, parity: int
) -> np.ndarray:
  """`num` crops of `crop` x `crop` from the cells of one colour of a checkerboard.

  Each image is tiled into square cells of side 2 * crop; a crop lies inside one cell
  whose (row + column) % 2 equals `parity`, at a uniform position, images taken
  round-robin. Crops of the two parities share no pixel, and both parities cover the
  whole image, so a slowly varying exemplar is not split into a "left" to train on
  and a different "right" to test on.
  """
  n, h, w, _ = images.shape
  cell = 2 * crop
  rows, cols = h // cell, w // cell
  cells = [(r, c) for r in range(rows) for c in range(cols) if (r + c) % 2 == parity]
  if not cells:
    raise errors.DataError(
      f"images of {h}x{w} are too small for {crop}x{crop} crops from two disjoint "
      f"sets of {cell}x{cell} cells: they need a side >= {2 * cell} along one axis "
      f"and >= {cell} along the other; use a smaller crop."
    )
  idx = np.arange(num) % n
  which = rng.integers(0, len(cells), num)
  ys = rng.integers(0, cell - crop + 1, num)
  xs = rng.integers(0, cell - crop + 1, num)
  out = []
  for i, k, y, x in zip(idx, which, ys, xs):
    top, left = cells[k][0] * cell + y, cells[k][1] * cell + x
    out.append(images[i, top : top + crop, left : left + crop])
  return np.stack(out)


def _critic_result(
  arrays, seed, steps, batch_size, learning_rate, features
) -> C2STResult:
  """Trains the fixed critic on (x_train, y_train) and tests it on (x_test, y_test)."""
  x_train, y_train, x_test, y_test = (jnp.asarray(a) for a in arrays)
  accuracy, train_accuracy = jax.device_get(
    _train_and_test(
      x_train,
      y_train,
      x_test,
      y_test,
      jax.random.key(seed),
      int(steps),
      int(batch_size),
      float(learning_rate),
      tuple(int(f) for f in features),
    )
  )
  return C2STResult(
    accuracy=float(accuracy),
    train_accuracy=float(train_accuracy),
    num_test=int(y_test.shape[0]) // 2,
  )


def c2st(
  reference: Any,
  images: Any,
  crop: int = 32,
  num_train: int = 1024,
  num_test: int = 512,
  steps: int = 400,
  batch_size: int = 64,
  learning_rate: float = 1e-3,
  seed: int = 0,
  features: tuple = (32, 64, 128),
) -> C2STResult:
  """The held-out accuracy of a fresh critic separating `reference` from `images`.

  Args:
    reference: NHWC images (or one HWC image), e.g. the exemplar, in [-1, 1].
    images: the set to test, same channels; sizes may differ.
    crop: crop side; images need room for checkerboard cells of 2 * crop of both
      colours (e.g. 4 * crop by 2 * crop).
    num_train, num_test: crops per set to train on / to test on.
    steps: Adam updates of the critic.
    batch_size: crops per update, half from each set.
    learning_rate: Adam's step.
    seed: crops, initialisation and batches; fixed, so that methods compared with
      the same seed see the same recipe.
    features: the critic's convolution widths.

  Returns:
    A `C2STResult`.
  """
  ref = _as_nhwc(reference, "reference")
  other = _as_nhwc(images, "images")
  if ref.shape[-1] != other.shape[-1]:
    raise ValueError(
      f"reference and images must have the same channels, got "
      f"{ref.shape[-1]} and {other.shape[-1]}."
    )
  for name, value in (
    ("crop", crop),
    ("num_train", num_train),
    ("num_test", num_test),
    ("steps", steps),
    ("batch_size", batch_size),
  ):
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be a positive integer, got {value!r}.")
  rng = np.random.default_rng(seed)
  x_train = np.concatenate(
    [
      random_crops(rng, ref, crop, num_train, 0),
      random_crops(rng, other, crop, num_train, 0),
    ]
  )
  y_train = np.concatenate([np.ones(num_train), np.zeros(num_train)]).astype(np.float32)
  x_test = np.concatenate(
    [
      random_crops(rng, ref, crop, num_test, 1),
      random_crops(rng, other, crop, num_test, 1),
    ]
  )
  y_test = np.concatenate([np.ones(num_test), np.zeros(num_test)]).astype(np.float32)
  return _critic_result(
    (x_train, y_train, x_test, y_test), seed, steps, batch_size, learning_rate, features
  )


def c2st_sets(
  reference: Any,
  images: Any,
  steps: int = 400,
  batch_size: int = 64,
  learning_rate: float = 1e-3,
  seed: int = 0,
  features: tuple = (32, 64, 128),
) -> C2STResult:
  """C2ST on sets of whole images (faces, digits): one image, one example.

  The critic trains on the first half of each set and is tested on the second half,
  so no test image was seen in training. Use `c2st` for textures (crops of a few
  large images) instead.

  Args:
    reference: (N, H, W, C) real images, e.g. held-back training images.
    images: (M, H, W, C) images to test, same shape per image; N, M >= 4.
    steps, batch_size, learning_rate, seed, features: as in `c2st`.

  Returns:
    A `C2STResult`; `num_test` is the number of test images per set (the smaller).
  """
  ref = _as_nhwc(reference, "reference")
  other = _as_nhwc(images, "images")
  if ref.shape[1:] != other.shape[1:]:
    raise errors.DataError(
      f"reference and images must have the same image shape, got "
      f"{ref.shape[1:]} and {other.shape[1:]}."
    )
  if min(ref.shape[0], other.shape[0]) < 4:
    raise errors.DataError(
      "c2st_sets needs at least 4 images in each set (half to train on, half to test on)."
    )
  n = min(ref.shape[0], other.shape[0]) // 2
  rng = np.random.default_rng(seed)
  ref, other = rng.permutation(ref), rng.permutation(other)
  x_train = np.concatenate([ref[:n], other[:n]])
  y_train = np.concatenate([np.ones(n), np.zeros(n)]).astype(np.float32)
  x_test = np.concatenate([ref[n : 2 * n], other[n : 2 * n]])
  # The test set is laid out like the training set: n reference images, then n others.
  return _critic_result(
    (x_train, y_train, x_test, y_train), seed, steps, batch_size, learning_rate, features
  )


@functools.partial(jax.jit, static_argnums=(5, 6, 7, 8))
def _train_and_test(
  x_train, y_train, x_test, y_test, key, steps, batch_size, learning_rate, features
):
  """Trains the critic with balanced batches; returns (test acc, last train acc).

  Jitted at module level with the crops as arguments, so repeated tests of the same
  sizes (every method of a report) compile once.
  """
  critic = Critic(features)
  tx = optax.adam(learning_rate)
  init_key, batch_key = jax.random.split(key)
  params = critic.init(init_key, x_train[:1])
  half = max(batch_size // 2, 1)
  num = x_train.shape[0] // 2

  def loss_fn(params, x, y):
    logits = critic.apply(params, x)
    return optax.sigmoid_binary_cross_entropy(logits, y).mean(), logits

  def update(carry, key):
    params, opt_state = carry
    pos_key, neg_key = jax.random.split(key)
    idx = jnp.concatenate(
      [
        jax.random.randint(pos_key, (half,), 0, num),
        num + jax.random.randint(neg_key, (half,), 0, num),
      ]
    )
    x, y = x_train[idx], y_train[idx]
    (_, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    acc = jnp.mean((logits > 0) == (y > 0.5))
    return (optax.apply_updates(params, updates), opt_state), acc

  (params, _), accs = jax.lax.scan(
    update, (params, tx.init(params)), jax.random.split(batch_key, steps)
  )
  test_logits = critic.apply(params, x_test)
  test_acc = jnp.mean((test_logits > 0) == (y_test > 0.5))
  return test_acc, jnp.mean(accs[-min(steps, 20) :])
