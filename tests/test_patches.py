"""Tests for innjax.patches: the anysize patch head (paper 3.5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from innjax import patches as P


def _images(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), jnp.float32)


def _numpy_patches(images, positions, ph, pw):
  images = np.asarray(images)
  positions = np.asarray(positions)
  if positions.ndim == 2:
    positions = np.broadcast_to(positions, (images.shape[0],) + positions.shape)
  return np.stack(
    [
      images[n, r : r + ph, c : c + pw]
      for n in range(images.shape[0])
      for r, c in positions[n]
    ]
  )


def _numpy_mean_grad(image_hw, channels, positions, weights, ph, pw, average=True):
  """Reference gradient of sum(patches * weights) for one image: mean (or sum) per pixel."""
  total = np.zeros(image_hw + (channels,), np.float64)
  count = np.zeros(image_hw, np.int64)
  for (r, c), w in zip(positions, weights):
    total[r : r + ph, c : c + pw] += w
    count[r : r + ph, c : c + pw] += 1
  if average:
    total = np.where(count[..., None] > 0, total / np.maximum(count, 1)[..., None], 0.0)
  return total, count


# ----------------------------------------------------------------------------------------
# Padding.
# ----------------------------------------------------------------------------------------


def test_padded_size():
  assert P.padded_size((256, 256), 64) == (320, 320)
  assert P.padded_size(512, 64) == (576, 576)
  assert P.padded_size((100, 200), (64, 32)) == (164, 232)
  assert P.padded_size((10, 10), 5) == (14, 14)  # odd patch: 5 // 2 = 2 per side
  assert P.padded_size((10, 10), 1) == (10, 10)


@pytest.mark.parametrize("patch", [64, (8, 6), 5, 1])
def test_padding_round_trip(patch):
  x = _images((2, 40, 30, 3))
  padded = P.pad_images(x, patch)
  assert padded.shape[1:3] == P.padded_size((40, 30), patch)
  np.testing.assert_array_equal(P.crop_padding(padded, patch), x)
  # Cropping a padded canvas of the advertised size yields the target size.
  canvas = jnp.zeros((1,) + P.padded_size((256, 192), patch) + (3,))
  assert P.crop_padding(canvas, patch).shape == (1, 256, 192, 3)


def test_crop_padding_removes_the_border():
  x = jnp.pad(jnp.ones((1, 4, 6, 1)), ((0, 0), (3, 3), (2, 2), (0, 0)))
  np.testing.assert_array_equal(P.crop_padding(x, (7, 5)), jnp.ones((1, 4, 6, 1)))


# ----------------------------------------------------------------------------------------
# Positions.
# ----------------------------------------------------------------------------------------


def test_random_positions_in_bounds_and_uniform():
  h, w, ph, pw = 12, 15, 5, 7  # 8 x 9 = 72 valid corners
  pos = np.asarray(P.random_patch_positions(jax.random.key(0), (h, w), (ph, pw), 36000))
  assert pos.shape == (36000, 2) and pos.dtype == np.int32
  assert pos[:, 0].min() == 0 and pos[:, 0].max() == h - ph
  assert pos[:, 1].min() == 0 and pos[:, 1].max() == w - pw
  counts = np.zeros((h - ph + 1, w - pw + 1))
  np.add.at(counts, (pos[:, 0], pos[:, 1]), 1)
  # Every valid corner is hit, each about 500 times (binomial sd ~22; 6 sd margin).
  assert counts.min() > 500 - 140 and counts.max() < 500 + 140
  # Chi-square with 71 dof: mean 71, sd ~12; 150 is far in the tail.
  chi2 = ((counts - 500.0) ** 2 / 500.0).sum()
  assert chi2 < 150, chi2


def test_random_positions_batch_shape_and_keys():
  key = jax.random.key(1)
  pos = P.random_patch_positions(key, (320, 320), 64, 10, batch_shape=(4,))
  assert pos.shape == (4, 10, 2)
  assert int(pos.min()) >= 0 and int(pos.max()) <= 256
  # Images in a batch get different positions; the same key reproduces them.
  assert not np.array_equal(pos[0], pos[1])
  np.testing.assert_array_equal(
    pos, P.random_patch_positions(key, (320, 320), 64, 10, batch_shape=(4,))
  )
  assert not np.array_equal(
    pos, P.random_patch_positions(jax.random.key(2), (320, 320), 64, 10, batch_shape=(4,))
  )


def test_patch_equal_to_image_has_single_position():
  pos = P.random_patch_positions(jax.random.key(0), (8, 9), (8, 9), 10, batch_shape=(4,))
  np.testing.assert_array_equal(pos, np.zeros((4, 10, 2)))


# ----------------------------------------------------------------------------------------
# Extraction.
# ----------------------------------------------------------------------------------------


def test_extract_matches_numpy_per_image_positions():
  x = _images((3, 20, 17, 2))
  pos = np.array(
    [[[0, 0], [13, 10], [5, 4]], [[2, 9], [2, 9], [0, 10]], [[13, 0], [7, 7], [1, 2]]],
    np.int32,
  )
  out = P.extract_patches(x, pos, (7, 7))
  assert out.shape == (9, 7, 7, 2)
  np.testing.assert_array_equal(out, _numpy_patches(x, pos, 7, 7))
  # Image-major order: row n * P + p is patch p of image n.
  np.testing.assert_array_equal(out[1 * 3 + 2], np.asarray(x)[1, 0:7, 10:17])


def test_extract_matches_numpy_shared_positions_non_square_patch():
  x = _images((2, 16, 24, 3), seed=1)
  pos = np.array([[0, 0], [11, 14], [3, 20 - 6]], np.int32)
  out = P.extract_patches(x, pos, (5, 10))
  np.testing.assert_array_equal(out, _numpy_patches(x, pos, 5, 10))
  # The averaged variant has exactly the same forward values.
  np.testing.assert_array_equal(P.extract_patches_averaged(x, pos, (5, 10)), out)


def test_coverage_counts_matches_numpy():
  pos = np.array([[0, 0], [2, 3], [2, 3], [6, 8], [1, 1]], np.int32)
  _, ref = _numpy_mean_grad((10, 12), 1, pos, np.ones(5), 4, 4)
  np.testing.assert_array_equal(P.coverage_counts(pos, (10, 12), 4), ref)
  batched = P.coverage_counts(np.stack([pos, pos[::-1] * 0]), (10, 12), 4)
  assert batched.shape == (2, 10, 12)
  np.testing.assert_array_equal(batched[0], ref)
  assert int(batched[1].sum()) == 5 * 16 and int(batched[1, 0, 0]) == 5


def test_averaged_gradient_is_mean_of_overlapping_patch_gradients():
  h, w, c, ph, pw = 14, 16, 2, 5, 6
  # Hand-built overlaps: pixel (4, 5) of image 0 lies in all 5 patches (two of them at
  # the same corner), other pixels in 1-4, and the right and bottom strips in none.
  pos = np.array(
    [[[0, 0], [2, 3], [4, 5], [0, 0], [1, 2]], [[8, 9], [3, 3], [4, 4], [3, 4], [0, 9]]],
    np.int32,
  )
  x = _images((2, h, w, c), seed=3)
  weights = _images((10, ph, pw, c), seed=4)

  def loss(x, extract):
    return jnp.sum(extract(x, pos, (ph, pw)) * weights)

  g_avg = jax.grad(loss)(x, P.extract_patches_averaged)
  g_sum = jax.grad(loss)(x, P.extract_patches)
  wts = np.asarray(weights).reshape(2, 5, ph, pw, c)
  for n in range(2):
    ref_mean, count = _numpy_mean_grad((h, w), c, pos[n], wts[n], ph, pw)
    ref_sum, _ = _numpy_mean_grad((h, w), c, pos[n], wts[n], ph, pw, average=False)
    assert count.max() >= 3 and (count == 0).any()  # the test really has overlaps/gaps
    np.testing.assert_allclose(g_avg[n], ref_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g_sum[n], ref_sum, rtol=1e-6, atol=1e-6)
    assert np.all(np.asarray(g_avg[n])[count == 0] == 0)
  # Pixel (4, 5) of image 0 is in all five patches: its gradient is their mean.
  expect = np.mean(
    [wts[0, k, 4 - pos[0, k, 0], 5 - pos[0, k, 1]] for k in range(5)], axis=0
  )
  np.testing.assert_allclose(g_avg[0, 4, 5], expect, rtol=1e-6)


def test_averaged_gradient_under_jit_and_forward_mode():
  pos = jnp.array([[0, 0], [1, 1], [2, 0]], jnp.int32)
  x = _images((1, 6, 6, 1))
  t = _images((1, 6, 6, 1), seed=9)
  f = lambda x, pos: jnp.sum(P.extract_patches_averaged(x, pos, 3) ** 2)

  @jax.jit  # positions traced
  def run(x, pos, t):
    # The stop-gradient form also supports forward mode (a custom_vjp would not).
    return jax.grad(f)(x, pos), jax.jvp(lambda x: f(x, pos), (x,), (t,))[1]

  grad, jvp = run(x, pos, t)
  patch_grads = 2 * _numpy_patches(x, pos, 3, 3)  # d(sum p^2)/dp for each patch
  ref, _ = _numpy_mean_grad((6, 6), 1, np.asarray(pos), patch_grads, 3, 3)
  np.testing.assert_allclose(grad[0], ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jvp, jnp.vdot(grad, t), rtol=1e-5)


@pytest.mark.parametrize("hw", [(256, 256), (512, 512), (96, 160)])
def test_jit_and_image_sizes(hw):
  x = _images((2,) + hw + (3,))
  rng = np.random.default_rng(hw[1])
  pos = np.stack(
    [rng.integers(0, hw[0] - 64 + 1, (2, 6)), rng.integers(0, hw[1] - 64 + 1, (2, 6))], -1
  ).astype(np.int32)
  pos[0, 0] = (hw[0] - 64, hw[1] - 64)  # the far corner is reachable

  @jax.jit
  def run(x, pos):  # positions traced, as in the synthesis head
    patches = P.extract_patches_averaged(x, pos, 64)
    return patches, jax.grad(lambda x: P.extract_patches_averaged(x, pos, 64).sum())(x)

  out, grad = run(x, pos)
  assert out.shape == (12, 64, 64, 3)
  np.testing.assert_array_equal(out, _numpy_patches(x, pos, 64, 64))
  # d sum / d pixel is the mean of k ones: 1 where covered, 0 elsewhere.
  covered = np.asarray(P.coverage_counts(pos, hw, 64)) > 0
  np.testing.assert_allclose(
    grad, np.broadcast_to(covered[..., None], grad.shape), rtol=1e-6
  )


def test_out_of_range_positions_clamped_under_jit():
  x = _images((1, 10, 10, 1))
  far = jnp.array([[8, -3]], jnp.int32)  # clamps to (6, 0) for a 4x4 patch
  out = jax.jit(lambda x, p: P.extract_patches(x, p, 4))(x, far)
  np.testing.assert_array_equal(out[0], np.asarray(x)[0, 6:10, 0:4])
  counts = jax.jit(lambda p: P.coverage_counts(p, (10, 10), 4))(far)
  assert int(counts[6:10, 0:4].sum()) == 16 and int(counts.sum()) == 16


def test_sample_patches_come_from_the_images():
  n, h, w = 4, 12, 11
  # Encode (image, row, col) in the pixel value so each patch can be traced back.
  idx = np.arange(n)[:, None, None] * 10000 + np.arange(h)[:, None] * 100 + np.arange(w)
  images = jnp.asarray(np.stack([idx, -idx], -1), jnp.float32)
  sample = jax.jit(
    P.sample_patches, static_argnums=(2, 3)
  )  # as the training step uses it
  out = np.asarray(sample(jax.random.key(3), images, (3, 4), 2000))
  assert out.shape == (2000, 3, 4, 2)
  seen_images, seen_corners = set(), set()
  for patch in out.astype(np.int64):
    k, r, c = patch[0, 0, 0] // 10000, patch[0, 0, 0] // 100 % 100, patch[0, 0, 0] % 100
    assert 0 <= r <= h - 3 and 0 <= c <= w - 4
    np.testing.assert_array_equal(patch, np.asarray(images)[k, r : r + 3, c : c + 4])
    seen_images.add(int(k))
    seen_corners.add((int(r), int(c)))
  assert seen_images == set(range(n))
  assert len(seen_corners) == (h - 2) * (w - 3)  # 80 corners, 2000 draws


# ----------------------------------------------------------------------------------------
# The synthesis head.
# ----------------------------------------------------------------------------------------


def test_patches_for_size():
  assert P.patches_for_size((256, 256), 64) == 10
  assert P.patches_for_size((512, 512), 64) == 40
  assert P.patches_for_size((320, 320), 64, padded=True) == 10
  assert P.patches_for_size((576, 576), 64, padded=True) == 40
  assert P.patches_for_size((256, 512), 64, base=5) == 10
  assert P.patches_for_size((64, 64), 64) == 1  # 0.625 rounds to 1
  assert P.patches_for_size((16, 16), 64) == 1  # never zero


def test_make_patch_logit_fn_shape_values_and_gradient():
  n, hw, ph, num = 4, (40, 48), 8, 10
  weight = _images((ph, ph, 1), seed=5)

  def logit_fn(variables, patches):  # analytic classifier: weighted patch sum
    return variables["scale"] * jnp.sum(patches * weight, axis=(1, 2, 3))

  variables = {"scale": jnp.float32(0.5)}
  fn = P.make_patch_logit_fn(logit_fn, patch_size=ph, patches_per_image=num)
  assert fn.needs_key
  x = _images((n,) + hw + (1,), seed=6)
  key = jax.random.key(11)
  fn_sum = P.make_patch_logit_fn(logit_fn, ph, num, average_overlaps=False)

  @jax.jit  # one compilation for everything below: the threefry kernel is slow to build
  def run(x, key):
    energy = lambda f: lambda x: jnp.sum(f(variables, x, key))
    return fn(variables, x, key), jax.grad(energy(fn))(x), jax.grad(energy(fn_sum))(x)

  logits, grad, grad_sum = run(x, key)
  assert logits.shape == (n * num,)

  # Documented contract: positions are random_patch_positions(key, ..., batch_shape=(N,)).
  pos = np.asarray(P.random_patch_positions(key, hw, ph, num, batch_shape=(n,)))
  ref_patches = _numpy_patches(x, pos, ph, ph)
  np.testing.assert_allclose(
    logits, 0.5 * (ref_patches * np.asarray(weight)).sum((1, 2, 3)), rtol=1e-5, atol=1e-5
  )

  for i in range(n):
    ref, _ = _numpy_mean_grad(hw, 1, pos[i], [0.5 * np.asarray(weight)] * num, ph, ph)
    np.testing.assert_allclose(grad[i], ref, rtol=1e-5, atol=1e-6)

  # Without averaging the gradient is the sum over the covering patches.
  for i in range(n):
    ref, _ = _numpy_mean_grad(
      hw, 1, pos[i], [0.5 * np.asarray(weight)] * num, ph, ph, False
    )
    np.testing.assert_allclose(grad_sum[i], ref, rtol=1e-5, atol=1e-6)

  # A fresh key per step gives fresh patches.
  assert not np.allclose(run(x, jax.random.key(12))[0], logits)


def test_make_patch_logit_fn_mean_classifier_and_auto_count():
  # logit = mean of the patch: every covered pixel's averaged gradient is 1/(ph*pw*C).
  fn = P.make_patch_logit_fn(lambda v, p: p.mean(axis=(1, 2, 3))[:, None], 64, None)
  x = _images((4, 320, 320, 3))
  key = jax.random.key(0)
  # Eager on purpose (the other head test runs under jit).
  value, grad = jax.value_and_grad(lambda x: fn(None, x, key).sum())(x)
  out = fn(None, x, key)
  assert out.shape == (40,)  # 320x320 = 256 + padding -> 10 per image; (N*P, 1) flattened
  pos = P.random_patch_positions(key, (320, 320), 64, 10, batch_shape=(4,))
  counts = np.asarray(P.coverage_counts(pos, (320, 320), 64))
  covered = np.broadcast_to(counts[..., None] > 0, x.shape)
  g = np.asarray(grad)
  np.testing.assert_allclose(g[covered], 1.0 / (64 * 64 * 3), rtol=1e-5)
  assert np.all(g[~covered] == 0)
  np.testing.assert_allclose(value, out.sum(), rtol=1e-5)
  big = jax.ShapeDtypeStruct((2, 576, 576, 3), jnp.float32)  # 512 + padding -> 40 each
  assert jax.eval_shape(fn, None, big, key).shape == (2 * 40,)


# ----------------------------------------------------------------------------------------
# Errors.
# ----------------------------------------------------------------------------------------


def test_errors():
  x = jnp.zeros((2, 16, 16, 3))
  key = jax.random.key(0)
  pos = jnp.zeros((3, 2), jnp.int32)
  with pytest.raises(ValueError, match="patch_size"):
    P.extract_patches(x, pos, 17)
  with pytest.raises(ValueError, match="patch_size"):
    P.extract_patches_averaged(x, pos, (8, 20))
  with pytest.raises(ValueError, match="patch_size"):
    P.random_patch_positions(key, (16, 16), 32, 4)
  with pytest.raises(ValueError, match="patch_size"):
    P.sample_patches(key, x, 32, 4)
  with pytest.raises(ValueError, match="patch_size"):
    P.extract_patches(x, pos, 0)
  with pytest.raises(ValueError, match="patch_size"):
    P.padded_size((16, 16), -2)
  with pytest.raises(ValueError, match="patch_size"):
    P.make_patch_logit_fn(lambda v, p: p, patch_size=(8, 8, 8))
  with pytest.raises(ValueError, match="images"):
    P.extract_patches(x[0], pos, 4)
  with pytest.raises(ValueError, match="images"):
    P.crop_padding(x[..., 0], 4)
  with pytest.raises(ValueError, match="images"):
    P.sample_patches(key, x[0], 4, 4)
  with pytest.raises(ValueError, match="images"):
    P.crop_padding(x, 40)
  with pytest.raises(ValueError, match="num_patches"):
    P.random_patch_positions(key, (16, 16), 4, 0)
  with pytest.raises(ValueError, match="num_patches"):
    P.sample_patches(key, x, 4, -1)
  with pytest.raises(ValueError, match="image_hw"):
    P.random_patch_positions(key, (0, 16), 4, 3)
  with pytest.raises(ValueError, match="target_hw"):
    P.padded_size((0, 16), 4)
  with pytest.raises(ValueError, match="patches_per_image"):
    P.make_patch_logit_fn(lambda v, p: p, 8, patches_per_image=0)
  with pytest.raises(ValueError, match="base"):
    P.patches_for_size((256, 256), 64, base=0)
  with pytest.raises(ValueError, match="positions"):
    P.extract_patches(x, jnp.array([[0, 13]]), 4)  # out of bounds when concrete
  with pytest.raises(ValueError, match="positions"):
    P.extract_patches(x, jnp.zeros((3, 4, 2), jnp.int32), 4)  # 3 != 2 images
  with pytest.raises(ValueError, match="positions"):
    P.extract_patches(x, jnp.zeros((4, 2), jnp.float32), 4)
  fn = P.make_patch_logit_fn(lambda v, p: p.mean(axis=(1, 2)), 4, 3)  # (batch, C) logits
  with pytest.raises(ValueError, match="logit_fn"):
    jax.eval_shape(fn, None, x, key)
  with pytest.raises(ValueError, match="images"):
    jax.eval_shape(fn, None, x[0], key)
  with pytest.raises(ValueError, match="patch_size"):
    jax.eval_shape(fn, None, jnp.zeros((1, 3, 16, 3)), key)
