"""WINN on CelebA faces (Lee et al., CVPR 2018): the cascade of Wasserstein critics.

configs/celeba.py with WINN's critic (LayerNorm, swish, mean pooling), its loss
(mean D(neg) - mean D(pos) + 10 * gradient penalty, Adam with betas (0, 0.9)) and its
synthesis (Adam 0.01 on the image until the negatives' mean score passes a threshold
drawn from the positives' scores).

Run:
  python main.py --config=configs/winn_celeba.py --workdir=runs/winn_celeba
  python main.py --config=configs/winn_celeba.py --config.data.source=folder \
      --config.data.path=/path/to/faces --workdir=runs/winn_faces
"""

from configs import celeba
from configs import family


def get_config():
  """configs/celeba.py with WINN's objective, critic and synthesis."""
  config = family.winn_critic(celeba.get_config())
  config.synthesis.mode = "sequential"
  config.sample.mode = "sequential"
  return config
