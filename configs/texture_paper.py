"""Texture modelling with the anysize patch head, at the paper's exact settings (4.1).

This is INNg as the paper describes it: cross-entropy classifiers (the DCGAN
discriminator with BatchNorm), SGD 0.01, Adam 0.1 synthesis stopped at the newest
classifier's boundary. Kept so that the paper's numbers stay one config away;
configs/texture.py is the recipe innjax recommends (WINN's critic), which measured far
better at equal CPU time (docs/texture_quality.md).

One exemplar image (a path, or a texture bundled with scikit-image: brick, gravel,
grass) is resized to 256x256 and used as the positive; the classifier sees random
64x64 patches of it and of 320x320 pseudo-negatives (256 + half a patch per side).
Synthesis: Adam lr 0.1, beta1 0.5, early stop on the mean P(real) over 20 steps.

Run (a GPU is advised; a CPU takes hours at these settings):
  python main.py --config=configs/texture_paper.py --workdir=runs/bubbly \
      --config.data.image=/path/to/texture.jpg
  python main.py --config=configs/texture_paper.py --workdir=runs/bubbly \
      --config.data.image=/path/to/texture.jpg --mode=sample --config.sample.size=512,512
  python main.py --config=configs/texture_paper.py --workdir=runs/starry \
      --config.data.image=starry_night.jpg --mode=style --config.style.content=astronaut
"""

from configs import default
from configs import family


def get_config():
  """The paper's texture settings; the exemplar comes from --config.data.image."""
  config = family.paper_classifier(default.get_config())
  config.num_stages = 20
  config.model.features = (64, 128, 256, 512)  # DCGAN discriminator on 64x64 patches

  config.data.source = "image"
  config.data.image = "brick"  # overridden by --config.data.image=path
  config.data.image_size = 256  # the exemplar is center-cropped and resized to this
  config.data.channels = 3

  config.patch.size = 64
  config.patch.patches_per_image = 0  # 10 per 256x256 image, scaled with the area

  config.train.steps_per_stage = 500
  config.train.log_every = 100

  config.pool.negatives_per_stage = 200  # the paper: 200 negatives of 320x320
  config.pool.capacity = 5 * 200  # 0.5 ** age: older stages are rarely drawn
  config.pool.age_decay = 0.5

  config.synthesis.mode = "sequential"
  config.synthesis.step_size = 0.1
  config.synthesis.batch_size = 50
  config.synthesis.max_steps = 500
  config.synthesis.stop_window = 20

  config.sample.num = 4
  config.sample.batch_size = 4
  config.sample.max_steps = 500
  config.grid_size = 16
  return config
