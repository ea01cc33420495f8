"""Faces on a CPU: a scaled-down configs/celeba.py that trains in under 30 minutes.

2000 aligned CelebA faces (any folder of face images works), the paper's tight face
crop (the central 64x64 of a half-resolution 89x109 face) resized to 32x32, and each
stage a WINN critic (LayerNorm, swish, mean pooling, gradient penalty 10): the
cross-entropy stages of the paper moved the negatives by a few steps and left noise.
Synthesis moves the previous stage's negatives with the newest critic only
(sequential), as the authors' code does. The paper's settings are in configs/celeba.py.

Run:
  python main.py --config=configs/celeba_cpu.py --workdir=runs/faces_cpu \
      --config.data.path=../shared/data/celeba_subset
  python main.py --config=configs/celeba_cpu.py --workdir=runs/faces_cpu \
      --config.data.path=../shared/data/celeba_subset --mode=sample
"""

from configs import default


def get_config():
  """WINN critics on 32x32 face crops, CPU-sized."""
  config = default.get_config()  # WINN's critic, Adam 0.01 synthesis (see default.py)
  config.num_stages = 16
  config.model.features = (64, 128, 256)
  config.patch.size = 0  # whole images
  config.data.source = "folder"
  config.data.path = "../shared/data/celeba_subset"
  config.data.image_size = 32
  config.data.crop_size = 64  # the paper's central 64x64 of the aligned face
  config.data.channels = 3
  config.train.pos_batch = 50
  config.train.neg_batch = 50
  # 300 updates against 600 pseudo-negatives per critic (was 150 against 200): with
  # 200, each critic fitted its few negatives and fresh samples came out grainier
  # (two-sample test 0.79 against 0.70 now; docs/faces_quality.md).
  config.train.steps_per_stage = 300
  config.train.log_every = 50
  config.pool.negatives_per_stage = 600
  config.pool.capacity = 3000
  config.synthesis.mode = "sequential"
  config.synthesis.batch_size = 100
  config.synthesis.max_steps = 100
  config.synthesis.stop_window = 20
  config.sample.mode = "sequential"
  config.sample.max_steps = 100
  # Sampling forces only 5 steps per critic (training keeps 20 to move its negatives
  # far): past its threshold a critic's score keeps rising, and 20 forced steps carried
  # fresh samples past the real faces' scores into grain (held-back SWD 260 against 124
  # with 5 and 151 with 1; docs/faces_quality.md).
  config.sample.stop_window = 5
  config.sample.num = 64
  config.sample.batch_size = 64
  config.grid_size = 64
  config.evaluate.layers = (-3, -2, -1)
  return config
