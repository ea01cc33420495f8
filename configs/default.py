"""The embedded default: texture modelling of a bundled image, no download needed.

The positive is scikit-image's bundled `brick` texture, resized to 128x128 grayscale;
a critic (3 conv layers) sees random 32x32 patches of it and of 160x160
pseudo-negatives (128 plus half a patch of padding per side), the paper's anysize
patch head (3.5) at a CPU-sized scale. Each of the 20 stages is WINN's Wasserstein
critic (configs/texture.py says why). Trains in about 7 minutes on a 2-core CPU;
sample it at any size with --mode=sample --config.sample.size=256,256.

This file also defines every config field with its default: the other configs start
from it and change what they need (configs/svhn.py switches to whole images).

Run:
  python main.py --config=configs/default.py --workdir=workdir/default
(`python main.py` with no flags runs this config in ./workdir/default.)
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the default configuration; every other config starts from it."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  # "inng" keeps every stage, "inng_compressed" one per `keep_every` stages,
  # "inng_single" a single classifier fine-tuned throughout (paper 3.4, 3.6).
  config.variant = "inng"
  # "inng": each stage is a classifier trained with sigmoid cross-entropy (the paper;
  # configs/svhn.py, configs/texture_paper.py). "wasserstein": each stage is a WINN
  # critic (Lee et al. 2018): loss mean D(neg) - mean D(pos), with
  # train.gradient_penalty = 10; synthesis stops at a threshold drawn between the
  # positives' scores. The texture default uses WINN's critic: at equal CPU time it
  # gave recognisable textures where cross-entropy stages left noise
  # (docs/texture_quality.md).
  config.objective = "wasserstein"
  config.keep_every = 3
  config.num_stages = 20

  config.model = ml_collections.ConfigDict()
  config.model.features = (32, 64, 128)
  config.model.kernel_size = 5
  config.model.conv_impl = "auto"  # "auto" | "xla" | "im2col"
  config.model.dtype = "float32"  # "bfloat16" for mixed precision on GPU/TPU
  # WINN's critic: LayerNorm, swish, mean pooling. The paper's DCGAN discriminator:
  # "batch", "leaky_relu", "flatten"; EBM practice: "none" and spectral_norm=True.
  config.model.norm = "layer"  # "batch" | "layer" | "none"
  config.model.activation = "swish"  # | "leaky_relu"
  config.model.pool = "mean"  # | "flatten"
  config.model.spectral_norm = False

  config.data = ml_collections.ConfigDict()
  config.data.source = "image"  # "tfds" | "folder" | "npz" | "skimage" | "image"
  config.data.name = "brick"
  config.data.split = "train"
  config.data.data_dir = ml_collections.FieldReference(None, field_type=str)
  config.data.path = ""
  config.data.image = "brick"  # source "image": exemplar path or bundled skimage name
  config.data.image_size = 128
  config.data.channels = 1
  config.data.max_examples = 0  # 0 = all
  config.data.num_crops = 2000
  config.data.crop_scale = 0.25
  config.data.seed = 0
  config.data.allow_upscale = False
  config.data.crop_size = 0  # folder: central square crop before resizing; 0 = largest
  config.data.download = True
  # Resuming a workdir on images other than those its checkpoint was trained on is
  # refused (a content fingerprint is saved with each checkpoint; a moved file keeps
  # it); True goes on with the new images.
  config.data.allow_new_data = False

  # The anysize patch head (paper 3.5): the classifier sees `size` x `size` patches cut
  # at random from full images, so textures of any size can be synthesised. 0 = the
  # classifier sees whole data.image_size images (SVHN, faces).
  config.patch = ml_collections.ConfigDict()
  config.patch.size = 32
  config.patch.patches_per_image = 0  # per synthesis step; 0 = the paper's density
  config.patch.average_overlaps = True  # a pixel in k patches gets their mean gradient

  # Classification step (paper 3.2.1): positives vs the pseudo-negative pool.
  config.train = ml_collections.ConfigDict()
  config.train.pos_batch = 50
  config.train.neg_batch = 50
  config.train.steps_per_stage = 100
  config.train.learning_rate = 1e-3  # the paper's SGD: 0.01; WINN's Adam: 1e-4
  config.train.momentum = 0.0
  config.train.log_every = 50  # classifier updates per jitted chunk
  config.train.early_stop_loss = 0.0  # stop a stage's training below this loss; 0 = off
  config.train.optimizer = "adam"  # | "sgd" (the paper); Adam's betas below are WINN's
  config.train.beta1 = 0.0
  config.train.beta2 = 0.9
  config.train.lr_decay = 1.0  # learning rate x this after every stage; 1 = constant
  config.train.gradient_penalty = 10.0  # WGAN-GP weight on random interpolates (WINN)
  config.train.logit_l2 = 0.0  # weight of mean(logit^2) (IGEBM's regulariser)

  # The pseudo-negative pool (paper 3.2.1): every stage's negatives, recent ones
  # drawn more often (age weight age_decay ** age; 1.0 = uniform).
  config.pool = ml_collections.ConfigDict()
  config.pool.negatives_per_stage = 40
  config.pool.capacity = 5 * 40  # age weights 0.5 ** age: older stages are rarely drawn
  config.pool.age_decay = 0.5
  config.pool.init_std = 0.3
  # The first negatives (and the noise sampling starts from): "gaussian" per pixel
  # (the paper) or "conv_noise", noise through a random conv net (WINN's option).
  config.pool.init = "gaussian"

  # Synthesis step (paper 3.2.2): Adam on the image.
  config.synthesis = ml_collections.ConfigDict()
  # "sequential": only the newest classifier moves the previous negatives (the
  # authors' code), so a stage costs the same however long the cascade is; "sum":
  # the summed logits of every kept classifier (paper eq. 12). sample.mode is the same
  # choice when sampling. Configs that still set its old name, synthesis.energy, work.
  config.synthesis.mode = "sequential"
  config.synthesis.batch_size = 40
  # WINN's (and the authors' published texture code's) 0.01. The paper's text says 0.1
  # for textures (configs/texture_paper.py), 0.02 for SVHN/faces; with 32x32 patches
  # Adam at 0.1 stalled below the boundary and left high-frequency noise.
  config.synthesis.step_size = 0.01
  config.synthesis.optimizer = (
    "adam"  # | "sgd" (plain gradient ascent; Langevin with noise)
  )
  config.synthesis.beta1 = 0.5
  config.synthesis.beta2 = 0.999
  config.synthesis.max_steps = 100
  config.synthesis.stop_prob = 0.5
  config.synthesis.stop_window = 20  # paper 4.1: stop on the mean over ~20 steps
  # mode="sum": whose P(real) the stop tests. "newest" (the paper: until the newest
  # classifier is fooled), "all" (every kept classifier fooled) or "sum" (the summed
  # logits: the earlier stages outvote the newest and synthesis stops at once).
  config.synthesis.stop_on = "newest"
  config.synthesis.noise_scale = 0.0
  config.synthesis.noise_schedule = "linear"
  config.synthesis.grad_clip = 0.0  # clip each pixel's gradient to +-this; 0 = off
  # Where a stage's synthesis starts: "previous" (INNg: the previous stage's output)
  # or "pool" (IGEBM/JEM's replay buffer: pool draws, each replaced by fresh noise
  # with probability reinit_prob).
  config.synthesis.start = "previous"
  config.synthesis.reinit_prob = 0.05
  config.synthesis.strategy = "scan"
  # inng_compressed: stage k of a group of keep_every gets max_steps * (1 + k * growth).
  config.synthesis.group_step_growth = 1.0

  # Generation from a trained cascade (`--mode=sample`, paper 3.3).
  config.sample = ml_collections.ConfigDict()
  config.sample.num = 4
  config.sample.mode = "sequential"  # "sequential" (paper 3.3) | "sum"
  config.sample.max_steps = 100
  # Sampling stops a classifier's pass when the mean P(real) over the last
  # stop_window steps reaches synthesis.stop_prob; like synthesis.stop_window, it sets
  # the fewest steps each classifier takes. A Wasserstein critic's score keeps rising
  # past its threshold, so extra forced steps carry samples past the real images'
  # scores (docs/faces_quality.md).
  config.sample.stop_window = 20
  config.sample.batch_size = 4
  config.sample.seed = 1
  # (height, width) to synthesise; (0, 0) = data.image_size. Any size needs the patch
  # head, e.g. --config.sample.size=512,512.
  config.sample.size = (0, 0)

  # Style transfer (`--mode=style`, paper 4.2) with a patch-head model trained on the
  # style image: minimise gamma * ||I - I_content||^2 - (1 - gamma) * ln p_style(I).
  config.style = ml_collections.ConfigDict()
  config.style.content = "astronaut"  # image path or bundled skimage name
  # What ||I - I_content||^2 is measured in: "patch" (squared L2 of a patch, the unit
  # of a gradient-penalised critic's logit) or "pixel" (mean per pixel, the paper's
  # cross-entropy stages, whose log-sigmoid saturates instead). See innjax/style.py.
  config.style.content_unit = "patch"
  # In patch units 0.3 left the photo almost untouched (content MSE 0.015 on chelsea
  # in starry_night); 0.1 takes the palette and strokes and keeps the subject (MSE 0.09).
  config.style.gamma = 0.1
  config.style.steps = 300
  config.style.step_size = 0.02
  config.style.max_size = 512  # longer side of the content image; 0 = as is

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.max_to_keep = 3
  config.checkpoint.async_save = True
  # Save every k stages (and after the last one, and on a stop or a divergence): many
  # short stages (an EBM-style schedule) then do not pay a checkpoint each. A SIGKILL
  # loses at most k - 1 stages; resuming redoes them exactly.
  config.checkpoint.every_stages = 1

  # Data parallelism over a jax.sharding mesh (innjax/sharding.py; docs/distributed.md).
  # 1 = one device; 0 = every device of every host; k = the first k devices. Batches
  # are split over the devices.
  config.mesh = ml_collections.ConfigDict()
  config.mesh.data = 1
  # False: train.pos_batch, train.neg_batch, synthesis.batch_size and sample.batch_size
  # are global (each must divide by the device count); True: they are per device.
  config.mesh.batch_per_device = False

  config.grid_size = 16  # negatives shown in each stage's PNG grid
  config.grid_every_stages = 1  # write the PNG grid every k stages (and the last)
  config.evaluate = evaluate_config()
  return config


def evaluate_config() -> ml_collections.ConfigDict:
  """The `evaluate` section: its one definition, with its defaults.

  `innjax.evaluate` also takes the keys that a config lacks from here, so that a config
  saved before the section existed still evaluates.
  """
  # Written as `config.evaluate.NAME = value  # meaning`, like the fields above, so that
  # --help_config finds each field's meaning (innjax/config_help.py).
  config = ml_collections.ConfigDict()
  # Evaluation (`--mode=evaluate`): the paper's unsupervised-feature protocol (4.5) and
  # sample-quality metrics; innjax/evaluate.py says how each key is used.
  config.evaluate = ml_collections.ConfigDict()
  config.evaluate.stage = -1  # trained classifier used: -1 = the last one
  # Also run the SVM protocol on every k-th trained classifier's features (and the
  # last): test error against training time, each paired with random features. Costs
  # one feature pass and one set of SVMs per classifier. 0 = off.
  config.evaluate.every_stages = 0
  config.evaluate.layers = (-3, -2, -1)  # conv blocks concatenated (paper: last three)
  config.evaluate.num_labelled = 1000  # labelled examples per SVM (paper)
  config.evaluate.val_size = 10000  # held out to choose C (paper)
  config.evaluate.num_draws = 100  # SVMs the test error is averaged over (paper)
  config.evaluate.select_draws = 3  # draws C is chosen with (val. error averaged)
  # The SVM's C grid (svm_protocol.DEFAULT_CS says why these values).
  config.evaluate.Cs = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
  config.evaluate.batch_size = 500  # images per feature-extraction batch
  config.evaluate.num_samples = 1000  # generated images for Frechet/KID/SWD; 0 = skip
  config.evaluate.train_split = "train"  # labelled splits of config.data
  config.evaluate.test_split = "test"  # tfds; npz/folder: "{split}" in the path
  config.evaluate.train_path = ""  # npz/folder: file used instead of data.path
  config.evaluate.test_path = ""  # npz/folder: test file instead of data.path
  # Frechet/KID feature space: a small CNN trained with labels on the training split.
  config.evaluate.metric_net_steps = 1000  # Adam updates; 0 = skip the supervised net
  config.evaluate.metric_net_features = (32, 64, 128)  # conv widths; last = feature dim
  config.evaluate.metric_net_batch_size = 128  # images per metric-net update
  config.evaluate.metric_net_learning_rate = 1e-3  # its Adam step size
  # Seeds the SVM draws, the random classifier, generation, the metric net and metrics.
  config.evaluate.seed = 0
  return config.evaluate
