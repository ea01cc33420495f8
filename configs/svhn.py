"""SVHN, the paper's settings (section 4.4): 32x32, 10 stages, DCGAN discriminator.

Positives are SVHN train+extra (604k images) read with tensorflow-datasets; batches of
50 positives + 50 pseudo-negatives, classifier SGD lr 0.01, synthesis Adam lr 0.02
beta1 0.5, early stop at the decision boundary.

Run (the first run downloads and prepares svhn_cropped, which needs internet):
  python main.py --config=configs/svhn.py --workdir=runs/svhn
  python main.py --config=configs/svhn.py --workdir=runs/svhn --mode=sample
"""

from configs import default


def get_config():
  """SVHN configuration."""
  config = default.get_config()
  paper_classifier(config)
  config.num_stages = 10
  config.model.features = (64, 128, 256, 512)
  config.patch.size = 0                # whole 32x32 images, no patch head
  config.data.source = "tfds"
  config.data.name = "svhn_cropped"
  config.data.split = "train+extra"
  config.data.image_size = 32
  config.data.channels = 3
  config.train.steps_per_stage = 2000
  config.train.log_every = 100
  config.pool.negatives_per_stage = 10000
  config.pool.capacity = 100000
  config.synthesis.energy = "sum"
  config.synthesis.step_size = 0.02
  config.synthesis.stop_window = 1
  config.synthesis.max_steps = 500
  config.synthesis.batch_size = 100
  config.sample.max_steps = 500
  config.sample.num = 100
  config.sample.batch_size = 100
  config.grid_size = 64
  return config


def paper_classifier(config):
  """The paper's INNg stages on `config`: cross-entropy classifiers, SGD 0.01, the DCGAN
  discriminator (BatchNorm, leaky ReLU, flatten), Adam 0.02 synthesis.

  configs/default.py holds the texture default (WINN's critic); the whole-image
  configs keep the paper's settings.
  """
  config.objective = "inng"
  config.model.norm = "batch"
  config.model.activation = "leaky_relu"
  config.model.pool = "flatten"
  config.train.optimizer = "sgd"
  config.train.learning_rate = 0.01
  config.train.gradient_penalty = 0.0
  config.synthesis.step_size = 0.02
  return config
