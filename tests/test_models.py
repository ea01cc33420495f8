"""Tests for innjax.models: the paper's architecture, conv implementations, features."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from innjax import models


def _small(conv_impl, **kw):
  return models.Classifier(features=(8, 16, 32), conv_impl=conv_impl, **kw)


def _trained_stats(model, variables, x):
  """Variables whose BatchNorm statistics are not the trivial init values."""
  _, updates = jax.jit(
    lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])
  )(variables, x)
  return {"params": variables["params"], **updates}


def test_default_is_the_papers_dcgan_discriminator():
  model = models.Classifier()
  shapes = jax.eval_shape(
    lambda: models.init_variables(model, jax.random.key(0), (64, 64, 3))
  )
  params = shapes["params"]
  assert [params[f"conv{i}"]["kernel"].shape for i in range(4)] == [
    (5, 5, 3, 64),
    (5, 5, 64, 128),
    (5, 5, 128, 256),
    (5, 5, 256, 512),
  ]
  assert "bn0" not in params  # No BatchNorm after the first convolution.
  assert [params[f"bn{i}"]["scale"].shape for i in (1, 2, 3)] == [(128,), (256,), (512,)]
  assert params["logit"]["kernel"].shape == (4 * 4 * 512, 1)


@pytest.mark.parametrize("size", [32, 64])
def test_logits_and_feature_dims(size):
  model = models.Classifier()
  x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  variables = jax.eval_shape(
    lambda: models.init_variables(model, jax.random.key(0), (size, size, 3))
  )
  logits = jax.eval_shape(models.make_logit_fn(model), variables, x)
  assert logits.shape == (2,) and logits.dtype == jnp.float32
  feats = jax.eval_shape(models.make_feature_fn(model), variables, x)
  s = size // 32
  # Last three conv layers: 8x8x128 + 4x4x256 + 2x2x512 at 32x32 (paper: 14336).
  assert feats.shape == (2, (64 * 128 + 16 * 256 + 4 * 512) * s * s)
  if size == 32:
    assert feats.shape[1] == 14336


@pytest.mark.parametrize("size", [16, 24])
def test_conv_impls_agree_in_value_and_input_gradient(size):
  x = jax.random.normal(jax.random.key(1), (4, size, size, 3))
  xla, im2col = _small("xla"), _small("im2col")
  variables = models.init_variables(xla, jax.random.key(0), (size, size, 3))
  variables = _trained_stats(xla, variables, x)
  outs = []
  for model in (xla, im2col):
    fn = models.make_logit_fn(model)
    grad = jax.jit(jax.grad(lambda x: fn(variables, x).sum()))(x)
    outs.append((jax.jit(fn)(variables, x), grad))
  np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=1e-4, atol=1e-6)
  assert float(jnp.abs(outs[0][1]).sum()) > 0


def test_conv2d_matches_lax_for_odd_sizes_and_stride_one():
  x = jax.random.normal(jax.random.key(0), (2, 9, 7, 3))
  k = jax.random.normal(jax.random.key(1), (3, 3, 3, 5))
  for stride in (1, 2):
    conv = jax.jit(models.conv2d, static_argnums=(2, 3))
    np.testing.assert_allclose(
      conv(x, k, stride, "im2col"), conv(x, k, stride, "xla"), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
  "hw,c_in,kernel_size,stride",
  [
    ((17, 20), 16, 5, 2),  # large input: the native convolution's forward value
    ((16, 16), 3, 4, 2),  # an even kernel
    ((18, 16), 8, 3, 3),  # stride 3
    ((16, 19), 8, 3, 1),  # stride 1
    ((9, 7), 16, 5, 2),  # small input: patches @ kernel forward
  ],
)
def test_im2col_gradients_match_xla_on_every_path(hw, c_in, kernel_size, stride):
  """Value, input and kernel gradients and forward mode agree with lax's convolution,
  whichever of the im2col implementation's internal paths the shape takes."""
  x = jax.random.normal(jax.random.key(0), (2, *hw, c_in))
  k = 0.1 * jax.random.normal(jax.random.key(1), (kernel_size, kernel_size, c_in, 6))
  g = jax.random.normal(
    jax.random.key(2), (2, -(-hw[0] // stride), -(-hw[1] // stride), 6)
  )
  tx = jax.random.normal(jax.random.key(3), x.shape)

  def derivatives(x, k, impl):
    y, vjp = jax.vjp(lambda x, k: models.conv2d(x, k, stride, impl), x, k)
    _, y_dot = jax.jvp(lambda x: models.conv2d(x, k, stride, impl), (x,), (tx,))
    return (y, *vjp(g), y_dot)

  derivatives = jax.jit(derivatives, static_argnums=2)
  for got, want in zip(derivatives(x, k, "im2col"), derivatives(x, k, "xla")):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_auto_resolves_per_backend():
  expected = "im2col" if jax.default_backend() == "cpu" else "xla"
  assert models.resolve_conv_impl("auto") == expected
  with pytest.raises(ValueError, match="conv_impl"):
    models.resolve_conv_impl("cudnn")


def test_train_mode_updates_batch_stats_and_inference_is_per_example():
  model = _small("auto")
  x = jax.random.normal(jax.random.key(0), (6, 16, 16, 3))
  variables = models.init_variables(model, jax.random.key(1), (16, 16, 3))
  new = _trained_stats(model, variables, x)
  before = jax.tree_util.tree_leaves(variables["batch_stats"])
  after = jax.tree_util.tree_leaves(new["batch_stats"])
  assert any(not np.allclose(a, b) for a, b in zip(before, after))
  fn = jax.jit(models.make_logit_fn(model))
  # Inference mode: one example's logit does not depend on the rest of the batch.
  np.testing.assert_allclose(fn(new, x)[:2], fn(new, x[:2]), rtol=1e-5, atol=1e-6)


def test_bfloat16_computation_returns_float32_logits():
  model = _small("auto", dtype=jnp.bfloat16)
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  variables = models.init_variables(model, jax.random.key(1), (16, 16, 3))
  logits = jax.jit(models.make_logit_fn(model))(variables, x)
  assert logits.dtype == jnp.float32
  ref = jax.jit(models.make_logit_fn(_small("auto")))(variables, x)
  np.testing.assert_allclose(logits, ref, atol=5e-2)


@pytest.mark.parametrize(
  "shape, match",
  [
    ((16, 16, 3), "rank 4"),
    ((2, 16, 16, 1), "3-channel"),
    ((2, 20, 20, 3), "divisible"),
  ],
)
def test_bad_inputs_raise_clear_errors(shape, match):
  model = _small("auto")
  variables = models.init_variables(model, jax.random.key(0), (16, 16, 3))
  with pytest.raises(ValueError, match=match):
    model.apply(variables, jnp.zeros(shape))


@pytest.mark.parametrize(
  "norm, activation, pool",
  [
    ("layer", "swish", "mean"),
    ("none", "swish", "flatten"),
    ("none", "leaky_relu", "mean"),
  ],
)
def test_architecture_options_give_per_image_logits(norm, activation, pool):
  """Without BatchNorm an image's logit does not depend on the rest of its batch."""
  model = models.Classifier(
    features=(8, 16), channels=3, norm=norm, activation=activation, pool=pool
  )
  variables = models.init_variables(model, jax.random.key(0), (16, 16, 3))
  x = jax.random.uniform(jax.random.key(1), (4, 16, 16, 3), minval=-1, maxval=1)
  train_logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
  alone = model.apply(variables, x[:1], train=True, mutable=["batch_stats"])[0]
  np.testing.assert_allclose(train_logits[:1], alone, rtol=1e-5, atol=1e-6)
  logit_fn = models.make_logit_fn(model)
  np.testing.assert_allclose(logit_fn(variables, x), train_logits, rtol=1e-5, atol=1e-6)
  assert set(variables) == {"params", "batch_stats"}
  names = set(variables["params"])
  assert ("ln1" in names) == (norm == "layer") and "bn1" not in names


def test_unknown_architecture_option_is_refused():
  with pytest.raises(ValueError, match="model.norm"):
    models.Classifier(features=(8,), channels=1, norm="group").init(
      jax.random.key(0), jnp.zeros((1, 8, 8, 1))
    )


def test_spectral_norm_bounds_each_layers_largest_singular_value():
  model = models.Classifier(features=(8, 16), channels=1, norm="none", spectral_norm=True)
  variables = models.init_variables(model, jax.random.key(0), (16, 16, 1))
  # Scale the raw weights up: spectral norm must undo it.
  variables["params"] = jax.tree_util.tree_map(lambda w: 50.0 * w, variables["params"])
  x = jax.random.normal(jax.random.key(1), (8, 16, 16, 1))
  for _ in range(30):  # power iterations run while training
    _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    variables = {"params": variables["params"], "batch_stats": updates["batch_stats"]}
  assert set(variables["batch_stats"]) == {"sn_conv0", "sn_conv1", "sn_logit"}
  for layer in ("conv0", "conv1", "logit"):
    kernel = variables["params"][layer]["kernel"]
    matrix = np.asarray(kernel).reshape(-1, kernel.shape[-1])
    sigma = np.linalg.svd(matrix, compute_uv=False)[0]
    assert sigma > 10  # the raw weights are far from normalised...
    estimate = variables["batch_stats"][f"sn_{layer}"][f"{layer}/kernel/sigma"]
    np.testing.assert_allclose(float(estimate), sigma, rtol=1e-3)
  # ...and the normalised network is 1-Lipschitz in each layer, so the logit moves
  # at most |dx| * prod(1) times the activations' slopes (<= 1) for a change dx.
  logit_fn = models.make_logit_fn(model)
  dx = 1e-2 * jax.random.normal(jax.random.key(2), x.shape)
  change = np.abs(np.asarray(logit_fn(variables, x + dx) - logit_fn(variables, x)))
  norms = np.sqrt(np.sum(np.asarray(dx) ** 2, axis=(1, 2, 3)))
  assert np.all(change <= norms * 1.01)
