"""Every check of a config's fields and values, in one place, before any work starts.

A config file is a Python function, so nothing stops it from deleting a field,
misspelling one or setting a value that would fail deep inside training (or worse,
train a wrong model). `python main.py` runs, before anything is written:

  1. `check_config_type`: get_config() returned a ConfigDict;
  2. `check_config_fields`: its fields are those of configs/default.py;
  3. `validate_config`: every value is in range and consistent with the others.

Each raises `innjax.errors.ConfigError` ("Bad config: ...") naming the field and the
fix. Checks that need the machine (e.g. whether a batch splits over the devices) stay
where the machine is known (innjax/sharding.py).

Importing this module loads neither JAX nor TensorFlow (`main.py --help` stays
instant); `validate_config` imports the modules whose choices it checks when called.
"""

from __future__ import annotations

import collections.abc
import difflib
import math

import ml_collections
import numpy as np

from innjax import errors

# Fields that some readers use when present but that configs/default.py leaves out.
OPTIONAL_FIELDS = ("data.reader", "data.value_range")

# Config fields renamed since earlier releases: old dotted name -> current one.
# `upgrade_config` moves old fields in config files and saved checkpoints;
# `upgrade_overrides` does the same for `--config.OLD=...` on the command line.
RENAMED_FIELDS = {"synthesis.energy": "synthesis.mode"}


