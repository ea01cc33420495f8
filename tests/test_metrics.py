"""Tests for innjax.metrics: network-free sample-quality statistics.

All images are small and generated in the test (plus skimage's bundled
brick texture when scikit-image is installed), so the file runs in a few
seconds on a laptop CPU.
"""

import numpy as np
import pytest

from innjax import baselines
from innjax import metrics as M

# Cheap SWD settings: enough samples for stable comparisons, few seconds total.
SWD_FAST = dict(patches_per_level=1024, num_projections=128)


def make_texture(size, seed=0, channels=3):
  """Stationary synthetic texture in [-1, 1]: 1/f noise plus coloured oblique stripes."""
  rng = np.random.default_rng(seed)
  noise = rng.standard_normal((size, size, channels))
  fy = np.fft.fftfreq(size)[:, None]
  fx = np.fft.fftfreq(size)[None, :]
  radius = np.sqrt(fy**2 + fx**2)
  radius[0, 0] = 1.0
  pink = np.real(
    np.fft.ifft2(np.fft.fft2(noise, axes=(0, 1)) / radius[:, :, None], axes=(0, 1))
  )
  pink *= 0.25 / pink.std()
  yy, xx = np.mgrid[:size, :size]
  stripes = 0.35 * np.sign(np.sin(2 * np.pi * (xx + 0.5 * yy) / 10.0))
  tint = np.array([1.0, 0.7, 0.4, 0.9])[:channels]
  return np.clip(pink + stripes[:, :, None] * tint, -1.0, 1.0)


def random_crops(image, count, size, rng):
  h, w, _ = image.shape
  ys = rng.integers(0, h - size + 1, count)
  xs = rng.integers(0, w - size + 1, count)
  return np.stack([image[y : y + size, x : x + size] for y, x in zip(ys, xs)])


@pytest.fixture(scope="module")
def texture():
  return make_texture(192, seed=0)


# ---------------------------------------------------------------------------
# Laplacian pyramid and descriptors
# ---------------------------------------------------------------------------


def test_laplacian_pyramid_shapes_rank_and_exact_reconstruction():
  rng = np.random.default_rng(0)
  batch = rng.uniform(-1, 1, (2, 37, 45, 3))
  pyr = M.laplacian_pyramid(batch, 4)
  assert [p.shape for p in pyr] == [
    (2, 37, 45, 3),
    (2, 19, 23, 3),
    (2, 10, 12, 3),
    (2, 5, 6, 3),
  ]
  # Collapsing the pyramid (upsample + add, coarse to fine) gives the input back.
  recon = pyr[-1]
  for band in reversed(pyr[:-1]):
    recon = band + M._pyr_up(recon, band.shape[1], band.shape[2])
  np.testing.assert_allclose(recon, batch, atol=1e-12)
  # A single HWC image keeps rank 3 and levels=1 is the identity.
  single = M.laplacian_pyramid(batch[0], 3)
  assert [p.ndim for p in single] == [3, 3, 3]
  np.testing.assert_allclose(single[1], pyr[1][0])
  np.testing.assert_array_equal(M.laplacian_pyramid(batch, 1)[0], batch)


def test_laplacian_pyramid_of_constant_image_has_zero_bands():
  pyr = M.laplacian_pyramid(np.full((33, 20, 2), 0.3), 3)
  assert np.abs(pyr[0]).max() < 1e-12 and np.abs(pyr[1]).max() < 1e-12
  np.testing.assert_allclose(pyr[2], 0.3)


def test_laplacian_pyramid_lowpass_downsamples_with_binomial_filter():
  # An impulse in the interior: the low-pass level at the impulse is the
  # centre tap of the 2-D binomial filter, (6/16)^2.
  img = np.zeros((16, 16, 1))
  img[8, 8, 0] = 1.0
  low = M.laplacian_pyramid(img, 2)[1]
  assert low.shape == (8, 8, 1)
  assert low[4, 4, 0] == pytest.approx((6 / 16) ** 2)
  assert low[4, 5, 0] == pytest.approx((6 / 16) * (1 / 16))
  assert low.sum() == pytest.approx(0.25)  # filter sums to 1, 1 in 4 pixels kept


