"""CelebA faces, the paper's settings (section 4.3): center 64x64 crops, 12 stages.

Run (the first run needs celeb_a prepared by tensorflow-datasets):
  python main.py --config=configs/celeba.py --workdir=runs/celeba
  python main.py --config=configs/celeba.py --workdir=runs/celeba --mode=sample
To train on a folder of face images instead:
  python main.py --config=configs/celeba.py --config.data.source=folder \
      --config.data.path=/path/to/faces --workdir=runs/faces
"""

from configs import svhn


def get_config():
  """CelebA configuration."""
  config = svhn.get_config()
  config.num_stages = 12
  config.data.name = "celeb_a"
  config.data.split = "train"
  config.data.image_size = 64
  return config
