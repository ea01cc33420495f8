"""innjax.runtime: XLA:CPU flags and the compilation cache never override a person's."""

import jax
import pytest

from innjax import runtime


@pytest.fixture
def flags(monkeypatch):
  monkeypatch.setattr(runtime, "CPU_XLA_FLAGS", ("--xla_cpu_use_xnnpack=true",))


def test_flags_are_added_to_an_empty_environment(flags):
  env = {}
  assert runtime.cpu_xla_flags(env) == "--xla_cpu_use_xnnpack=true"


def test_a_persons_own_flags_are_kept_and_theirs_win(flags):
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  assert runtime.cpu_xla_flags(env) == (
    "--xla_force_host_platform_device_count=8 --xla_cpu_use_xnnpack=true"
  )
  env = {"XLA_FLAGS": "--xla_cpu_use_xnnpack=false"}
  assert runtime.cpu_xla_flags(env) == "--xla_cpu_use_xnnpack=false"


def test_cache_folder_is_under_the_users_cache(tmp_path):
  assert runtime.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == str(
    tmp_path / "innjax" / "jax"
  )


def test_cache_is_turned_on_unless_refused_or_already_chosen(tmp_path):
  before = (
    jax.config.jax_compilation_cache_dir,
    jax.config.jax_persistent_cache_min_compile_time_secs,
  )
  try:
    assert runtime.enable_compilation_cache({"INNJAX_NO_CACHE": "1"}) is None
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
    assert runtime.enable_compilation_cache({}) == str(tmp_path / "mine")
    jax.config.update("jax_compilation_cache_dir", None)
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    assert runtime.enable_compilation_cache(env) == runtime.cache_dir(env)
    assert jax.config.jax_compilation_cache_dir == runtime.cache_dir(env)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
  finally:
    jax.config.update("jax_compilation_cache_dir", before[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