def test_patch_descriptors_shapes_normalisation_and_rng():
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (3, 40, 40, 3))
  desc = M.patch_descriptors(images, levels=3, patches_per_level=500, rng=1)
  assert len(desc) == 3
  for d in desc:
    assert d.shape == (500, 7 * 7 * 3) and d.dtype == np.float32
    per_channel = d.reshape(500, 7, 7, 3)
    np.testing.assert_allclose(per_channel.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(per_channel.std(axis=(0, 1, 2)), 1.0, atol=1e-3)
  # Same seed -> same descriptors; an advancing Generator -> new positions.
  again = M.patch_descriptors(images, levels=3, patches_per_level=500, rng=1)
  np.testing.assert_array_equal(desc[0], again[0])
  gen = np.random.default_rng(5)
  first = M.patch_descriptors(images, levels=1, patches_per_level=500, rng=gen)[0]
  second = M.patch_descriptors(images, levels=1, patches_per_level=500, rng=gen)[0]
  assert not np.array_equal(first, second)
  # Default level count follows the Progressive GAN rule (coarsest >= 16 px).
  assert len(M.patch_descriptors(np.zeros((64, 64, 1)), patches_per_level=10)) == 3
  assert len(M.patch_descriptors(np.zeros((12, 12, 1)), patches_per_level=10)) == 1


def test_patch_descriptors_are_contiguous_patches_of_the_right_image():
  # Pixel value encodes (image, row, column), so every raw descriptor must be
  # an axis-aligned 7x7 window inside one image.
  n, h, w = 2, 20, 30
  img_id, yy, xx = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), indexing="ij")
  code = (img_id * 10000 + yy * 100 + xx).astype(np.float64)[..., None]
  raw = M.patch_descriptors(
    code, levels=1, patches_per_level=200, rng=3, normalize=False
  )[0]
  patches = raw.reshape(200, 7, 7)
  top_left = patches[:, 0, 0]
  expected = (
    top_left[:, None, None]
    + 100 * np.arange(7)[None, :, None]
    + np.arange(7)[None, None, :]
  )
  np.testing.assert_array_equal(patches, expected)
  rows = (top_left % 10000) // 100
  cols = top_left % 100
  assert rows.min() >= 0 and rows.max() <= h - 7 and cols.max() <= w - 7
  # Round-robin over images, and the whole valid range gets used.
  assert set(np.unique(top_left // 10000)) == {0, 1}
  assert rows.max() >= h - 9 and cols.max() >= w - 9 and rows.min() <= 2


def test_patch_descriptors_accepts_jax_key():
  jax = pytest.importorskip("jax")
  images = np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 1))
  d1 = M.patch_descriptors(images, patches_per_level=50, rng=jax.random.key(0))[0]
  d2 = M.patch_descriptors(images, patches_per_level=50, rng=jax.random.key(0))[0]
  d3 = M.patch_descriptors(images, patches_per_level=50, rng=jax.random.PRNGKey(1))[0]
  np.testing.assert_array_equal(d1, d2)
  assert not np.array_equal(d1, d3)


# ---------------------------------------------------------------------------
# Sliced Wasserstein distance
# ---------------------------------------------------------------------------


def test_sliced_wasserstein_exact_cases():
  rng = np.random.default_rng(0)
  a = rng.standard_normal((400, 5))
  assert M.sliced_wasserstein(a, a, num_projections=64) == 0.0
  # Permuting the rows does not change a set.
  assert M.sliced_wasserstein(a, a[::-1], num_projections=64) == pytest.approx(
    0.0, abs=1e-6
  )
  # In 1-D every projection is +-1, so a translation by 0.3 gives exactly 0.3.
  x = rng.standard_normal((300, 1))
  assert M.sliced_wasserstein(x, x + 0.3, num_projections=8) == pytest.approx(
    0.3, abs=1e-5
  )
  # Unequal set sizes are compared through quantiles.
  u1 = np.linspace(0, 1, 1001)[:, None]
  u2 = np.linspace(0, 1, 333)[:, None] + 0.25
  assert M.sliced_wasserstein(u1, u2, num_projections=4) == pytest.approx(0.25, abs=5e-3)
  # A translation t in d dimensions gives E|t.u| over unit directions u > 0.
  assert M.sliced_wasserstein(a, a + 1.0, num_projections=256) > 0.3


