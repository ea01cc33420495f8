"""A labelled image set whose classes a small CNN learns in a few dozen steps."""

import numpy as np


def stripes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """16x16 gray: horizontal (label 0) or vertical (label 1) stripes of period 4, noisy.

  Args:
    n: number of images.
    seed: seeds the labels and the noise.

  Returns:
    (uint8 images (n, 16, 16, 1), int labels (n,)).
  """
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n)
  profile = np.where(np.arange(16) % 4 < 2, 200.0, 55.0)
  horizontal = np.broadcast_to(profile[:, None], (16, 16))
  images = np.where(labels[:, None, None] == 0, horizontal, horizontal.T)
  images = images + rng.normal(0, 25, images.shape)
  return np.clip(images, 0, 255).astype(np.uint8)[..., None], labels
