"""Process-wide JAX settings that innjax's entry points apply before JAX starts.

* `cpu_xla_flags()`: XLA:CPU flags that measured faster for innjax's networks and
  keep the results numerically equal (docs/performance.md, benchmarks/xla_flags.py).
  They are added to `XLA_FLAGS` only when the environment does not name the flag
  already, so a person's own `XLA_FLAGS` always wins (`--xla_cpu_use_xnnpack=false`
  turns one off). XLA reads the variable once, when its CPU client starts, so this
  must run before the first JAX computation; afterwards it does nothing.
* `enable_compilation_cache()`: JAX's persistent compilation cache under the user's
  cache folder (`$XDG_CACHE_HOME/innjax/jax`, else `~/.cache/innjax/jax`), so that a
  resume or a `--mode=sample` after training reuses the programs compiled before. A
  cache folder set by the person (`JAX_COMPILATION_CACHE_DIR`, or
  `jax.config.update("jax_compilation_cache_dir", ...)`) is kept; `INNJAX_NO_CACHE=1`
  leaves the cache off. Every program is stored, not only those that took a second
  to compile (unless `JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS` says otherwise).

`python main.py` applies both; `import innjax` applies the flags (not the cache: a
library does not write to the home folder unasked), and a library user may call
`innjax.runtime.configure()` before the first computation for both.
"""

from __future__ import annotations

import os

# XNNPACK's kernels for XLA:CPU's dots and convolutions: the classifier training
# step 2.0-4.2x and the 64x64 sampler step 1.5-2.1x faster on an AMD EPYC (AVX-512),
# with the same logits and gradients (docs/performance.md, "XLA:CPU flags").
CPU_XLA_FLAGS: tuple[str, ...] = ("--xla_cpu_use_xnnpack=true",)


def _flag_name(flag: str) -> str:
  return flag.split("=", 1)[0].lstrip("-")


def cpu_xla_flags(environ=None) -> str:
  """Adds `CPU_XLA_FLAGS` to `XLA_FLAGS` in `environ` (default os.environ).

  A flag the variable already names, with any value, is left as the person set it.

  Returns:
    The resulting XLA_FLAGS value.
  """
  environ = os.environ if environ is None else environ
  current = environ.get("XLA_FLAGS", "")
  named = {_flag_name(f) for f in current.split()}
  added = [f for f in CPU_XLA_FLAGS if _flag_name(f) not in named]
  if added:
    environ["XLA_FLAGS"] = " ".join([current] + added if current else added)
  return environ.get("XLA_FLAGS", "")


def cache_dir(environ=None) -> str:
  """The user's cache folder for compiled programs: ~/.cache/innjax/jax."""
  environ = os.environ if environ is None else environ
  base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "innjax", "jax")


def enable_compilation_cache(environ=None) -> str | None:
  """Turns JAX's persistent compilation cache on in `cache_dir()`, unless set or refused.

  Returns:
    The cache folder in use, or None when the cache stays off.
  """
  import jax  # pylint: disable=import-outside-toplevel

  environ = os.environ if environ is None else environ
  if environ.get("INNJAX_NO_CACHE"):
    return None
  if jax.config.jax_compilation_cache_dir:  # the person's own choice (also the env var)
    return jax.config.jax_compilation_cache_dir
  folder = cache_dir(environ)
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError:  # a read-only home: run without the cache rather than fail
    return None
  jax.config.update("jax_compilation_cache_dir", folder)
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in environ:
    # JAX stores only programs that took a second or more to compile; innjax's take
    # less each on a CPU but 10-30 s together in a --mode=sample run (entries are
    # tens of kB), so every program is kept.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  return folder


def configure() -> None:
  """Both settings above; call before the first JAX computation."""
  cpu_xla_flags()
  enable_compilation_cache()