def test_swd_same_texture_much_smaller_than_noise(texture):
  rng = np.random.default_rng(1)
  set_a = random_crops(texture, 6, 64, rng)
  set_b = random_crops(texture, 6, 64, rng)
  noise = np.clip(rng.normal(0.0, 0.5, set_a.shape), -1, 1)
  settings = dict(patches_per_level=2048, num_projections=128, rng=0)
  diff = M.swd(set_a, noise, **settings)
  assert set(diff) == {0, 1, 2, "mean"}
  assert diff["mean"] == pytest.approx(np.mean([diff[0], diff[1], diff[2]]))
  # The set against itself (different patch positions): only sampling noise.
  itself = M.swd(set_a, set_a, **settings)
  assert 0.0 < itself["mean"] < 0.35 * diff["mean"], (itself, diff)
  # Other crops of the same texture: close at every level.  (The coarse
  # residual of a 1/f texture varies from crop to crop, and the finest
  # band is near SWD's 1/sqrt(patches) sampling floor, hence the looser
  # bounds there; the mid band carries the stripes and separates best.)
  same = M.swd(set_a, set_b, **settings)
  assert same["mean"] < 0.6 * diff["mean"], (same, diff)
  assert same[1] < 0.3 * diff[1], (same, diff)
  assert same[0] < 0.7 * diff[0], (same, diff)


def test_swd_single_exemplar_and_normalisation_modes(texture):
  exemplar = texture[:64, :64]
  other_crop = texture[96:192, 80:176]  # a bigger sample of the same texture
  noise = np.clip(np.random.default_rng(2).normal(0, 0.5, (96, 96, 3)), -1, 1)
  same = M.swd(exemplar, other_crop, rng=0, **SWD_FAST)["mean"]
  diff = M.swd(exemplar, noise, rng=0, **SWD_FAST)["mean"]
  assert same < 0.7 * diff
  # 'separate' (Progressive GAN) ignores a global contrast change,
  # 'reference' does not.
  dimmed = 0.5 * other_crop
  sep = M.swd(exemplar, dimmed, levels=2, rng=0, **SWD_FAST)
  ref = M.swd(exemplar, dimmed, levels=2, rng=0, normalize="reference", **SWD_FAST)
  assert ref["mean"] > 2.0 * sep["mean"]


# ---------------------------------------------------------------------------
# Spectra and random-phase noise
# ---------------------------------------------------------------------------


def test_radial_power_spectrum_white_noise_is_flat_at_its_variance():
  rng = np.random.default_rng(0)
  for size in (48, 128):
    noise = rng.normal(0.0, 0.1, (size, size, 2))
    freqs, logp = M.radial_power_spectrum(noise, num_bins=32)
    assert freqs.shape == (32,) and logp.shape == (32, 2)
    assert freqs[0] > 0 and freqs[-1] == pytest.approx(0.5)
    # |FFT|^2 / (H W) has expectation sigma^2 = 1e-2 at every frequency.
    assert abs(np.mean(logp) + 2.0) < 0.05
    assert np.abs(logp + 2.0).max() < 0.6


def test_spectrum_distance_random_phase_close_white_noise_far(texture):
  exemplar = texture[:64, :64]
  rng = np.random.default_rng(3)
  white = np.clip(rng.normal(0.0, exemplar.std(), exemplar.shape), -1, 1)
  rpn_same = baselines.random_phase_noise(exemplar, (64, 64), rng=1)
  rpn_big = baselines.random_phase_noise(exemplar, (96, 128), rng=1)
  d_white = M.spectrum_distance(exemplar, white)
  assert M.spectrum_distance(exemplar, exemplar) == 0.0
  assert M.spectrum_distance(exemplar, rpn_same) < 0.25 * d_white
  assert M.spectrum_distance(exemplar, rpn_big) < 0.25 * d_white  # sizes differ
  assert M.spectrum_distance(exemplar, rpn_big, metric="l2") < 0.25 * M.spectrum_distance(
    exemplar, white, metric="l2"
  )
  assert M.spectrum_distance(
    exemplar, rpn_big, window="hann"
  ) < 0.25 * M.spectrum_distance(exemplar, white, window="hann")
  # Batches are accepted too.
  batch = baselines.random_phase_noise(exemplar, (64, 64), rng=2, num_samples=3)
  assert M.spectrum_distance(exemplar, batch) < 0.25 * d_white


