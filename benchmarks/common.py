"""Shared helpers for the innjax benchmark scripts (not part of the library or tests).

What lives here:

* `machine_info` / `machine_markdown`: CPU model, core count, load, jax backend and
  devices, so every table says where it was measured.
* `compile_jitted`: trace + lower and XLA compile timed separately (via
  ``jax.jit(f).lower(...).compile()``), plus XLA's own buffer-size estimate.
* `time_calls`: warm-up calls, then timed calls, each ending in
  ``jax.block_until_ready``; reports the median (and min/max).
* `classifier_flops`: analytic FLOP count of an `innjax.models.Classifier` forward
  pass, and `GRAD_FLOPS_FACTOR`, the convention for an input-gradient step.
* `stacked_variables`: T distinct classifier stages, stacked along a leading axis,
  with non-trivial BatchNorm statistics (running mean/var set from a random batch,
  scale/bias perturbed), so nothing is timed on zeros or on identity BatchNorms.
* `random_images`: N(0, 1) clipped to [-1, 1].
* `matmul_peak`: a measured dense float32 matmul rate, the "peak" the tables compare
  against.
* `markdown_table`, `write_json`, `add_common_args`.

FLOP convention (used by every script): a convolution layer costs
2*k*k*C_in*C_out*H_out*W_out FLOPs per image forward, the dense layer 2*D; bias,
BatchNorm and leaky ReLU are not counted. The gradient with respect to the input
only (the sampler never needs weight gradients) costs one transposed convolution
per layer, the same FLOPs as the forward, so a forward + input-gradient step counts
as 2x the forward FLOPs (`GRAD_FLOPS_FACTOR`). The "3x forward" often quoted is a
training step (it adds the weight gradient); pass ``--grad-factor 3`` to report in
that convention (it overstates the work done here by 1.5x).
"""

from __future__ import annotations

import argparse
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

from innjax import cascade, models

GRAD_FLOPS_FACTOR = 2.0

FLOP_NOTE = (
    "FLOPs: per image forward = sum over convs of 2*k*k*Cin*Cout*Hout*Wout + 2*D for "
    "the dense (bias/BN/activations not counted); a forward + input-gradient step "
    "counts as {factor:g}x forward. GFLOP/s = counted FLOPs / median wall time.")


# ----------------------------------------------------------------------------------
# Command line.


def add_common_args(parser: argparse.ArgumentParser, repeats: int = 5) -> None:
  """Adds the flags every benchmark shares."""
  parser.add_argument("--quick", action="store_true",
                      help="a smaller grid / batch / repeat count for a smoke run")
  parser.add_argument("--repeats", type=int, default=None,
                      help=f"timed calls per cell after warm-up (default {repeats}, "
                      "quick 3); the median is reported")
  parser.add_argument("--warmup", type=int, default=1,
                      help="untimed calls per cell after compilation (default 1)")
  parser.add_argument("--cell-budget", type=float, default=None,
                      help="seconds of timed calls per cell; slow cells get fewer "
                      "repeats (never fewer than --min-repeats)")
  parser.add_argument("--min-repeats", type=int, default=2,
                      help="lower bound on timed calls when --cell-budget cuts a "
                      "cell short (default 2)")
  parser.add_argument("--grad-factor", type=float, default=GRAD_FLOPS_FACTOR,
                      help="FLOPs of a forward+input-gradient step as a multiple of "
                      "the forward (default 2; 3 is the training-step convention)")
  parser.add_argument("--matmul-n", type=int, default=2048,
                      help="size of the square float32 matmul used as the peak")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json", type=str, default=None, metavar="PATH",
                      help="also write all results as JSON to PATH")


def default_repeats(args: argparse.Namespace, full: int) -> int:
  if args.repeats is not None:
    return max(1, args.repeats)
  return 3 if args.quick else full


def parse_int_list(text: str) -> list[int]:
  return [int(v) for v in text.split(",") if v.strip()]


def parse_str_list(text: str) -> list[str]:
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
      "jaxlib": getattr(sys.modules.get("jaxlib"), "__version__", None)
                or _jaxlib_version(),
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
  lines = [
      f"- CPU: {info['cpu_model']} ({info['cpu_flags']}); "
      f"{info['usable_cpus']} usable of {info['logical_cpus']} logical CPUs"
      + (f", cgroup quota {info['cgroup_cpu_quota']}" if info["cgroup_cpu_quota"] else ""),
      f"- load average at start: "
      + ", ".join(f"{v:.2f}" for v in info["load_average_at_start"])
      + " (other processes share this machine; expect noise)",
      f"- jax {info['jax']} (jaxlib {info['jaxlib']}), flax {info['flax']}, "
      f"python {info['python']}; backend {info['backend']}, "
      f"{info['num_devices']} x {info['device']} {info['device_kind']}",
  ]
  if info["xla_flags"]:
    lines.append(f"- XLA_FLAGS: {info['xla_flags']}")
  return "\n".join(lines)


