"""Shared helpers for the innjax benchmark scripts (not part of the library or tests).

Every script under `benchmarks/` answers one performance question and prints a
markdown table (and, with `--json PATH`, all numbers as JSON). What they share lives
here, so that each script is only its question:

* command line: `add_common_args`, `fill_defaults` (full vs `--quick` values);
* `Bench`: one invocation: the machine description (CPU model, cores, load, jax
  backend), the measured dense float32 matmul peak, the report header, the total wall
  time and the JSON file;
* timing: `compile_jitted` (trace + lower and XLA compile timed separately, wall and
  process CPU seconds, plus XLA's buffer estimate), `time_calls` / `time_cell` (warm-up
  calls, then timed calls, each ending in ``jax.block_until_ready``; the median is the
  result), `chained` / `time_chained` (a jitted step whose state is fed back in, as
  in synthesis), `interleaved` (several functions timed in alternation, for ratios),
  `CompileCounter` (every XLA compilation in a block of code, to count recompiles);
* FLOPs: `classifier_flops`, `grad_step_flops`, `train_step_flops`, `rate_fields`;
* memory: `memory_fields` (XLA's buffer estimate of an executable, the process's peak
  RSS, the device's peak bytes where the backend reports them);
* inputs: `stacked_variables` (distinct stages with non-trivial BatchNorm statistics),
  `random_images`, `load_config`, `offline_colour_data`;
* output: `markdown_table`, `fmt`, `verdict`, `write_json`, `log`.

FLOP convention (used by every script): a convolution layer costs
2*k*k*C_in*C_out*H_out*W_out FLOPs per image forward, the dense layer 2*D; bias,
BatchNorm, leaky ReLU, the im2col gathers, the Adam update and the clip are not
counted. The gradient with respect to the input only (the sampler never needs weight
gradients) costs one transposed convolution per layer, the same FLOPs as the forward,
so a forward + input-gradient step counts as 2x the forward FLOPs
(`GRAD_FLOPS_FACTOR`). A classifier training step adds the weight gradients but needs
no input gradient for the first layer: 3x forward minus the first convolution
(`train_step_flops`). Timings on a shared machine are noisy: compare alternatives as
ratios measured in one invocation, and read medians.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# The scripts run as `python benchmarks/<name>.py` from a checkout: put the repository
# root on the path so `innjax` and `configs` import whether or not it is pip-installed.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from innjax import cascade, models  # pylint: disable=wrong-import-position

GRAD_FLOPS_FACTOR = 2.0

FLOP_NOTE = (
  "FLOPs: per image forward = sum over convs of 2*k*k*Cin*Cout*Hout*Wout + 2*D for "
  "the dense (bias/BN/activations/gathers/Adam not counted); a forward + "
  "input-gradient pass counts as {factor:g}x forward. GFLOP/s = counted FLOPs / "
  "median wall time; '% peak' = GFLOP/s / the measured float32 matmul rate."
)


# ----------------------------------------------------------------------------------
# Command line.


def add_common_args(parser: argparse.ArgumentParser, repeats: int = 5) -> None:
  """Adds the flags every benchmark shares."""
  parser.add_argument(
    "--quick",
    action="store_true",
    help="a smaller grid / batch / repeat count for a smoke run",
  )
  parser.add_argument(
    "--repeats",
    type=int,
    default=None,
    help=f"timed calls per cell after warm-up (default {repeats}, "
    "quick 3); the median is reported",
  )
  parser.add_argument(
    "--warmup",
    type=int,
    default=1,
    help="untimed calls per cell after compilation (default 1)",
  )
  parser.add_argument(
    "--cell-budget",
    type=float,
    default=None,
    help="seconds of timed calls per cell; slow cells get fewer "
    "repeats (never fewer than --min-repeats)",
  )
  parser.add_argument(
    "--min-repeats",
    type=int,
    default=2,
    help="lower bound on timed calls when --cell-budget cuts a cell short (default 2)",
  )
  parser.add_argument(
    "--grad-factor",
    type=float,
    default=GRAD_FLOPS_FACTOR,
    help="FLOPs of a forward+input-gradient pass as a multiple of "
    "the forward (default 2; 3 is the training-step convention)",
  )
  parser.add_argument(
    "--matmul-n",
    type=int,
    default=2048,
    help="size of the square float32 matmul used as the peak",
  )
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--json",
    type=str,
    default=None,
    metavar="PATH",
    help="also write all results as JSON to PATH",
  )
  parser.set_defaults(_default_repeats=repeats)


def make_parser(doc: str, repeats: int = 5) -> argparse.ArgumentParser:
  """A parser whose description is the script's docstring, with the common flags."""
  parser = argparse.ArgumentParser(
    description=doc.split("\n")[0],
    epilog=doc,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  add_common_args(parser, repeats)
  return parser


def add_training_args(parser: argparse.ArgumentParser, defaults: dict) -> None:
  """Flags of the scripts that train a scaled-down cascade (`scaled_svhn_config`).

  Args:
    parser: the script's parser.
    defaults: name -> (full, quick) for "stages", "updates", "batch", "max_steps";
      only shown in the help text (apply them with `fill_defaults`).
  """
  helps = {
    "stages": "training stages (cascade slots)",
    "updates": "classifier updates per stage",
    "batch": "synthesis batch (images per sampler run)",
    "max_steps": "synthesis step cap",
  }
  for name, text in helps.items():
    full, quick = defaults[name]
    parser.add_argument(
      f"--{name.replace('_', '-')}",
      type=int,
      default=None,
      help=f"{text} (default {full}, quick {quick})",
    )


def fill_defaults(args: argparse.Namespace, **defaults) -> argparse.Namespace:
  """Sets every flag left at None to its (full, quick) default; also `repeats`.

  Example: ``fill_defaults(args, batch=(100, 20), cell_budget=(15.0, 4.0))``.
  """
  if args.repeats is None:
    args.repeats = 3 if args.quick else args._default_repeats
  args.repeats = max(1, args.repeats)
  for name, (full, quick) in defaults.items():
    if getattr(args, name, None) is None:
      setattr(args, name, quick if args.quick else full)
  return args


def parse_int_list(text: str) -> list[int]:
  """'32,64' -> [32, 64]."""
  return [int(v) for v in text.split(",") if v.strip()]


def parse_str_list(text: str) -> list[str]:
  """'sum,sequential' -> ['sum', 'sequential']."""
  return [v.strip() for v in text.split(",") if v.strip()]


# ----------------------------------------------------------------------------------
# Machine description.


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _cpu_flags() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          flags = set(line.split(":", 1)[1].split())
          wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
          return " ".join(w for w in wanted if w in flags)
  except OSError:
    pass
  return ""


def _cgroup_cpus() -> Optional[str]:
  try:
    with open("/sys/fs/cgroup/cpu.max") as f:
      quota, period = f.read().split()
    if quota == "max":
      return None
    return f"{int(quota) / int(period):g}"
  except (OSError, ValueError):
    return None


def machine_info() -> dict:
  """Where the numbers come from: CPU, cores, load, software and jax devices."""
  import flax  # Imported here so a missing flax only fails the scripts that use it.

  try:
    affinity = len(os.sched_getaffinity(0))
  except AttributeError:
    affinity = os.cpu_count()
  dev = jax.devices()[0]
  return {
    "cpu_model": _cpu_model(),
    "cpu_flags": _cpu_flags(),
    "logical_cpus": os.cpu_count(),
    "usable_cpus": affinity,
    "cgroup_cpu_quota": _cgroup_cpus(),
    "load_average_at_start": list(os.getloadavg()),
    "python": platform.python_version(),
    "jax": jax.__version__,
    "jaxlib": _jaxlib_version(),
    "flax": flax.__version__,
    "backend": jax.default_backend(),
    "device": str(dev),
    "device_kind": getattr(dev, "device_kind", ""),
    "num_devices": jax.device_count(),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def _jaxlib_version() -> Optional[str]:
  try:
    import jaxlib

    return jaxlib.__version__
  except Exception:  # pylint: disable=broad-except
    return None


def machine_markdown(info: dict) -> str:
  """The machine description as markdown bullet points."""
  lines = [
    f"- CPU: {info['cpu_model']} ({info['cpu_flags']}); "
    f"{info['usable_cpus']} usable of {info['logical_cpus']} logical CPUs"
    + (f", cgroup quota {info['cgroup_cpu_quota']}" if info["cgroup_cpu_quota"] else ""),
    "- load average at start: "
    + ", ".join(f"{v:.2f}" for v in info["load_average_at_start"])
    + " (other processes share this machine; expect noise)",
    f"- jax {info['jax']} (jaxlib {info['jaxlib']}), flax {info['flax']}, "
    f"python {info['python']}; backend {info['backend']}, "
    f"{info['num_devices']} x {info['device']} {info['device_kind']}",
  ]
  if info["xla_flags"]:
    lines.append(f"- XLA_FLAGS: {info['xla_flags']}")
  return "\n".join(lines)


class Bench:
  """One benchmark invocation: machine, measured peak, report header, JSON.

  Construct it first thing in `main()`: it records the start time, describes the
  machine and measures the float32 matmul peak that '% peak' columns refer to.
  """

  def __init__(self, name: str, args: argparse.Namespace, peak: bool = True):
    self.name = name
    self.args = args
    self.t_start = time.perf_counter()
    self.info = machine_info()
    self.peak = None
    if peak:
      log("measuring matmul peak ...")
      self.peak = matmul_peak(args.matmul_n)

  @property
  def peak_gflops(self) -> Optional[float]:
    """The measured matmul rate (GFLOP/s), or None if not measured."""
    return self.peak["median_gflops"] if self.peak else None

  def header(self, title: str, *lines: str) -> None:
    """Prints the report title, the machine, the peak and any extra bullet lines."""
    print(f"# {title}\n")
    print(machine_markdown(self.info))
    if self.peak:
      print(
        f"- float32 matmul {self.peak['n']}x{self.peak['n']}: "
        f"{self.peak['median_gflops']:.1f} GFLOP/s median, "
        f"{self.peak['best_gflops']:.1f} best (the '% peak' reference)"
      )
    for line in lines:
      print(f"- {line}")
    print()

  def finish(self, **payload) -> None:
    """Prints the total wall time and writes the JSON file (if --json was given)."""
    total_s = time.perf_counter() - self.t_start
    print(f"\nTotal wall time {total_s / 60:.1f} min.")
    write_json(
      self.args.json,
      {
        "benchmark": self.name,
        "machine": self.info,
        "matmul_peak": self.peak,
        "args": {k: v for k, v in vars(self.args).items() if not k.startswith("_")},
        **payload,
        "total_s": total_s,
      },
    )


# ----------------------------------------------------------------------------------
# Timing.


def block(tree: Any) -> Any:
  """`jax.block_until_ready`: waits for every array in `tree`."""
  return jax.block_until_ready(tree)


def compile_jitted(fn: Callable, *args, **jit_kwargs) -> tuple[Any, dict]:
  """jit-lowers and compiles `fn` for `args`, timing the two phases separately.

  Wall time on a shared machine includes waiting for a core; the process CPU time
  (`compile_cpu_s`, all threads) is what the compiler itself spent.

  Returns:
    (compiled, info): `compiled(*args)` runs the executable; info has trace_lower_s,
    compile_s, compile_cpu_s and XLA's memory analysis in MB where available.
  """
  jitted = jax.jit(fn, **jit_kwargs)
  c0, t0 = time.process_time(), time.perf_counter()
  lowered = jitted.lower(*args)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2, c2 = time.perf_counter(), time.process_time()
  info = {
    "trace_lower_s": t1 - t0,
    "compile_s": t2 - t1,
    "total_compile_s": t2 - t0,
    "compile_cpu_s": c2 - c0,
  }
  info.update(memory_analysis(compiled))
  return compiled, info


def memory_analysis(compiled) -> dict:
  """XLA's buffer-size estimate of one executable (MB), or {} if unavailable."""
  try:
    mem = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return {}
  if mem is None:
    return {}
  out = {}
  for name in (
    "argument_size_in_bytes",
    "output_size_in_bytes",
    "temp_size_in_bytes",
    "generated_code_size_in_bytes",
  ):
    value = getattr(mem, name, None)
    if value is not None:
      out[name.replace("_size_in_bytes", "_mb")] = value / 2**20
  return out


def time_calls(
  fn: Callable[[], Any],
  repeats: int,
  warmup: int = 1,
  budget_s: Optional[float] = None,
  min_repeats: int = 1,
) -> dict:
  """Times `fn()` (which must return jax values) after warm-up; the median is the result.

  Every call is followed by `jax.block_until_ready` before the clock is read. When
  `budget_s` is given and the warm-up call shows that `repeats` calls would take
  longer, the number of timed calls is cut (to at least `min_repeats`).

  Returns:
    dict with warmup_s (list), times_s (list), cpu_s (list, process CPU seconds per
    call), median_s, median_cpu_s, min_s, max_s, repeats.
  """
  warm = []
  for _ in range(max(warmup, 0)):
    t0 = time.perf_counter()
    block(fn())
    warm.append(time.perf_counter() - t0)
  n = repeats
  if budget_s is not None and warm:
    n = int(min(repeats, max(min_repeats, budget_s // max(warm[-1], 1e-9))))
  times, cpu = [], []
  for _ in range(max(n, 1)):
    c0, t0 = time.process_time(), time.perf_counter()
    block(fn())
    times.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
  return {
    "warmup_s": warm,
    "times_s": times,
    "cpu_s": cpu,
    "repeats": len(times),
    "median_s": statistics.median(times),
    "median_cpu_s": statistics.median(cpu),
    "min_s": min(times),
    "max_s": max(times),
  }


def time_cell(args: argparse.Namespace, fn: Callable[[], Any]) -> dict:
  """`time_calls` with the script's --repeats, --warmup, --cell-budget, --min-repeats."""
  return time_calls(
    fn,
    repeats=args.repeats,
    warmup=max(args.warmup, 1),
    budget_s=args.cell_budget,
    min_repeats=args.min_repeats,
  )


def interleaved(fns: dict, rounds: int, warmup: int = 1) -> dict:
  """Times several functions in alternation, for ratios robust to a shared machine.

  Each round calls every function once, in order, so load from other processes hits
  all of them about equally; the medians over rounds are compared.

  Args:
    fns: name -> fn() returning jax values (blocked on before the clock is read).
    rounds: timed rounds.
    warmup: untimed rounds first.

  Returns:
    name -> dict with times_s, median_s, min_s, max_s, repeats.
  """
  for _ in range(warmup):
    for fn in fns.values():
      block(fn())
  times = {name: [] for name in fns}
  for _ in range(max(rounds, 1)):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      block(fn())
      times[name].append(time.perf_counter() - t0)
  return {
    name: {
      "times_s": t,
      "median_s": statistics.median(t),
      "min_s": min(t),
      "max_s": max(t),
      "repeats": len(t),
    }
    for name, t in times.items()
  }


def chained(compiled: Callable, state: Any, *operands) -> Callable[[], Any]:
  """fn() that runs `state, info = compiled(*operands, state)`, feeding the state back.

  This is how a synthesis loop calls its step: x (and the optimizer moments) move
  from call to call. fn returns the new images.
  """
  holder = {"state": state}

  def call():
    holder["state"], _ = compiled(*operands, holder["state"])
    return holder["state"].x

  return call


def time_chained(
  args: argparse.Namespace, compiled: Callable, state: Any, *operands
) -> dict:
  """Times `state, info = compiled(*operands, state)` with the state fed back in.

  See `chained`; each timed call blocks on the new images.

  Returns:
    timing as from `time_cell`.
  """
  return time_cell(args, chained(compiled, state, *operands))


class CompileCounter(contextlib.AbstractContextManager):
  """Records every XLA backend compilation while active: (function name, seconds).

  Uses jax's monitoring hook for backend compiles, so it sees compilations from any
  jitted function (including ones inside library code), not only those timed here.
  """

  EVENT = "/jax/core/compile/backend_compile_duration"

  def __init__(self):
    self.events: list[tuple[str, float]] = []

  def _listener(self, event: str, duration: float, **kwargs) -> None:
    if event == self.EVENT:
      self.events.append((str(kwargs.get("fun_name", "?")), float(duration)))

  def __enter__(self):
    jax.monitoring.register_event_duration_secs_listener(self._listener)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._listener)
    return False

  def mark(self) -> int:
    """A position in the record, for `since`."""
    return len(self.events)

  def since(self, mark: int) -> list[tuple[str, float]]:
    """The compilations recorded after `mark`."""
    return self.events[mark:]


def max_rss_mb() -> float:
  """The process's peak resident set size so far (MB; monotonic over a run)."""
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def device_peak_memory_mb() -> Optional[float]:
  """Peak bytes in use on the default device (GPU/TPU), or None on CPU."""
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    return None
  if not stats or "peak_bytes_in_use" not in stats:
    return None
  return stats["peak_bytes_in_use"] / 2**20


def memory_fields(cinfo: dict) -> dict:
  """Memory columns of a cell: XLA's estimate of its executable, RSS, device peak.

  `xla_args_temp_mb` (arguments + temporaries) is what the executable needs beside
  its outputs; on CPU it is the best per-executable measure of device memory, the
  process RSS being monotonic and shared by everything the script ran before.
  """
  return {
    "xla_args_mb": cinfo.get("argument_mb"),
    "xla_temp_mb": cinfo.get("temp_mb"),
    "xla_args_temp_mb": (cinfo.get("argument_mb") or 0.0) + (cinfo.get("temp_mb") or 0.0),
    "max_rss_mb": max_rss_mb(),
    "device_peak_mb": device_peak_memory_mb(),
  }


# ----------------------------------------------------------------------------------
# FLOPs.


def classifier_flops(model: models.Classifier, height: int, width: int) -> dict:
  """Analytic forward FLOPs of one image through `model` (an innjax Classifier).

  Returns:
    dict with "layers" (list of (name, flops)), "forward" (total per image).
  """
  layers = []
  h, w, c_in = height, width, model.channels
  k = model.kernel_size
  for i, c_out in enumerate(model.features):
    h, w = -(-h // model.stride), -(-w // model.stride)  # "SAME" padding.
    layers.append((f"conv{i}", 2 * k * k * c_in * c_out * h * w))
    c_in = c_out
  layers.append(("logit", 2 * h * w * c_in * 1))
  return {"layers": layers, "forward": sum(f for _, f in layers)}


def grad_step_flops(
  model: models.Classifier,
  height: int,
  width: int,
  batch: int,
  stage_passes: int = 1,
  factor: float = GRAD_FLOPS_FACTOR,
) -> float:
  """FLOPs of `stage_passes` forward+input-gradient passes over a batch."""
  return factor * classifier_flops(model, height, width)["forward"] * batch * stage_passes


def train_step_flops(
  model: models.Classifier, height: int, width: int, batch: int
) -> float:
  """FLOPs of one classifier training update over a batch.

  Forward + weight gradients + input gradients of every layer but the first (the
  images need none): 3x forward minus the first convolution.
  """
  counts = classifier_flops(model, height, width)
  return (3 * counts["forward"] - counts["layers"][0][1]) * batch


def rate_fields(
  flops: float, median_s: float, items: float, peak_gflops: Optional[float]
) -> dict:
  """Throughput columns: items per second, GFLOP/s and percent of the measured peak."""
  gflops = flops / median_s / 1e9
  return {
    "items_per_s": items / median_s,
    "gflop": flops / 1e9,
    "gflops": gflops,
    "pct_peak": 100.0 * gflops / peak_gflops if peak_gflops else None,
  }


# ----------------------------------------------------------------------------------
# Inputs, variables and configs.


def random_images(key: jax.Array, batch: int, size: int, channels: int = 3) -> jax.Array:
  """N(0, 1) images clipped to [-1, 1] (never zeros: zeros can hit fast paths)."""
  return jnp.clip(
    jax.random.normal(key, (batch, size, size, channels), jnp.float32), -1.0, 1.0
  )


def stacked_variables(
  model: models.Classifier,
  size: int,
  num_stages: int,
  key: jax.Array,
  calib_batch: int = 64,
) -> Any:
  """`num_stages` distinct stages of `model`, stacked, with non-trivial BatchNorm state.

  Each stage gets its own initialisation. Its BatchNorm running mean/variance are
  set to the statistics of a random image batch (what a trained network carries,
  instead of the 0/1 defaults), and the BatchNorm scale and bias are perturbed away
  from 1 and 0. The conv biases get small random values too.

  Returns:
    {"params", "batch_stats"} with a leading stage axis of length `num_stages`.
  """
  dummy = jnp.zeros((1, size, size, model.channels), jnp.float32)
  # Calibration with momentum 0 makes the running averages exactly the batch stats;
  # im2col and xla share parameters and agree numerically, im2col is faster on CPU.
  calib = model.clone(bn_momentum=0.0, conv_impl="im2col")

  def one(k):
    k_init, k_x, k_p = jax.random.split(k, 3)
    variables = model.init(k_init, dummy, train=False)
    x = random_images(k_x, calib_batch, size, model.channels)
    _, updates = calib.apply(variables, x, train=True, mutable=["batch_stats"])
    params = variables["params"]
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(k_p, len(leaves))
    new = []
    for (path, leaf), kk in zip(leaves, keys):
      name = jax.tree_util.keystr(path)
      noise = jax.random.normal(kk, leaf.shape, leaf.dtype)
      if name.endswith("['scale']"):
        leaf = leaf + 0.1 * noise
      elif name.endswith("['bias']"):
        leaf = leaf + 0.02 * noise
      new.append(leaf)
    params = jax.tree_util.tree_unflatten(treedef, new)
    return {"params": params, "batch_stats": updates["batch_stats"]}

  # One compiled function called once per stage, then stacked: vmapping the init
  # over stages took ~1 min and several GB (the batched threefry draws) for 20 stages.
  one_jit = jax.jit(one)
  keys = jax.random.split(key, num_stages)
  return block(cascade.stack([one_jit(k) for k in keys]))


def load_config(name: str):
  """`configs/<name>.py`'s get_config(), e.g. load_config("svhn")."""
  return importlib.import_module(f"configs.{name}").get_config()


CIFAR_SUBSET = os.path.join(
  os.path.dirname(REPO_ROOT),
  "shared",
  "data",
  "cifar10_subset",
  "data_batch_1_partial.npz",
)


def offline_colour_data(config) -> str:
  """Points `config.data` at 32x32 colour images that need no download.

  SVHN itself needs tensorflow-datasets and internet. Stand-ins of the same shape:
  the CIFAR-10 subset beside the project (`../shared/data`) when it is there, else
  random crops of scikit-image's bundled `astronaut` photo.

  Returns:
    A short description of the data used.
  """
  config.data.image_size = 32
  config.data.channels = 3
  if os.path.isfile(CIFAR_SUBSET):
    config.data.source = "npz"
    config.data.path = CIFAR_SUBSET
    return "CIFAR-10 subset (1017 images, 32x32x3) standing in for SVHN"
  config.data.source = "skimage"
  config.data.name = "astronaut"
  config.data.num_crops = 1000
  config.data.crop_scale = 0.25
  return "1000 random 32x32 crops of skimage's astronaut standing in for SVHN"


def scaled_svhn_config(
  stages: int,
  updates: int,
  negatives: int,
  batch: int,
  max_steps: int,
  energy: str = "sum",
):
  """configs/svhn.py (the paper network, 32x32x3) scaled down to run in minutes.

  Args:
    stages: number of stages (slots of the preallocated cascade).
    updates: classifier updates per stage (in chunks of half as many).
    negatives: pseudo-negatives synthesised per stage; the pool keeps all stages'.
    batch: the synthesis batch (negatives are padded up to a multiple of it).
    max_steps: the synthesis step cap (training and sampling).
    energy: "sum" (the SVHN config) or "sequential".

  Returns:
    (config, description of the offline stand-in data).
  """
  config = load_config("svhn")
  data = offline_colour_data(config)
  config.num_stages = stages
  config.train.steps_per_stage = updates
  config.train.log_every = max(1, updates // 2)
  config.pool.negatives_per_stage = negatives
  config.pool.capacity = negatives * (stages + 1)
  config.synthesis.batch_size = batch
  config.synthesis.max_steps = max_steps
  config.synthesis.mode = energy
  config.sample.max_steps = max_steps
  config.sample.batch_size = batch
  config.grid_size = min(64, negatives)
  return config, data


# ----------------------------------------------------------------------------------
# Peak.


def matmul_peak(
  n: int = 2048, repeats: int = 10, key: Optional[jax.Array] = None
) -> dict:
  """A measured float32 (n x n) @ (n x n) rate in GFLOP/s on the default device."""
  key = jax.random.PRNGKey(123) if key is None else key
  ka, kb = jax.random.split(key)
  a = jax.random.normal(ka, (n, n), jnp.float32)
  b = jax.random.normal(kb, (n, n), jnp.float32)
  compiled, _ = compile_jitted(jnp.matmul, a, b)
  timing = time_calls(lambda: compiled(a, b), repeats=repeats, warmup=2)
  flops = 2.0 * n**3
  return {
    "n": n,
    "median_gflops": flops / timing["median_s"] / 1e9,
    "best_gflops": flops / timing["min_s"] / 1e9,
    "median_s": timing["median_s"],
  }


# ----------------------------------------------------------------------------------
# Output.


def fmt(value: Any, digits: int = 1) -> str:
  """A table cell: '-' for None/NaN, thousands separators for floats."""
  if value is None:
    return "-"
  if isinstance(value, float):
    if not np.isfinite(value):
      return "-"
    return f"{value:,.{digits}f}"
  return str(value)


def verdict(ok: Optional[bool]) -> str:
  """'met' / 'NOT met' / 'n/a' for a target."""
  if ok is None:
    return "n/a"
  return "met" if ok else "NOT met"


def markdown_table(
  headers: Sequence[str], rows: Sequence[Sequence[Any]], align: Optional[str] = None
) -> str:
  """A GitHub markdown table; `align` is one char per column, 'l' or 'r'."""
  cells = [[str(c) for c in row] for row in rows]
  widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
  align = align or ("l" + "r" * (len(headers) - 1))

  def line(values):
    out = []
    for v, w, a in zip(values, widths, align):
      out.append(v.ljust(w) if a == "l" else v.rjust(w))
    return "| " + " | ".join(out) + " |"

  sep = (
    "|"
    + "|".join(
      ("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1))
      for w, a in zip(widths, align)
    )
    + "|"
  )
  return "\n".join([line(headers), sep] + [line(r) for r in cells])


def write_json(path: Optional[str], payload: dict) -> None:
  """Writes `payload` as JSON to `path` (no-op when path is None)."""
  if not path:
    return
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with open(path, "w") as f:
    json.dump(payload, f, indent=2, default=_json_default)
  print(f"\nwrote {path}")


def _json_default(obj):
  if isinstance(obj, (np.floating, np.integer)):
    return obj.item()
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  return str(obj)


def log(msg: str) -> None:
  """Progress to stderr, so stdout stays a clean markdown report."""
  print(msg, file=sys.stderr, flush=True)
