"""The INNg classifier: the paper's DCGAN discriminator, and its pure logit function.

The network (paper section 4) is a stack of 5x5 stride-2 convolutions with 64, 128,
256 and 512 channels, BatchNorm after every convolution but the first, leaky ReLU 0.2,
then flatten and one dense unit giving the logit of p(y=+1|x). Everything about it is
configurable through module attributes; `Classifier()` is exactly the paper's network.

The convolution has two numerically equal implementations with the same parameters:

* ``"xla"``: ``lax.conv_general_dilated``, XLA's native convolution. The fast path on
  GPU and TPU.
* ``"im2col"``: the gradients are computed as if the image were cut into its k*k
  strided patches and multiplied by the kernel as one matmul. XLA:CPU computes the
  *input* gradient of a strided native convolution as a convolution with lhs
  dilation, which ran at 4-12 GFLOP/s on a 2-core CPU; the im2col form turns it into
  a matmul and a sum of strided pads (80-100 GFLOP/s). Sampling is entirely input
  gradients, so this matters on CPU. The forward value comes from the native
  convolution on large inputs (where XLA:CPU's forward is the faster one) and from
  patches @ kernel on small ones (see `NATIVE_FORWARD_MIN_SIZE`).

``"auto"`` picks ``im2col`` on CPU and ``xla`` elsewhere. Nothing about training lives
here.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

CONV_IMPLS = ("auto", "xla", "im2col")


def resolve_conv_impl(conv_impl: str) -> str:
  """Returns the concrete convolution implementation for the default backend.

  Args:
    conv_impl: "xla", "im2col" or "auto" (im2col on CPU, xla on GPU/TPU).

  Returns:
    "xla" or "im2col".
  """
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {conv_impl!r}.")
  if conv_impl == "auto":
    return "im2col" if jax.default_backend() == "cpu" else "xla"
  return conv_impl


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """TensorFlow/XLA "SAME" padding for one spatial dimension."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def conv2d(x: jax.Array, kernel: jax.Array, stride: int, impl: str) -> jax.Array:
  """A 2-D "SAME" convolution, NHWC input and HWIO kernel, by the chosen method.

  Args:
    x: (N, H, W, C_in) images.
    kernel: (k, k, C_in, C_out) weights.
    stride: the stride in both spatial dimensions.
    impl: "xla" or "im2col" (resolve "auto" with `resolve_conv_impl` first).

  Returns:
    (N, ceil(H/stride), ceil(W/stride), C_out).
  """
  kh, kw, _, c_out = kernel.shape
  pad_h = _same_padding(x.shape[1], kh, stride)
  pad_w = _same_padding(x.shape[2], kw, stride)
  if impl == "xla":
    return _native_conv(x, kernel, stride, pad_h, pad_w)
  if impl != "im2col":
    raise ValueError(f"impl must be 'xla' or 'im2col', got {impl!r}.")
  return _conv_im2col(x, kernel, stride, pad_h, pad_w)


# The im2col convolution's value comes from XLA's native convolution when its input
# is at least this large: XLA:CPU's forward convolution measured 1.2-2.6x faster than
# patches @ kernel there (the paper network's 16x16 and larger inputs, batch 100),
# and 1.8-60x slower on the deep 8x8 and 4x4 inputs. Gradients never use it.
NATIVE_FORWARD_MIN_SIZE = 16


