"""A tiny patch-head (texture) configuration for tests and smoke runs.

Run:
  python main.py --config=configs/tiny_texture.py --workdir=/tmp/innjax_tiny_texture
  python main.py --config=configs/tiny_texture.py --workdir=/tmp/innjax_tiny_texture \
      --mode=sample --config.sample.size=48,64
"""

from configs import texture


def get_config():
  """16x16 patches of a 32x32 gray exemplar, two-layer classifier, two short stages."""
  config = texture.get_config()
  config.num_stages = 2
  config.model.features = (8, 16)
  config.data.image_size = 32
  config.data.channels = 1
  config.patch.size = 16
  config.train.pos_batch = 8
  config.train.neg_batch = 8
  config.train.steps_per_stage = 10
  config.train.log_every = 5
  config.pool.negatives_per_stage = 8
  config.pool.capacity = 24
  config.synthesis.batch_size = 8
  config.synthesis.max_steps = 10
  config.synthesis.stop_window = 1
  config.sample.stop_window = 1
  config.sample.num = 2
  config.sample.batch_size = 2
  config.sample.max_steps = 10
  config.style.steps = 10
  config.style.max_size = 48
  config.grid_size = 8
  config.evaluate.layers = (-2, -1)
  return config
