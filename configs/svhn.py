"""SVHN, the paper's settings (section 4.4): 32x32, 10 stages, DCGAN discriminator.

Positives are SVHN train+extra (604k images) read with tensorflow-datasets; batches of
50 positives + 50 pseudo-negatives, classifier SGD lr 0.01, synthesis Adam lr 0.02
beta1 0.5, early stop at the decision boundary.

Run (the first run downloads and prepares svhn_cropped, which needs internet):
  python main.py --config=configs/svhn.py --workdir=runs/svhn
  python main.py --config=configs/svhn.py --workdir=runs/svhn --mode=sample
"""

from configs import default
from configs import family


def get_config():
  """SVHN configuration."""
  config = default.get_config()
  family.paper_classifier(config)  # the paper's classifiers, not the texture default
  config.num_stages = 10
  config.model.features = (64, 128, 256, 512)
  config.patch.size = 0  # whole 32x32 images, no patch head
  config.data.source = "tfds"
  config.data.name = "svhn_cropped"
  config.data.split = "train+extra"
  config.data.image_size = 32
  config.data.channels = 3
  config.train.steps_per_stage = 2000
  config.train.log_every = 100
  config.pool.negatives_per_stage = 10000
  config.pool.capacity = 100000
  config.synthesis.mode = "sum"
  config.synthesis.step_size = 0.02
  config.synthesis.stop_window = 1
  config.sample.stop_window = 1
  config.synthesis.max_steps = 500
  config.synthesis.batch_size = 100
  config.sample.max_steps = 500
  config.sample.num = 100
  config.sample.batch_size = 100
  config.grid_size = 64
  return config