def _patches_matmul(x, kernel, stride, pad_h, pad_w, patches_fn):
  """`patches_fn(padded x) @ kernel` as a "SAME" convolution."""
  kh, kw, _, c_out = kernel.shape
  out_h = -(-x.shape[1] // stride)
  out_w = -(-x.shape[2] // stride)
  xp = jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
  cols = patches_fn(xp, kh, kw, stride, out_h, out_w)  # (N, oh, ow, kh*kw*C_in)
  # HWIO reshaped row-major gives the same (tap, C_in) ordering as the patches.
  return cols @ kernel.reshape(-1, c_out)


def _native_conv(x, kernel, stride, pad_h, pad_w):
  """XLA's native "SAME"-padded NHWC/HWIO convolution."""
  return lax.conv_general_dilated(
    x,
    kernel,
    window_strides=(stride, stride),
    padding=(pad_h, pad_w),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _conv_im2col(x, kernel, stride, pad_h, pad_w):
  """The "im2col" convolution: its value by whichever method is faster for the shape."""
  if min(x.shape[1], x.shape[2]) >= NATIVE_FORWARD_MIN_SIZE:
    return _native_conv(x, kernel, stride, pad_h, pad_w)
  return _patches_matmul(x, kernel, stride, pad_h, pad_w, _im2col)


def _conv_im2col_jvp(stride, pad_h, pad_w, primals, tangents):
  # Both tangent terms are patches @ kernel, so the gradients jax.grad derives are
  # matmuls: the input gradient a matmul and a sum of strided pads (the transpose of
  # the strided slices), never XLA:CPU's slow convolution with lhs dilation; the
  # kernel gradient patches^T @ output gradient. Terms for inputs that are not
  # differentiated (the kernel while sampling, the images while training) are skipped.
  (x, kernel), (tx, tk) = primals, tangents
  y = _conv_im2col(x, kernel, stride, pad_h, pad_w)
  terms = []
  if not isinstance(tx, SymbolicZero):
    terms.append(_patches_matmul(tx, kernel, stride, pad_h, pad_w, _im2col_by_slices))
  if not isinstance(tk, SymbolicZero):
    terms.append(_patches_matmul(x, tk, stride, pad_h, pad_w, _im2col))
  return y, sum(terms[1:], terms[0]) if terms else jnp.zeros_like(y)


_conv_im2col.defjvp(_conv_im2col_jvp, symbolic_zeros=True)


def _im2col_by_slices(xp, kh, kw, stride, out_h, out_w):
  """Patches as one strided slice per kernel tap, concatenated tap-major."""
  taps = [
    lax.slice(
      xp,
      (0, i, j, 0),
      (
        xp.shape[0],
        i + (out_h - 1) * stride + 1,
        j + (out_w - 1) * stride + 1,
        xp.shape[3],
      ),
      (1, stride, stride, 1),
    )
    for i in range(kh)
    for j in range(kw)
  ]
  return jnp.concatenate(taps, axis=-1)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4, 5))
def _im2col(xp, kh, kw, stride, out_h, out_w):
  """(N, Hp, Wp, C) padded images -> (N, out_h, out_w, kh*kw*C) patches, tap-major.

  The value is one gather with static indices. XLA:CPU compiles the equivalent k*k
  strided slices + concatenate as k*k separate kernels per layer (the classifier's
  step took 4x longer to compile), the gather as one; they run equally fast.
  """
  rows = np.arange(out_h)[:, None] * stride + np.arange(kh)[None, :]  # (oh, kh)
  cols = np.arange(out_w)[:, None] * stride + np.arange(kw)[None, :]  # (ow, kw)
  patches = xp[:, rows[:, None, :, None], cols[None, :, None, :], :]  # (N,oh,ow,kh,kw,C)
  return patches.reshape(*patches.shape[:3], -1)


@_im2col.defjvp
def _im2col_jvp(kh, kw, stride, out_h, out_w, primals, tangents):
  # The same linear map written as strided slices: jax.grad transposes this, not the
  # gather, so the input gradient is a sum of strided pads (one fused kernel at
  # memory speed) instead of a scatter-add. Forward mode keeps working too.
  (xp,), (t,) = primals, tangents
  return (
    _im2col(xp, kh, kw, stride, out_h, out_w),
    _im2col_by_slices(t, kh, kw, stride, out_h, out_w),
  )


def flat_normal(stddev: float = 0.02):
  """N(0, stddev^2) initialiser that draws a flat vector and reshapes it.

  Same distribution as `nn.initializers.normal`; XLA:CPU compiled the 4-D threefry
  draw ~10x slower (3.5 s vs 0.3 s for a 5x5x3x8 kernel), which dominated start-up.
  """

  def init(key, shape, dtype=jnp.float32):
    size = int(np.prod(shape))
    return (stddev * jax.random.normal(key, (size,), dtype)).reshape(shape)

  return init


class Conv(nn.Module):
  """A strided "SAME" convolution with a pluggable implementation.

  Its parameters are named and shaped like `flax.linen.Conv` ("kernel" HWIO, "bias"),
  so variables are interchangeable between implementations.
  """

  features: int
  kernel_size: int = 5
  stride: int = 2
  conv_impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable = flat_normal(0.02)  # the DCGAN's N(0, 0.02^2)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param(
      "kernel",
      self.kernel_init,
      (self.kernel_size, self.kernel_size, x.shape[-1], self.features),
      self.param_dtype,
    )
    bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv2d(x, kernel, self.stride, resolve_conv_impl(self.conv_impl))
    return y + bias