def test_random_phase_noise_properties(texture):
  exemplar = 0.3 * texture[:48, :40]  # small amplitude: no clipping happens
  out = baselines.random_phase_noise(exemplar, (48, 40), rng=0, periodic=False)
  assert out.shape == (48, 40, 3)
  # Same amplitude spectrum and same channel means as the exemplar ...
  amp = lambda x: np.abs(np.fft.fft2(x - x.mean(axis=(0, 1)), axes=(0, 1)))
  np.testing.assert_allclose(amp(out), amp(exemplar), atol=1e-9)
  np.testing.assert_allclose(
    out.mean(axis=(0, 1)), exemplar.mean(axis=(0, 1)), atol=1e-12
  )
  # ... a shared random phase keeps the colour correlations ...
  np.testing.assert_allclose(
    np.corrcoef(out.reshape(-1, 3).T), np.corrcoef(exemplar.reshape(-1, 3).T), atol=1e-9
  )
  # ... but a different image.
  assert np.abs(out - exemplar).mean() > 0.05
  # Larger outputs keep per-channel variance (up to clipping) and range.
  big = baselines.random_phase_noise(
    texture[:64, :64], (100, 130), rng=np.random.default_rng(1)
  )
  assert big.shape == (100, 130, 3) and big.min() >= -1 and big.max() <= 1
  np.testing.assert_allclose(
    big.std(axis=(0, 1)), texture[:64, :64].std(axis=(0, 1)), rtol=0.15
  )
  small = baselines.random_phase_noise(texture[:64, :64], (20, 70), rng=1)
  assert small.shape == (20, 70, 3)
  # Seeds are reproducible, batches are independent samples.
  batch = baselines.random_phase_noise(exemplar, (32, 32), rng=7, num_samples=2)
  assert batch.shape == (2, 32, 32, 3) and not np.allclose(batch[0], batch[1])
  np.testing.assert_array_equal(
    batch, baselines.random_phase_noise(exemplar, (32, 32), rng=7, num_samples=2)
  )


def test_brick_exemplar_random_phase_vs_white_noise():
  data = pytest.importorskip("skimage.data")
  brick = data.brick()[:96, :96].astype(np.float64) / 127.5 - 1.0
  exemplar = brick[:, :, None]
  rng = np.random.default_rng(0)
  white = np.clip(rng.normal(exemplar.mean(), exemplar.std(), (96, 96, 1)), -1, 1)
  rpn = baselines.random_phase_noise(exemplar, (96, 96), rng=0)
  assert M.spectrum_distance(exemplar, rpn) < 0.3 * M.spectrum_distance(exemplar, white)
  held_out = data.brick()[200:296, 300:396].astype(np.float64)[:, :, None] / 127.5 - 1.0
  same = M.swd(exemplar, held_out, rng=0, **SWD_FAST)["mean"]
  assert same < 0.7 * M.swd(exemplar, white, rng=0, **SWD_FAST)["mean"]


# ---------------------------------------------------------------------------
# Histogram distance
# ---------------------------------------------------------------------------


def test_histogram_distance_identical_zero_shift_equals_offset(texture):
  img = 0.5 * texture[:64, :64]  # values in [-0.5, 0.5]: a 0.25 shift is not clipped
  assert M.histogram_distance(img, img) == 0.0
  assert M.histogram_distance(img, img.copy(), bins=None) == 0.0
  assert M.histogram_distance(img, img + 0.25) == pytest.approx(0.25, abs=2 / 256)
  assert M.histogram_distance(img, img + 0.25, bins=None) == pytest.approx(0.25, abs=1e-9)
  # Symmetric, invariant to pixel order, fine with different sizes.
  assert M.histogram_distance(img + 0.1, img) == pytest.approx(
    M.histogram_distance(img, img + 0.1)
  )
  assert M.histogram_distance(img, img[::-1, ::-1]) == 0.0
  assert M.histogram_distance(img, np.tile(img, (2, 3, 1))) == pytest.approx(
    0.0, abs=1e-12
  )
  assert M.histogram_distance(img, 0.5 * img) > 0.01


# ---------------------------------------------------------------------------
# Frechet and kernel distances
# ---------------------------------------------------------------------------


