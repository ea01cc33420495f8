"""CIFAR-10 (all classes, labels unused for training): 32x32, 10 stages.

Run:
  python main.py --config=configs/cifar10.py --workdir=runs/cifar10
"""

from configs import svhn


def get_config():
  """CIFAR-10 configuration."""
  config = svhn.get_config()
  config.data.name = "cifar10"
  config.data.split = "train"
  return config
