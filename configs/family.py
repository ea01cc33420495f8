"""The INN family's stage settings, applied to any config: the paper's or WINN's.

configs/default.py holds the texture default (WINN's critic at a CPU-tested learning
rate); configs that want the paper's classifier or WINN's published values call these.
"""


def paper_classifier(config):
  """The paper's INNg stages: cross-entropy classifiers, SGD 0.01, the DCGAN
  discriminator (BatchNorm, leaky ReLU, flatten), Adam 0.02 synthesis (section 4)."""
  config.objective = "inng"
  config.model.norm = "batch"
  config.model.activation = "leaky_relu"
  config.model.pool = "flatten"
  config.train.optimizer = "sgd"
  config.train.learning_rate = 0.01
  config.train.gradient_penalty = 0.0
  config.synthesis.step_size = 0.02
  config.style.content_unit = "pixel"  # the paper's gamma = 0.3 on the per-pixel mean
  config.style.gamma = 0.3
  return config


def winn_critic(config):
  """WINN's published stages (Lee et al., CVPR 2018; kjunelee/WINN): a Wasserstein
  critic with LayerNorm, swish and mean pooling, loss mean D(neg) - mean D(pos) + 10 *
  gradient penalty, Adam 1e-4 with betas (0, 0.9); synthesis Adam 0.01 until the
  negatives' mean score passes a threshold drawn from the positives' scores."""
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
  config.style.content_unit = "patch"  # see innjax/style.py and configs/default.py
  config.style.gamma = 0.1
  return config