def test_frechet_distance_closed_form_diagonal_gaussians():
  mu_a, var_a = np.array([0.0, 1.0, -2.0]), np.array([1.0, 4.0, 0.25])
  mu_b, var_b = np.array([0.5, 1.0, -1.0]), np.array([2.0, 1.0, 0.25])
  closed = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
  assert M.frechet_distance_from_stats(
    mu_a, np.diag(var_a), mu_b, np.diag(var_b)
  ) == pytest.approx(closed, rel=1e-12)
  assert M.frechet_distance_from_stats(
    mu_a, np.diag(var_a), mu_a, np.diag(var_a)
  ) == pytest.approx(0.0, abs=1e-12)
  # From samples the estimate converges to the closed form.
  rng = np.random.default_rng(0)
  xa = mu_a + np.sqrt(var_a) * rng.standard_normal((40000, 3))
  xb = mu_b + np.sqrt(var_b) * rng.standard_normal((40000, 3))
  assert M.frechet_distance(xa, xb) == pytest.approx(closed, rel=0.03)
  assert M.frechet_distance(xa, xa) == pytest.approx(0.0, abs=1e-9)
  # Two samples of the same Gaussian: only small-sample bias remains.
  assert M.frechet_distance(xa[:20000], xa[20000:]) < 0.01


def test_frechet_distance_matches_sqrtm_for_full_covariances():
  linalg = pytest.importorskip("scipy.linalg")
  rng = np.random.default_rng(1)
  a, b = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
  sa, sb = a @ a.T + 0.1 * np.eye(6), b @ b.T
  mu_a, mu_b = rng.standard_normal(6), rng.standard_normal(6)
  ref = np.sum((mu_a - mu_b) ** 2) + np.trace(
    sa + sb - 2 * np.real(linalg.sqrtm(sa @ sb))
  )
  assert M.frechet_distance_from_stats(mu_a, sa, mu_b, sb) == pytest.approx(ref, rel=1e-8)
  # Rank-deficient covariances (fewer samples than features) stay finite, >= 0.
  feats = rng.standard_normal((5, 20))
  value = M.frechet_distance(feats, feats + 1.0)
  assert np.isfinite(value) and value == pytest.approx(20.0, rel=1e-6)


def test_kernel_distance_same_vs_shifted():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((600, 16))
  y = rng.standard_normal((600, 16))
  same = M.kernel_distance(x, y, num_subsets=10, subset_size=200, rng=0)
  shifted = M.kernel_distance(x, y + 0.5, num_subsets=10, subset_size=200, rng=0)
  assert isinstance(same, M.KIDResult)
  mean, std = same
  assert abs(mean) < 0.05 and std >= 0
  assert shifted.mean > 0.5 and shifted.mean > 10 * abs(same.mean) + 3 * shifted.std
  # Reproducible with a seed; subsets capped by the smaller set.
  assert M.kernel_distance(
    x, y, num_subsets=3, subset_size=50, rng=4
  ) == M.kernel_distance(x, y, num_subsets=3, subset_size=50, rng=4)
  assert np.isfinite(M.kernel_distance(x, y[:3], num_subsets=3).mean)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

IMG = np.zeros((16, 16, 3))
FEATS = np.zeros((10, 4))


