"""WINN textures (Lee, Xu, Fan and Tu, CVPR 2018): each stage a Wasserstein critic.

The introspective cascade of configs/texture.py with WINN's changes:
* each stage trains a critic on mean D(neg) - mean D(pos) + 10 * gradient penalty,
  with Adam (betas 0, 0.9) instead of SGD on cross-entropy;
* the critic has LayerNorm, swish and mean pooling instead of BatchNorm, leaky ReLU
  and flatten (kjunelee/WINN's model files);
* synthesis is Adam 0.01 on the image, stopping when the negatives' mean score passes
  a threshold drawn between the smallest and largest score of a batch of positives.

These are WINN's published values at the paper's scale (configs/texture_paper.py's
geometry: 256x256 exemplar, 64x64 patches, 20 stages of 500 critic updates).
configs/texture.py is the same recipe with the critic's learning rate that measured
best at CPU scale.

Run:
  python main.py --config=configs/winn_texture.py --workdir=runs/winn_bubbly \
      --config.data.image=/path/to/texture.jpg
"""

from configs import family
from configs import texture_paper


def get_config():
  """configs/texture_paper.py with WINN's objective, critic and synthesis."""
  return family.winn_critic(texture_paper.get_config())