# ----------------------------------------------------------------------------------
# Timing.


def block(tree: Any) -> Any:
  return jax.block_until_ready(tree)


def compile_jitted(fn: Callable, *args, **jit_kwargs) -> tuple[Any, dict]:
  """jit-lowers and compiles `fn` for `args`, timing the two phases separately.

  Returns:
    (compiled, info): `compiled(*args)` runs the executable; info has trace_lower_s,
    compile_s and XLA's memory analysis in MB where the backend provides it.
  """
  jitted = jax.jit(fn, **jit_kwargs)
  t0 = time.perf_counter()
  lowered = jitted.lower(*args)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  info = {"trace_lower_s": t1 - t0, "compile_s": t2 - t1}
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
  for name in ("argument_size_in_bytes", "output_size_in_bytes",
               "temp_size_in_bytes", "generated_code_size_in_bytes"):
    value = getattr(mem, name, None)
    if value is not None:
      out[name.replace("_size_in_bytes", "_mb")] = value / 2**20
  return out


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1,
               budget_s: Optional[float] = None, min_repeats: int = 1) -> dict:
  """Times `fn()` (which must return jax values) after warm-up; the median is the result.

  Every call is followed by `jax.block_until_ready` before the clock is read. When
  `budget_s` is given and the warm-up call shows that `repeats` calls would take
  longer, the number of timed calls is cut (to at least `min_repeats`).

  Returns:
    dict with warmup_s (list), times_s (list), median_s, min_s, max_s, repeats.
  """
  warm = []
  for _ in range(max(warmup, 0)):
    t0 = time.perf_counter()
    block(fn())
    warm.append(time.perf_counter() - t0)
  n = repeats
  if budget_s is not None and warm:
    n = int(min(repeats, max(min_repeats, budget_s // max(warm[-1], 1e-9))))
  times = []
  for _ in range(max(n, 1)):
    t0 = time.perf_counter()
    block(fn())
    times.append(time.perf_counter() - t0)
  return {
      "warmup_s": warm, "times_s": times, "repeats": len(times),
      "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
  }


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


def grad_step_flops(model: models.Classifier, height: int, width: int, batch: int,
                    stage_passes: int = 1,
                    factor: float = GRAD_FLOPS_FACTOR) -> float:
  """FLOPs of `stage_passes` forward+input-gradient passes over a batch."""
  return factor * classifier_flops(model, height, width)["forward"] * batch * \
      stage_passes


# ----------------------------------------------------------------------------------
# Inputs and variables.


def random_images(key: jax.Array, batch: int, size: int, channels: int = 3
                  ) -> jax.Array:
  """N(0, 1) images clipped to [-1, 1] (never zeros: zeros can hit fast paths)."""
  return jnp.clip(jax.random.normal(key, (batch, size, size, channels), jnp.float32),
                  -1.0, 1.0)


def stacked_variables(model: models.Classifier, size: int, num_stages: int,
                      key: jax.Array, calib_batch: int = 64) -> Any:
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


# ----------------------------------------------------------------------------------
# Peak.


def matmul_peak(n: int = 2048, repeats: int = 10, key: Optional[jax.Array] = None
                ) -> dict:
  """A measured float32 (n x n) @ (n x n) rate in GFLOP/s on the default device."""
  key = jax.random.PRNGKey(123) if key is None else key
  ka, kb = jax.random.split(key)
  a = jax.random.normal(ka, (n, n), jnp.float32)
  b = jax.random.normal(kb, (n, n), jnp.float32)
  compiled, _ = compile_jitted(jnp.matmul, a, b)
  timing = time_calls(lambda: compiled(a, b), repeats=repeats, warmup=2)
  flops = 2.0 * n ** 3
  return {
      "n": n, "median_gflops": flops / timing["median_s"] / 1e9,
      "best_gflops": flops / timing["min_s"] / 1e9, "median_s": timing["median_s"],
  }


# ----------------------------------------------------------------------------------
# Output.


def fmt(value: Any, digits: int = 1) -> str:
  if value is None:
    return "-"
  if isinstance(value, float):
    if not np.isfinite(value):
      return "-"
    return f"{value:,.{digits}f}"
  return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                   align: Optional[str] = None) -> str:
  """A GitHub markdown table; `align` is one char per column, 'l' or 'r'."""
  cells = [[str(c) for c in row] for row in rows]
  widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
  align = align or ("l" + "r" * (len(headers) - 1))

  def line(values):
    out = []
    for v, w, a in zip(values, widths, align):
      out.append(v.ljust(w) if a == "l" else v.rjust(w))
    return "| " + " | ".join(out) + " |"

  sep = "|" + "|".join(
      ("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1))
      for w, a in zip(widths, align)) + "|"
  return "\n".join([line(headers), sep] + [line(r) for r in cells])


def write_json(path: Optional[str], payload: dict) -> None:
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
