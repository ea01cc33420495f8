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


def get_config():
  """configs/celeba.py with WINN's objective, critic and synthesis."""
  config = celeba.get_config()
  config.objective = "wasserstein"
  config.model.norm = "layer"
  config.model.activation = "swish"
  config.model.pool = "mean"
  config.train.optimizer = "adam"
  config.train.learning_rate = 1e-4
  config.train.beta1 = 0.0
  config.train.beta2 = 0.9
  config.train.gradient_penalty = 10.0
  config.synthesis.step_size = 0.01
  config.synthesis.energy = "sequential"
  config.sample.mode = "sequential"
  return config
