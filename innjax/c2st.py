"""Classifier two-sample test (C2ST): can a fresh critic tell two image sets apart?

A small CNN, trained from scratch with a fixed recipe and seed, learns to separate
random crops of one set (e.g. the texture exemplar) from random crops of another (a
method's samples). Its accuracy on held-out crops is the statistic: 0.5 means the
critic found nothing to tell them apart by, 1.0 that they are trivially different
(Lopez-Paz and Oquab, ICLR 2017). Unlike distances on fixed descriptors it cannot be
flattered by a normalisation: whatever differs, contrast, colour, left-over noise or
missing structure, a critic can learn.

Held-out crops come from regions disjoint from the training crops: every image is
split into a left and a right part along its width, training crops are cut from the
left parts and test crops from the right parts, so the critic cannot score by
recognising pixels it trained on. The critic is never one of the model's own
classifiers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


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
  """The fixed C2ST critic: three 3x3 stride-2 convolutions, swish, mean pool, dense."""
  features: tuple = (32, 64, 128)

  @nn.compact
  def __call__(self, x):
    for width in self.features:
      x = nn.swish(nn.Conv(width, (3, 3), strides=(2, 2))(x))
    return nn.Dense(1)(jnp.mean(x, axis=(1, 2)))[:, 0]


def _as_nhwc(x: Any, name: str) -> np.ndarray:
  arr = np.asarray(x, np.float32)
  if arr.ndim == 3:
    arr = arr[None]
  if arr.ndim != 4 or arr.size == 0:
    raise ValueError(f"{name} must be NHWC images or one HWC image, got shape "
                     f"{arr.shape}.")
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name} contains NaN or infinite values.")
  return arr


def split_columns(images: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
  """(left part, right part) of each image along its width, each >= `crop` wide."""
  width = images.shape[2]
  if images.shape[1] < crop or width < 2 * crop:
    raise ValueError(
        f"images of {images.shape[1]}x{width} are too small for {crop}x{crop} crops "
        f"from two disjoint parts: they need a height >= {crop} and a width >= "
        f"{2 * crop}; use a smaller crop.")
  half = width // 2
  return images[:, :, :half], images[:, :, half:]


def random_crops(rng: np.random.Generator, images: np.ndarray, crop: int,
                 num: int) -> np.ndarray:
  """`num` crops of `crop` x `crop` at uniform positions, images taken round-robin."""
  n, h, w, _ = images.shape
  idx = np.arange(num) % n
  ys = rng.integers(0, h - crop + 1, num)
  xs = rng.integers(0, w - crop + 1, num)
  return np.stack([images[i, y:y + crop, x:x + crop] for i, y, x in zip(idx, ys, xs)])


def c2st(reference: Any, images: Any, crop: int = 32, num_train: int = 1024,
         num_test: int = 512, steps: int = 400, batch_size: int = 64,
         learning_rate: float = 1e-3, seed: int = 0) -> C2STResult:
  """The held-out accuracy of a fresh critic separating `reference` from `images`.

  Args:
    reference: NHWC images (or one HWC image), e.g. the exemplar, in [-1, 1].
    images: the set to test, same channels; sizes may differ.
    crop: crop side; both sets need a height >= crop and a width >= 2 * crop.
    num_train, num_test: crops per set to train on / to test on.
    steps: Adam updates of the critic.
    batch_size: crops per update, half from each set.
    learning_rate: Adam's step.
    seed: crops, initialisation and batches; fixed, so that methods compared with
      the same seed see the same recipe.

  Returns:
    A `C2STResult`.
  """
  ref = _as_nhwc(reference, "reference")
  other = _as_nhwc(images, "images")
  if ref.shape[-1] != other.shape[-1]:
    raise ValueError(f"reference and images must have the same channels, got "
                     f"{ref.shape[-1]} and {other.shape[-1]}.")
  for name, value in (("crop", crop), ("num_train", num_train), ("num_test", num_test),
                      ("steps", steps), ("batch_size", batch_size)):
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be a positive integer, got {value!r}.")
  rng = np.random.default_rng(seed)
  ref_train, ref_test = split_columns(ref, crop)
  other_train, other_test = split_columns(other, crop)
  x_train = np.concatenate([random_crops(rng, ref_train, crop, num_train),
                            random_crops(rng, other_train, crop, num_train)])
  y_train = np.concatenate([np.ones(num_train), np.zeros(num_train)]).astype(np.float32)
  x_test = np.concatenate([random_crops(rng, ref_test, crop, num_test),
                           random_crops(rng, other_test, crop, num_test)])
  y_test = np.concatenate([np.ones(num_test), np.zeros(num_test)]).astype(np.float32)
  accuracy, train_accuracy = _train_and_test(
      jnp.asarray(x_train), jnp.asarray(y_train), jnp.asarray(x_test),
      jnp.asarray(y_test), jax.random.key(seed), steps, batch_size,
      learning_rate)
  return C2STResult(accuracy=float(accuracy), train_accuracy=float(train_accuracy),
                    num_test=num_test)


def _train_and_test(x_train, y_train, x_test, y_test, key, steps, batch_size,
                    learning_rate):
  """Trains the critic with balanced batches; returns (test acc, last train acc)."""
  critic = Critic()
  tx = optax.adam(learning_rate)
  init_key, batch_key = jax.random.split(key)
  params = critic.init(init_key, x_train[:1])
  half = batch_size // 2 or 1
  num = x_train.shape[0] // 2

  def loss_fn(params, x, y):
    logits = critic.apply(params, x)
    return optax.sigmoid_binary_cross_entropy(logits, y).mean(), logits

  def update(carry, key):
    params, opt_state = carry
    pos_key, neg_key = jax.random.split(key)
    idx = jnp.concatenate([jax.random.randint(pos_key, (half,), 0, num),
                           num + jax.random.randint(neg_key, (half,), 0, num)])
    x, y = x_train[idx], y_train[idx]
    (_, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    acc = jnp.mean((logits > 0) == (y > 0.5))
    return (optax.apply_updates(params, updates), opt_state), acc

  @jax.jit
  def run(params, key):
    (params, _), accs = jax.lax.scan(update, (params, tx.init(params)),
                                     jax.random.split(key, steps))
    test_logits = critic.apply(params, x_test)
    test_acc = jnp.mean((test_logits > 0) == (y_test > 0.5))
    return test_acc, jnp.mean(accs[-min(steps, 20):])

  return jax.device_get(run(params, batch_key))
