"""A tiny configuration for tests and smoke runs: seconds per stage on a CPU.

Run:
  python main.py --config=configs/tiny.py --workdir=/tmp/innjax_tiny
"""

from configs import default
from configs import family


def get_config():
  """Two-layer 16x16 classifier, three short stages, the paper's INNg objective."""
  config = family.paper_classifier(default.get_config())
  config.num_stages = 3
  config.model.features = (8, 16)
  config.patch.size = 0  # whole images: random crops of the texture
  config.data.source = "skimage"
  config.data.name = "brick"
  config.data.image_size = 16
  config.data.channels = 1
  config.data.num_crops = 200
  config.train.pos_batch = 8
  config.train.neg_batch = 8
  config.train.steps_per_stage = 10
  config.train.log_every = 5
  config.pool.negatives_per_stage = 16
  config.pool.capacity = 48
  config.synthesis.batch_size = 8
  config.synthesis.max_steps = 10
  config.synthesis.stop_window = 1
  config.sample.stop_window = 1
  config.synthesis.mode = "sum"  # the default is sequential; tests cover both
  config.sample.num = 8
  config.sample.batch_size = 8
  config.sample.max_steps = 10
  config.grid_size = 16
  config.evaluate.layers = (-2, -1)  # the tiny classifier has two conv layers
  config.evaluate.num_labelled = 40
  config.evaluate.val_size = 60
  config.evaluate.num_draws = 3
  config.evaluate.select_draws = 1
  config.evaluate.batch_size = 64
  config.evaluate.num_samples = 16
  return config