class Classifier(nn.Module):
  """The INNg classifier; the defaults are the paper's DCGAN discriminator.

  Attributes:
    features: output channels of each convolution (its length is the depth).
    kernel_size: square kernel size of every convolution.
    stride: stride of every convolution; inputs must be divisible by
      stride ** len(features).
    negative_slope: leaky ReLU slope.
    channels: expected input channels; inputs are checked against it.
    conv_impl: "auto", "xla" or "im2col" (see module docstring).
    dtype: computation dtype (e.g. jnp.bfloat16 for mixed precision); the logit
      is always returned in float32.
    bn_momentum: BatchNorm running-average momentum.
    norm: "batch" (the paper), "layer" (WINN's critic) or "none" (EBM practice:
      the logit of an image never depends on the rest of its batch).
    activation: "leaky_relu" (the paper, slope `negative_slope`) or "swish"
      (WINN, IGEBM: smooth, so the image gradient has no kinks).
    pool: "flatten" (the paper: flatten, then one dense unit) or "mean" (WINN:
      mean over the last feature map's positions, then the dense unit).
    spectral_norm: divide every weight by its largest singular value (one power
      iteration per training update; IGEBM, SN-GAN), bounding the network's
      Lipschitz constant. Its power-iteration vectors live in "batch_stats".
  """

  features: Sequence[int] = (64, 128, 256, 512)
  kernel_size: int = 5
  stride: int = 2
  negative_slope: float = 0.2
  channels: int = 3
  conv_impl: str = "auto"
  dtype: Any = None
  bn_momentum: float = 0.9
  norm: str = "batch"
  activation: str = "leaky_relu"
  pool: str = "flatten"
  spectral_norm: bool = False

  def check_input(self, x: jax.Array) -> None:
    """Raises ValueError when `x` is not a batch of images this network accepts."""
    if x.ndim != 4:
      raise ValueError(
        f"Classifier expects NHWC images of rank 4, got shape {tuple(x.shape)}"
        " (add a batch axis with x[None] for a single image)."
      )
    if x.shape[-1] != self.channels:
      raise ValueError(
        f"Classifier was built for {self.channels}-channel images but got "
        f"{x.shape[-1]} channels (shape {tuple(x.shape)}); set channels= or "
        "convert the images."
      )
    total = self.stride ** len(self.features)
    if x.shape[1] % total or x.shape[2] % total:
      raise ValueError(
        f"Image size {x.shape[1]}x{x.shape[2]} is not divisible by the total "
        f"stride {total} of {len(self.features)} stride-{self.stride} layers; "
        "resize the images or change the number of layers."
      )

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, return_features: bool = False):
    """Classifies images.

    Args:
      x: (N, H, W, channels) images in [-1, 1].
      train: use batch statistics and update the BatchNorm running averages
        (apply with mutable=["batch_stats"]); False uses the running averages.
      return_features: also return every conv block's activations.

    Returns:
      logits of shape (N,) in float32, or (logits, features) where features is a
      tuple of (N, h, w, c) activations, one per conv block, after the nonlinearity.
    """
    self.check_input(x)
    check_architecture(self.norm, self.activation, self.pool)
    feats = []
    h = x
    for i, width in enumerate(self.features):
      h = self._layer(
        Conv(
          width,
          self.kernel_size,
          self.stride,
          self.conv_impl,
          dtype=self.dtype,
          name=f"conv{i}",
        ),
        h,
        train,
      )
      # The paper has no normalisation after the first convolution.
      if i > 0 and self.norm == "batch":
        h = nn.BatchNorm(
          use_running_average=not train,
          momentum=self.bn_momentum,
          epsilon=1e-5,
          dtype=self.dtype,
          name=f"bn{i}",
        )(h)
      elif i > 0 and self.norm == "layer":
        h = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name=f"ln{i}")(h)
      if self.activation == "swish":
        h = nn.swish(h)
      else:
        h = nn.leaky_relu(h, self.negative_slope)
      feats.append(h)
    if self.pool == "mean":
      h = jnp.mean(h, axis=(1, 2))
    else:
      h = h.reshape((h.shape[0], -1))
    dense = nn.Dense(1, dtype=self.dtype, kernel_init=flat_normal(0.02), name="logit")
    logits = self._layer(dense, h, train)[:, 0].astype(jnp.float32)
    if return_features:
      return logits, tuple(feats)
    return logits

  def _layer(self, layer: nn.Module, h: jax.Array, train: bool) -> jax.Array:
    """Applies `layer`, spectrally normalised when asked.

    The power iteration's vector is updated only while training, so that the
    logit function the sampler ascends stays a fixed, deterministic energy.
    """
    if not self.spectral_norm:
      return layer(h)
    return nn.SpectralNorm(layer, name=f"sn_{layer.name}")(h, update_stats=train)