def upgrade_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with fields of earlier releases moved to their current names.

  Config files and checkpoints written before a rename (e.g. `synthesis.energy`, now
  `synthesis.mode`) keep working: an old field's value replaces the new field's,
  since a config that still names the old field set it on purpose (the current
  defaults no longer have it). Called where configs come in: the command line, saved
  configs, `train.train`.

  Returns:
    `config` itself when it has no old field, else an upgraded copy; the argument is
    never modified.
  """
  present = [(old, new) for old, new in RENAMED_FIELDS.items() if _has_field(config, old)]
  if not present:
    return config
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for old, new in present:
      old_section, old_leaf = old.split(".")
      new_section, new_leaf = new.split(".")
      config[new_section][new_leaf] = config[old_section][old_leaf]
      del config[old_section][old_leaf]
  return config


def _has_field(config, dotted: str) -> bool:
  """Whether `config` has the field `section.leaf`."""
  section, leaf = dotted.split(".")
  return section in config and leaf in config[section]


def upgrade_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
  """`argv` with `--config.OLD...` overrides of renamed fields under their new names.

  Returns:
    The rewritten argument list and one note per rewritten argument, for the user.
  """
  upgraded, notes = [], []
  for arg in argv:
    for old, new in RENAMED_FIELDS.items():
      flag = f"--config.{old}"
      if arg == flag or arg.startswith(flag + "="):
        arg = f"--config.{new}" + arg[len(flag) :]
        notes.append(f"--config.{old} is now --config.{new}; using that")
    upgraded.append(arg)
  return upgraded, notes


_START_FROM_DEFAULT = (
  "Start it from configs/default.py: `config = "
  "default.get_config()`, change fields, then `return config`."
)


def config_fields(config: ml_collections.ConfigDict, prefix: str = "") -> set[str]:
  """The dotted names of every leaf field of `config`."""
  names = set()
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      names |= config_fields(value, f"{prefix}{key}.")
    else:
      names.add(prefix + key)
  return names


def check_config_type(config) -> None:
  """Refuses a config file whose get_config() returned None or a dict, with the fix.

  A config file that failed to load (missing, or raising an error) arrives from
  ml_collections as a placeholder that raises an OSError naming the file when read;
  its message is passed on.

  Raises:
    ConfigError: `config` is None, a mapping other than a ConfigDict, or the
      placeholder of a config file that failed to load.
  """
  try:
    config.keys()  # the placeholder raises here
  except OSError as err:
    raise errors.ConfigError(str(err)) from None
  except AttributeError:  # None and the like: refused below
    pass
  if config is None:
    raise errors.ConfigError(
      "Bad config: the config file's get_config() returned None "
      f"(is its `return config` missing?). {_START_FROM_DEFAULT}"
    )
  if isinstance(config, collections.abc.Mapping):
    raise errors.ConfigError(
      f"Bad config: the config file's get_config() returned a "
      f"{type(config).__name__}, not an ml_collections.ConfigDict. "
      f"{_START_FROM_DEFAULT}"
    )


def check_config_fields(
  config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict
) -> list[str]:
  """Compares a config's fields with the reference (configs/default.py).

  Without this, a deleted field fails deep inside training with an AttributeError
  and a misspelt one is silently ignored.

  Returns:
    Notes on unknown fields that resemble no known one (they are ignored).

  Raises:
    ConfigError: fields are missing, or an unknown field looks like a misspelling of
      a known one.
  """
  have, want = config_fields(config), config_fields(reference)
  problems, notes = [], []
  for name in sorted(have - want - set(OPTIONAL_FIELDS)):
    section, _, leaf = name.rpartition(".")
    siblings = [w.rpartition(".")[2] for w in want if w.rpartition(".")[0] == section]
    close = difflib.get_close_matches(leaf, siblings, n=1)
    if close:
      problems.append(
        f"{name} is not a config field (did you mean "
        f"{section + '.' if section else ''}{close[0]}?)"
      )
    else:
      notes.append(f"config field {name} is not used by innjax and is ignored")
  missing = sorted(want - have)
  if missing:
    listed = ", ".join(missing[:12]) + (
      f" and {len(missing) - 12} more" if len(missing) > 12 else ""
    )
    problems.append(f"the config lacks field(s) {listed}")
  if problems:
    raise errors.ConfigError(
      "Bad config: " + "; ".join(problems) + ". Start a config file from "
      "configs/default.py (`config = default.get_config()`, then change fields), "
      "so that every field exists; see configs/tiny.py for an example."
    )
  return notes


def _non_finite_fields(config: ml_collections.ConfigDict, prefix: str = "") -> list:
  """ "field=value" for every float of `config` (or in a tuple of it) that is NaN or inf."""
  found = []
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      found += _non_finite_fields(value, f"{prefix}{key}.")
      continue
    values = value if isinstance(value, (tuple, list)) else (value,)
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
      found.append(f"{prefix}{key}={value}")
  return found


def _is_count(value) -> bool:
  """An int (not a bool, not a float such as 16.5 or a string such as "abc")."""
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_widths(value) -> bool:
  """A non-empty list of positive integer layer widths."""
  return (
    isinstance(value, (tuple, list))
    and len(value) >= 1
    and all(_is_count(v) and v > 0 for v in value)
  )


def _is_image_size(value) -> bool:
  """sample.size: one int or (height, width); all 0 (the training size) or all > 0."""
  values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
  return (
    len(values) in (1, 2)
    and all(_is_count(v) for v in values)
    and (all(v == 0 for v in values) or all(v > 0 for v in values))
  )


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise errors.ConfigError(f"Bad config: {message}")


def _field(section, key: str, default):
  """`section.get(key, default)` for a ConfigDict or a dict, None read as the default."""
  value = section.get(key, default)
  return default if value is None else value


def _data_choice(data_config, key: str, default: str, choices) -> str:
  """`data_config.<key>` (or the default), refused unless one of `choices`."""
  value = str(_field(data_config, key, default))
  _require(
    value in choices, f"data_config.{key} must be one of {choices}, got {value!r}."
  )
  return value


def check_data_config(data_config) -> None:
  """`config.data` (or the dict given to `innjax.data.load_dataset`): the source and
  the options of that source.

  Raises:
    ConfigError: a value out of range or unknown, naming the field.
  """
  from innjax import data  # pylint: disable=g-import-not-at-top  (PIL; see above)

  source = _data_choice(data_config, "source", "", data.SOURCES)
  channels = int(_field(data_config, "channels", 3))
  _require(channels in (1, 3), f"data_config.channels must be 1 or 3, got {channels}.")
  _require(
    int(_field(data_config, "image_size", 0)) >= 1,
    "data_config.image_size must be a positive int.",
  )
  if source in ("folder", "npz"):
    _require(
      bool(_field(data_config, "path", "")), f"source {source!r} needs data_config.path."
    )
  if source == "npz":
    _data_choice(data_config, "value_range", "auto", data.VALUE_RANGES)
  if source == "tfds":
    _data_choice(data_config, "reader", "auto", data.TFDS_READERS)
  if source == "skimage":
    name = str(_field(data_config, "name", "brick"))
    _require(
      name in data.SKIMAGE_IMAGES,
      f"unknown skimage image {name!r}; bundled images (no download needed): "
      f"{', '.join(data.SKIMAGE_IMAGES)}.",
    )
    num_crops = int(_field(data_config, "num_crops", 1000))
    crop_scale = float(_field(data_config, "crop_scale", 1.0))
    _require(
      num_crops >= 1 and 0 < crop_scale <= 1,
      "need data_config.num_crops >= 1 and 0 < data_config.crop_scale <= 1, "
      f"got {num_crops}, {crop_scale}.",
    )


# `model.dtype` names and the `style.content_unit` choices.
DTYPES = ("float32", "bfloat16")
CONTENT_UNITS = ("pixel", "patch")


def _check_style(style: ml_collections.ConfigDict) -> None:
  """`config.style` (--mode=style): the content weight, its unit, the step budget."""
  _require(
    0.0 <= float(style.gamma) <= 1.0, f"style.gamma must be in [0, 1], got {style.gamma}."
  )
  _require(
    style.get("content_unit", "pixel") in CONTENT_UNITS,
    f"style.content_unit must be one of {CONTENT_UNITS}, got "
    f"{style.get('content_unit')!r}.",
  )
  _require(
    int(style.steps) >= 1 and float(style.step_size) > 0,
    "style.steps must be >= 1 and style.step_size > 0, got "
    f"{style.steps} and {style.step_size}.",
  )


def check_evaluate(ev: ml_collections.ConfigDict) -> None:
  """`config.evaluate` (--mode=evaluate): counts, layers and the metric network.

  Raises:
    ConfigError: a value out of range, naming the field.
  """
  for key in ("num_draws", "select_draws", "batch_size"):
    _require(int(ev[key]) >= 1, f"evaluate.{key} must be >= 1, got {ev[key]}.")
  # The SVM needs two labelled examples at least, and a validation split to choose C.
  _require(
    int(ev.num_labelled) >= 2,
    f"evaluate.num_labelled must be >= 2, got {ev.num_labelled}.",
  )
  Cs = tuple(ev.Cs) if isinstance(ev.Cs, (tuple, list)) else (ev.Cs,)
  _require(
    len(Cs) >= 1 and all(float(c) > 0 for c in Cs),
    f"evaluate.Cs must be positive numbers, at least one, got {ev.Cs}.",
  )
  _require(
    int(ev.val_size) > 0 or len(Cs) == 1,
    f"evaluate.val_size=0 leaves no validation split to choose among the "
    f"{len(Cs)} values of evaluate.Cs; give a single C or a positive val_size.",
  )
  for key in ("val_size", "num_samples", "metric_net_steps", "every_stages"):
    _require(int(ev[key]) >= 0, f"evaluate.{key} must be >= 0, got {ev[key]}.")
  _require(len(ev.layers) >= 1, "evaluate.layers must name at least one conv layer.")
  if int(ev.metric_net_steps) > 0:
    _require(
      int(ev.metric_net_batch_size) >= 1 and float(ev.metric_net_learning_rate) > 0,
      "evaluate.metric_net_batch_size must be >= 1 and metric_net_learning_rate "
      f"> 0, got {ev.metric_net_batch_size} and {ev.metric_net_learning_rate}.",
    )


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks every value of a complete config (one with configs/default.py's fields).

  Raises:
    ConfigError: "Bad config: ..." with the fix, for the first inconsistent or
      out-of-range setting found.
  """
  # Imported here so that `main.py --help` (which imports this module through
  # innjax.cli) does not load JAX; each owns the choices checked against it.
  from innjax import models  # pylint: disable=g-import-not-at-top
  from innjax import sampler as sampler_lib  # pylint: disable=g-import-not-at-top
  from innjax import synthesis  # pylint: disable=g-import-not-at-top
  from innjax import train  # pylint: disable=g-import-not-at-top

  config = upgrade_config(config)  # e.g. synthesis.energy, now .mode
  require = _require
  non_finite = _non_finite_fields(config)
  require(
    not non_finite,
    f"{', '.join(non_finite)}: config values must be finite "
    "numbers (NaN and inf are never meaningful here).",
  )
  for name in ("model.features", "evaluate.metric_net_features"):
    section, leaf = name.split(".")
    value = config[section][leaf]
    require(
      _is_widths(value),
      f"{name} must be positive integer widths, one per conv layer (e.g. "
      f"--config.{name}=32,64,128), got {value!r}.",
    )
  require(
    _is_image_size(config.sample.size),
    "sample.size must be HEIGHT,WIDTH in pixels (e.g. "
    "--config.sample.size=256,256), one number for a square, or 0 for the "
    f"training size; got {config.sample.size!r}.",
  )
  require(
    config.variant in train.VARIANTS,
    f"variant must be one of {train.VARIANTS}, got {config.variant!r}.",
  )
  require(
    int(config.num_stages) >= 1, f"num_stages must be >= 1, got {config.num_stages}."
  )
  for name, value in (
    ("checkpoint.every_stages", config.checkpoint.every_stages),
    ("grid_every_stages", config.grid_every_stages),
  ):
    require(int(value) >= 1, f"{name} must be >= 1 (1 = every stage), got {value}.")
  if config.variant == "inng_compressed":
    require(
      int(config.keep_every) >= 1, f"keep_every must be >= 1, got {config.keep_every}."
    )
  require(
    config.model.kernel_size >= 1,
    f"model.kernel_size must be >= 1, got {config.model.kernel_size}.",
  )
  require(
    config.model.conv_impl in models.CONV_IMPLS,
    f"model.conv_impl must be one of {models.CONV_IMPLS}, got "
    f"{config.model.conv_impl!r}.",
  )
  require(
    config.model.dtype in DTYPES,
    f"model.dtype must be one of {DTYPES}, got {config.model.dtype!r}.",
  )
  require(
    config.data.image_size > 0,
    f"data.image_size must be positive, got {config.data.image_size}.",
  )
  require(
    int(config.data.crop_size) >= 0,
    f"data.crop_size must be >= 0 (0 = the largest central square), got "
    f"{config.data.crop_size}.",
  )
  require(
    config.data.channels in (1, 3),
    f"data.channels must be 1 or 3, got {config.data.channels}.",
  )
  check_data_config(config.data)
  stride = 2 ** len(config.model.features)
  patch = synthesis.geometry(config).patch_size
  require(patch >= 0, f"patch.size must be 0 (whole images) or positive, got {patch}.")
  if patch:
    require(
      patch <= config.data.image_size,
      f"patch.size={patch} is larger than the training image "
      f"(data.image_size={config.data.image_size}); use a smaller patch or a "
      "larger image.",
    )
    require(
      patch % stride == 0,
      f"patch.size={patch} is not divisible by {stride} "
      f"(2 ** {len(config.model.features)} stride-2 layers); change one of them.",
    )
    require(
      int(config.patch.patches_per_image) >= 0,
      "patch.patches_per_image must be >= 0 (0 = the paper's density).",
    )
  else:
    require(
      config.data.image_size % stride == 0,
      f"data.image_size={config.data.image_size} is not divisible by {stride} "
      f"(2 ** {len(config.model.features)} stride-2 layers); change one of them.",
    )
    size = config.sample.size
    require(
      set(size if isinstance(size, (tuple, list)) else (size,))
      <= {0, config.data.image_size},
      f"sample.size={size}: a whole-image model (patch.size=0) only synthesises "
      f"its training size, {config.data.image_size}; use 0, or train a patch "
      "head (patch.size > 0, e.g. configs/texture.py) for other sizes.",
    )
  for name in ("pos_batch", "neg_batch", "steps_per_stage", "log_every"):
    require(
      int(config.train[name]) >= 1,
      f"train.{name} must be >= 1, got {config.train[name]}.",
    )
  require(
    config.train.learning_rate > 0,
    f"train.learning_rate must be > 0, got {config.train.learning_rate}.",
  )
  for name in ("momentum", "beta1", "beta2"):
    require(
      0.0 <= float(config.train[name]) < 1.0,
      f"train.{name} must be in [0, 1), got {config.train[name]}.",
    )
  require(
    int(config.pool.negatives_per_stage) >= 1, "pool.negatives_per_stage must be >= 1."
  )
  require(
    int(config.pool.capacity) >= int(config.pool.negatives_per_stage),
    f"pool.capacity ({config.pool.capacity}) must hold at least one stage's "
    f"negatives ({config.pool.negatives_per_stage}).",
  )
  require(
    0 < config.pool.age_decay <= 1,
    f"pool.age_decay must be in (0, 1] (1 = uniform), got {config.pool.age_decay}.",
  )
  require(int(config.synthesis.batch_size) >= 1, "synthesis.batch_size must be >= 1.")
  require(
    config.synthesis.mode in sampler_lib.MODES,
    f"synthesis.mode must be one of {sampler_lib.MODES}, got {config.synthesis.mode!r}.",
  )
  require(
    config.objective in train.OBJECTIVES,
    f"objective must be one of {train.OBJECTIVES}, got {config.objective!r}.",
  )
  require(
    config.train.optimizer in ("sgd", "adam"),
    f"train.optimizer must be 'sgd' or 'adam', got {config.train.optimizer!r}.",
  )
  require(
    0.0 < float(config.train.lr_decay) <= 1.0,
    f"train.lr_decay must be in (0, 1] (1 = constant), got {config.train.lr_decay}.",
  )
  for name in ("gradient_penalty", "logit_l2"):
    value = float(config.train[name])
    require(
      np.isfinite(value) and value >= 0,
      f"train.{name} must be >= 0 (0 = off), got {config.train[name]}.",
    )
  require(
    config.pool.init in synthesis.INITS,
    f"pool.init must be one of {synthesis.INITS}, got {config.pool.init!r}.",
  )
  require(
    float(config.pool.init_std) > 0,
    f"pool.init_std must be > 0, got {config.pool.init_std}.",
  )
  require(
    config.synthesis.start in ("previous", "pool"),
    f"synthesis.start must be 'previous' or 'pool', got {config.synthesis.start!r}.",
  )
  require(
    0.0 <= float(config.synthesis.reinit_prob) <= 1.0,
    f"synthesis.reinit_prob must be in [0, 1], got {config.synthesis.reinit_prob}.",
  )
  require(
    float(config.synthesis.grad_clip) >= 0,
    f"synthesis.grad_clip must be >= 0 (0 = off), got {config.synthesis.grad_clip}.",
  )
  try:
    models.check_architecture(
      config.model.norm, config.model.activation, config.model.pool
    )
  except ValueError as err:
    raise errors.ConfigError(f"Bad config: {err}") from None
  require(
    config.sample.mode in sampler_lib.MODES,
    f"sample.mode must be one of {sampler_lib.MODES}, got {config.sample.mode!r}.",
  )
  require(
    int(config.sample.num) >= 1, f"sample.num must be >= 1, got {config.sample.num}."
  )
  # 0 used to fall back silently on synthesis.max_steps.
  require(
    int(config.sample.max_steps) >= 1,
    f"sample.max_steps must be >= 1 (the step cap of each classifier when "
    f"sampling), got {config.sample.max_steps}.",
  )
  require(
    synthesis.sampling_stop_window(config) >= 1,
    f"sample.stop_window must be >= 1 (the steps whose mean P(real) decides the "
    f"stop when sampling), got {config.sample.get('stop_window')}.",
  )
  require(int(config.sample.batch_size) >= 1, "sample.batch_size must be >= 1.")
  check_evaluate(config.evaluate)
  _check_style(config.style)
  # The sampler validates its own arguments (stop_prob, step sizes, ...); its
  # messages start with the argument's name, which lives under `synthesis.` here.
  try:
    synthesis.make_synthesis_sampler(config, lambda p, x: x.sum(), config.synthesis.mode)
  except (ValueError, TypeError) as err:
    raise errors.ConfigError(f"Bad config: synthesis.{err}") from None