@pytest.mark.parametrize(
  "call, message",
  [
    (lambda: M.laplacian_pyramid(np.zeros((16, 16)), 2), "rank"),
    (lambda: M.laplacian_pyramid(np.zeros((1, 1, 16, 16, 3)), 2), "rank"),
    (lambda: M.laplacian_pyramid(np.zeros((0, 16, 16, 3)), 2), "empty"),
    (lambda: M.laplacian_pyramid(IMG, 0), "levels"),
    (lambda: M.laplacian_pyramid(np.full((8, 8, 1), np.nan), 2), "NaN"),
    (lambda: M.patch_descriptors(np.zeros((5, 5, 3))), "smaller than the 7x7 patch"),
    (
      lambda: M.patch_descriptors(IMG, levels=3),
      "level 2 is 4x4, smaller than the 7x7 patch",
    ),
    (lambda: M.patch_descriptors(IMG, patches_per_level=0), "patches_per_level"),
    (lambda: M.patch_descriptors(IMG, rng="seed"), "rng"),
    (lambda: M.sliced_wasserstein(np.zeros(5), np.zeros(5)), "2-D"),
    (lambda: M.sliced_wasserstein(FEATS, np.zeros((10, 5))), "same feature dimension"),
    (lambda: M.sliced_wasserstein(np.zeros((0, 4)), FEATS), "at least 1 row"),
    (lambda: M.swd(IMG, np.zeros((16, 16, 1))), "same number of channels"),
    (lambda: M.swd(IMG, np.zeros((6, 30, 3))), "smaller than the 7x7 patch"),
    (lambda: M.swd(IMG, IMG, levels=4), "smaller than the 7x7 patch"),
    (lambda: M.swd(IMG, IMG, normalize="joint"), "normalize"),
    (lambda: M.radial_power_spectrum(np.zeros((16,))), "rank"),
    (lambda: M.radial_power_spectrum(np.zeros((1, 16, 3))), "at least 2x2"),
    (lambda: M.spectrum_distance(IMG, np.zeros((16, 16, 4))), "same number of channels"),
    (lambda: M.spectrum_distance(IMG, IMG, metric="max"), "metric"),
    (
      lambda: M.histogram_distance(IMG, np.zeros((2, 16, 16, 1))),
      "same number of channels",
    ),
    (lambda: M.histogram_distance(IMG, np.zeros((16, 0, 3))), "empty"),
    (lambda: M.histogram_distance(IMG, IMG, value_range=(1, -1)), "value_range"),
    (
      lambda: baselines.random_phase_noise(np.zeros((2, 16, 16, 3)), (8, 8)),
      "single HWC",
    ),
    (lambda: baselines.random_phase_noise(IMG, (8, 8, 3)), "shape"),
    (lambda: baselines.random_phase_noise(IMG, (0, 8)), "shape"),
    (lambda: M.frechet_distance(FEATS, np.zeros((10, 5))), "same feature dimension"),
    (lambda: M.frechet_distance(np.zeros((1, 4)), FEATS), "at least 2 row"),
    (lambda: M.frechet_distance(np.zeros(4), FEATS), "2-D"),
    (
      lambda: M.frechet_distance_from_stats(
        np.zeros(3), np.eye(3), np.zeros(3), np.eye(2)
      ),
      "covariances",
    ),
    (lambda: M.kernel_distance(FEATS, np.zeros((10, 3))), "same feature dimension"),
    (lambda: M.kernel_distance(FEATS, FEATS, subset_size=1), "subset_size"),
  ],
)
def test_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_exemplar_referenced_swd_grows_as_a_copy_loses_contrast(texture):
  """The texture-quality report's main SWD: lost contrast must cost, and more of it
  must cost more (the per-set standardised SWD barely moves)."""
  exemplar = texture[:96, :96]
  copy = texture[96:, 96:]
  ref = [
    M.swd(exemplar, scale * copy, levels=2, rng=0, normalize="reference", **SWD_FAST)[
      "mean"
    ]
    for scale in (1.0, 0.7, 0.4)
  ]
  assert ref[0] < ref[1] < ref[2] and ref[2] > 2 * ref[0]


def _blocks(seed: int, side: int = 128, block: int = 8) -> np.ndarray:
  """A random black-and-white mosaic of `block`-pixel squares, (side, side, 1)."""
  rng = np.random.default_rng(seed)
  cells = np.where(rng.random((side // block, side // block, 1)) > 0.5, 0.8, -0.8)
  return np.kron(cells, np.ones((block, block, 1)))


def test_gram_distance_sees_structure_that_random_phase_loses():
  """Random phase keeps the mosaic's spectrum; the rectified filters see its edges."""
  mosaic = _blocks(0)
  top, bottom = mosaic[:64], mosaic[64:]
  phase = baselines.random_phase_noise(mosaic, (128, 128), rng=1, num_samples=2)
  same = M.gram_distance(top, bottom)
  scrambled = M.gram_distance(top, phase)
  assert M.gram_distance(top, top)["mean"] == 0.0
  assert set(same) == {3, 7, 15, "mean"}
  assert scrambled["mean"] > 3 * same["mean"]
  assert M.spectrum_distance(top, phase) < 0.5  # the spectrum alone barely tells


def test_gram_distance_counts_lost_contrast_and_refuses_bad_input():
  mosaic = _blocks(2)
  copies = [M.gram_distance(mosaic[:64], s * mosaic[64:])["mean"] for s in (1, 0.7, 0.4)]
  assert copies[0] < copies[1] < copies[2]
  with pytest.raises(ValueError, match="does not fit"):
    M.gram_distance(mosaic[:10, :10], mosaic)
  with pytest.raises(ValueError, match="channel"):
    M.gram_distance(mosaic, np.repeat(mosaic, 3, axis=-1))
