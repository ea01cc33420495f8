"""EBM-style textures: one network trained by contrastive divergence, sampled by
Langevin dynamics from a replay buffer (IGEBM, Du and Mordatch 2019; JEM, Grathwohl
et al. 2020; short-run MCMC, Nijkamp et al. 2019), on the paper's texture geometry.

* `variant="inng_single"`: a single network fine-tuned at every stage (an EBM);
* loss mean E(neg) - mean E(pos) (`objective="wasserstein"` without the gradient
  penalty is exactly contrastive divergence on the logit as negative energy) plus
  IGEBM's L2 penalty on the logits, spectral norm, swish and no normalisation layer;
* synthesis starts from the pool (a replay buffer, 5% re-initialised to noise), takes
  a fixed 40 steps of noisy Adam (Langevin noise 0.005), no early stop.

Sampling from fresh noise runs the one network for `sample.max_steps`.

Run:
  python main.py --config=configs/ebm_texture.py --workdir=runs/ebm_bubbly \
      --config.data.image=/path/to/texture.jpg
"""

from configs import texture


def get_config():
  """configs/texture.py's geometry with an EBM's training and sampling."""
  config = texture.get_config()
  config.variant = "inng_single"
  config.objective = "wasserstein"
  config.model.norm = "none"
  config.model.activation = "swish"
  config.model.pool = "mean"
  config.model.spectral_norm = True
  config.train.gradient_penalty = 0.0
  config.train.logit_l2 = 0.1
  config.synthesis.start = "pool"
  config.synthesis.reinit_prob = 0.05
  config.synthesis.step_size = 0.01
  config.synthesis.noise_scale = 0.005
  config.synthesis.noise_schedule = "constant"
  config.synthesis.stop_prob = 0.0
  config.synthesis.max_steps = 40
  config.sample.max_steps = 400
  return config