NORMS = ("batch", "layer", "none")
ACTIVATIONS = ("leaky_relu", "swish")
POOLS = ("flatten", "mean")


def check_architecture(norm: str, activation: str, pool: str) -> None:
  """Raises ValueError naming the choices when an architecture option is unknown."""
  for name, value, choices in (
    ("norm", norm, NORMS),
    ("activation", activation, ACTIVATIONS),
    ("pool", pool, POOLS),
  ):
    if value not in choices:
      raise ValueError(f"model.{name} must be one of {choices}, got {value!r}.")


LogitFn = Callable[[Any, jax.Array], jax.Array]


def make_logit_fn(model: Classifier) -> LogitFn:
  """Returns the pure `logit_fn(variables, x) -> (batch,)` that samplers consume.

  BatchNorm runs in inference mode (running statistics), so the logit of one image
  does not depend on the rest of the batch and the function is a fixed energy.

  Args:
    model: a `Classifier` (or any Linen module with the same call signature).

  Returns:
    logit_fn(variables, x): variables are `{"params", "batch_stats"}` as returned by
    `model.init`; x is (N, H, W, C); returns float32 logits of shape (N,).
  """

  def logit_fn(variables, x):
    return model.apply(variables, x, train=False)

  return logit_fn


def make_feature_fn(
  model: Classifier, layers: Sequence[int] = (-3, -2, -1), append_pooled: bool = False
):
  """Returns `feature_fn(variables, x) -> (N, D)`: chosen conv activations, flattened.

  The unsupervised-feature experiment (paper 4.5) concatenates the last three conv
  layers: for 32x32 inputs that is 8*8*128 + 4*4*256 + 2*2*512 = 14336 dimensions.

  Args:
    model: a `Classifier`.
    layers: indices into the conv blocks (negative counts from the last).
    append_pooled: also append the last conv block averaged over space, as the final
      `features[-1]` columns (the Frechet/KID space of `innjax.evaluate`): one
      forward pass then gives both.

  Returns:
    feature_fn(variables, x) returning float32 features of shape (N, D), or
    (N, D + features[-1]) with `append_pooled`.
  """

  def feature_fn(variables, x):
    _, feats = model.apply(variables, x, train=False, return_features=True)
    chosen = [feats[i] for i in layers]
    columns = [f.reshape(f.shape[0], -1).astype(jnp.float32) for f in chosen]
    if append_pooled:
      columns.append(jnp.mean(feats[-1].astype(jnp.float32), axis=(1, 2)))
    return jnp.concatenate(columns, axis=-1)

  return feature_fn


def init_variables(model: Classifier, key: jax.Array, image_shape) -> dict:
  """Initialises a classifier's variables for images of shape (H, W, C).

  Args:
    model: the classifier.
    key: PRNG key.
    image_shape: (H, W, C) of one input image.

  Returns:
    {"params": ..., "batch_stats": ...}.
  """
  dummy = jnp.zeros((1, *image_shape), jnp.float32)
  # Jitted: eager Flax init dispatches (and compiles) op by op, ~3x slower here.
  variables = jax.jit(lambda k: model.init(k, dummy, train=False))(key)
  # Every architecture has the same two collections, so training, the cascade and
  # checkpoints treat them alike; without BatchNorm or spectral norm the second holds
  # a placeholder (Orbax does not store empty dicts).
  return {
    "params": variables["params"],
    "batch_stats": variables.get("batch_stats") or _no_stats(),
  }


def _no_stats() -> dict:
  """The "batch_stats" of a network that has none: one ignored scalar."""
  return {"unused": jnp.zeros((), jnp.float32)}
