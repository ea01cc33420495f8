"""Tests for innjax.c2st: the classifier two-sample test on sets with known answers."""

import numpy as np
import pytest

from innjax import c2st

# One recipe for every test: the critic compiles once (the shapes do not depend on
# the number or size of the images).
FAST = dict(crop=16, steps=200, num_train=512, num_test=512)


def _noise(seed, n=4, side=64, channels=1, std=0.3):
  rng = np.random.default_rng(seed)
  return np.clip(std * rng.standard_normal((n, side, side, channels)), -1, 1)


def test_two_draws_of_one_noise_are_indistinguishable():
  # Many images: test crops from few cells overlap and are strongly correlated, so
  # the accuracy's spread is set by the number of distinct pixels, not of crops.
  result = c2st.c2st(_noise(0, n=16), _noise(1, n=16), **FAST)
  assert abs(result.accuracy - 0.5) < 0.06


def test_noise_against_a_constant_image_is_trivially_separable():
  constant = np.full((2, 64, 64, 1), 0.2)
  result = c2st.c2st(_noise(0), constant, **FAST)
  assert result.accuracy > 0.97 and result.train_accuracy > 0.97


def test_lost_contrast_is_detected():
  """What a per-set standardised statistic cannot see: the same noise at lower contrast."""
  result = c2st.c2st(_noise(0), 0.5 * _noise(1), **FAST)
  assert result.accuracy > 0.9


def test_bad_inputs_get_messages():
  with pytest.raises(ValueError, match="too small"):
    c2st.c2st(_noise(0, side=16), _noise(1, side=16), crop=16)
  with pytest.raises(ValueError, match="same channels"):
    c2st.c2st(_noise(0), _noise(1, channels=3), crop=16)
  with pytest.raises(ValueError, match="NaN"):
    c2st.c2st(_noise(0), np.full((1, 64, 64, 1), np.nan), crop=16)


def test_sets_of_whole_images_same_and_different():
  same = c2st.c2st_sets(_noise(0, n=200, side=16), _noise(1, n=200, side=16), steps=200)
  assert abs(same.accuracy - 0.5) < 0.1 and same.num_test == 100
  dimmer = c2st.c2st_sets(
    _noise(0, n=200, side=16), 0.3 * _noise(1, n=200, side=16), steps=200
  )
  assert dimmer.accuracy > 0.9
  with pytest.raises(ValueError, match="same image shape"):
    c2st.c2st_sets(_noise(0, side=16), _noise(1, side=32))
