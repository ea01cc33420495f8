"""Texture modelling with the anysize patch head: innjax's recommended recipe.

The paper's geometry (4.1): one exemplar resized to 256x256, a classifier on random
64x64 patches of it and of 320x320 pseudo-negatives (256 + half a patch per side),
samples of any size. Each stage is trained as WINN's Wasserstein critic (LayerNorm,
swish, mean pooling, gradient penalty 10, Adam with betas (0, 0.9)) and synthesis is
Adam 0.01 on the image until the negatives' mean score passes a threshold drawn from
the positives' scores. At equal CPU time this beat the paper's cross-entropy
classifiers by a wide margin on every texture measured (docs/texture_quality.md); the
critic's learning rate 1e-3 measured better than WINN's published 1e-4
(configs/winn_texture.py) at CPU-sized stages. The paper's exact settings are in
configs/texture_paper.py.

Run (a GPU is advised at this size; `python main.py` runs a CPU-sized version):
  python main.py --config=configs/texture.py --workdir=runs/bubbly \
      --config.data.image=/path/to/texture.jpg
  python main.py --config=configs/texture.py --workdir=runs/bubbly \
      --config.data.image=/path/to/texture.jpg --mode=sample --config.sample.size=512,512
  python main.py --config=configs/texture.py --workdir=runs/starry \
      --config.data.image=starry_night.jpg --mode=style --config.style.content=astronaut
"""

from configs import winn_texture


def get_config():
  """WINN's critic at the paper's texture geometry; the exemplar is data.image."""
  config = winn_texture.get_config()
  config.train.learning_rate = 1e-3
  return config
