"""Data parallelism on 8 CPU devices: same results as 1 device, checkpoints move freely.

The device count is fixed when JAX starts, so the runs happen in subprocesses
(tests/multidevice_worker.py) with `XLA_FLAGS=--xla_force_host_platform_device_count=8`
or without it; this process keeps its single device. One module fixture runs, in turn:

1. one device: a 2-stage tiny run;
2. eight devices: the same run; restoring the 1-device checkpoint; resuming the
   1-device run's stage-1 checkpoint for stage 2; the sampler's early stop on a sharded
   batch; a batch that does not split over the devices;
3. one device: restoring the 8-device checkpoint and resuming its stage-1 checkpoint.

The subprocesses share a persistent compilation cache (in the test's temporary folder)
so that the third one reuses what the first compiled. A last test starts two processes
at once, joined by `jax.distributed` over localhost with 4 CPU devices each, for the
multi-host paths (per-host rows assembled into one array, placing a fresh state).
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import tiny
from innjax import sharding
from innjax import synthesis
from innjax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "multidevice_worker.py")
DEVICE_FLAG = "--xla_force_host_platform_device_count"
# Different summation orders across devices move float32 values by a few 1e-6 here.
TOLERANCE = 1e-4


def _worker_env(out, devices, **extra):
  env = dict(os.environ)
  flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(DEVICE_FLAG)]
  if devices > 1:
    flags.append(f"{DEVICE_FLAG}={devices}")
  env.update(
    XLA_FLAGS=" ".join(flags),
    JAX_PLATFORMS="cpu",
    PYTHONPATH=os.pathsep.join([REPO, env.get("PYTHONPATH", "")]),
    JAX_COMPILATION_CACHE_DIR=os.path.join(out, "jax_cache"),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    **extra,
  )
  return env


def _report(out, task):
  with open(os.path.join(out, f"{task}.json")) as f:
    return json.load(f)


def _run_worker(task, out, devices):
  result = subprocess.run(
    [sys.executable, WORKER, task, out],
    env=_worker_env(out, devices),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=1200,
  )
  if result.returncode:
    pytest.fail(f"worker {task!r} failed:\n{result.stderr[-6000:]}")
  return _report(out, task)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("multidevice"))
  reports = {
    "one": _run_worker("one", out, 1),
    "eight": _run_worker("eight", out, 8),
    "back": _run_worker("back", out, 1),
  }
  load = lambda name: dict(np.load(os.path.join(out, f"{name}.npz")))
  return reports, load


def _max_diff(a, b):
  assert sorted(a) == sorted(b)
  return max(
    float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64))))
    if a[k].size
    else 0.0
    for k in a
  )


def _assert_equal(a, b):
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_eight_devices_give_the_one_device_result(runs):
  reports, load = runs
  assert reports["one"]["devices"] == 1 and reports["eight"]["devices"] == 8
  assert reports["eight"]["mesh_size"] == 8
  one, eight = load("one"), load("eight")
  # Integer state (stages, pool tags, PRNG key) is identical: same batches, same steps.
  for k in (".stage", ".pool.stage", ".pool.next_slot", ".key"):
    np.testing.assert_array_equal(one[k], eight[k], err_msg=k)
  for part in (".params", ".cascade", ".negatives", ".pool.images"):
    subset = lambda d: {k: v for k, v in d.items() if k.startswith(part)}
    diff = _max_diff(subset(one), subset(eight))
    print(f"1 vs 8 devices, max |difference| of {part}: {diff:.2e}")
    assert diff < TOLERANCE, part


def test_the_state_is_placed_as_documented(runs):
  reports, _ = runs
  assert reports["eight"]["specs"] == {
    "params": "P()",
    "cascade": "P()",
    "key": "P()",
    "pool.images": "P('data',)",
    "negatives": "P('data',)",
  }


def test_checkpoints_restore_exactly_across_device_counts(runs):
  _, load = runs
  _assert_equal(load("eight_restored_from_one"), load("one"))  # 1 -> 8
  _assert_equal(load("back_restored_from_eight"), load("eight"))  # 8 -> 1
  # A reader that passes no shardings gets the 8-device checkpoint on its one device.
  _assert_equal(load("back_reader_restored_from_eight"), load("eight"))


def test_training_resumes_on_another_device_count(runs):
  _, load = runs
  assert _max_diff(load("resumed_one_to_eight"), load("one")) < TOLERANCE
  assert _max_diff(load("resumed_eight_to_one"), load("eight")) < TOLERANCE


def test_sampler_early_stop_is_a_global_mean_over_devices(runs):
  reports, _ = runs
  s = reports["eight"]["sampler"]
  assert s["num_shards"] == 8 and s["x_spec"] == "P('data',)"
  assert s["all_reduce_in_hlo"]
  # Each device holds one chain; alone they would stop after different numbers of
  # steps, so a per-device mean could not give the batch's single answer.
  assert len(set(s["steps_each_chain_alone"])) > 2
  assert s["steps_8"] == s["steps_1"]
  assert s["max_abs_diff_x"] < TOLERANCE


def test_rows_that_do_not_split_evenly_are_padded(runs):
  reports, _ = runs
  rows = reports["eight"]["rows"]
  assert rows["shape"] == [16] and rows["spec"] == "P('data',)"
  assert rows["num_rows"] == 13 and rows["values"][:13] == list(range(13))


def test_a_batch_that_does_not_split_over_the_devices_is_refused(runs):
  reports, _ = runs
  message = reports["eight"]["bad_batch_error"]
  assert "train.pos_batch=6" in message and "8 devices" in message
  assert "--config.train.pos_batch=8" in message and "batch_per_device" in message


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_assemble_one_global_array(tmp_path):
  """The multi-host path: two processes (jax.distributed, 4 CPU devices each)."""
  out = str(tmp_path)
  env = _worker_env(
    out, 4, JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo", INNJAX_TEST_PORT=str(_free_port())
  )
  workers = [
    subprocess.Popen(
      [sys.executable, WORKER, f"host{i}", out],
      env=env,
      cwd=REPO,
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in (0, 1)
  ]
  try:
    errors = [w.communicate(timeout=600)[1] for w in workers]
  finally:
    for w in workers:
      w.kill()
  for i, w in enumerate(workers):
    if w.returncode:
      pytest.fail(f"process {i} failed:\n{errors[i][-6000:]}")
  for i in (0, 1):
    r = _report(out, f"host{i}")
    assert (r["process_count"], r["mesh_size"], r["local_devices"]) == (2, 8, 4)
    assert r["counts"] == [7, 6] and r["rows_shape"] == [16]  # 2 blocks of 8 rows
    assert r["offsets"] == [0, 8]
    assert r["drawn"] == list(range(13))  # the padding is never drawn
    assert r["placed_pool_equal"] and r["placed_key_equal"]
    assert r["pool_spec"] == "P('data',)"


# In-process checks: pure functions, on this process's single device.


def test_row_layout_maps_indices_past_each_hosts_padding():
  layout = sharding.RowLayout(counts=(3, 2), offsets=(0, 4))
  assert layout.num_rows == 5
  np.testing.assert_array_equal(layout.positions(np.arange(5)), [0, 1, 2, 4, 5])
  single = sharding.RowLayout(counts=(7,), offsets=(0,))
  np.testing.assert_array_equal(single.positions(np.arange(7)), np.arange(7))


@pytest.mark.parametrize(
  "value, match", [(jax.device_count() + 1, "asks for"), (-2, "mesh.data")]
)
def test_bad_mesh_sizes_are_rejected(value, match):
  config = tiny.get_config()
  config.mesh.data = value
  with pytest.raises(ValueError, match=match):
    sharding.make_mesh(config)


def test_default_mesh_is_one_device_and_batches_can_be_per_device():
  config = tiny.get_config()
  assert sharding.make_mesh(config).size == 1
  assert sharding.global_batch_config(config, 8) is config  # global batches: unchanged
  config.mesh.batch_per_device = True
  scaled = sharding.global_batch_config(config, 8)
  assert (scaled.train.pos_batch, scaled.train.neg_batch) == (64, 64)
  assert (scaled.synthesis.batch_size, scaled.sample.batch_size) == (64, 64)
  assert config.train.pos_batch == 8  # the original is untouched
  sharding.check_divisible(scaled, 8)


def test_state_shardings_replicate_all_but_the_rows():
  config = tiny.get_config()
  model = synthesis.build_model(config)
  template = jax.eval_shape(lambda: train.init_state(config, model, jax.random.key(0)))
  mesh = sharding.make_mesh(config)
  target = sharding.with_shardings(template, sharding.state_shardings(template, mesh))
  assert target.pool.images.sharding.spec == jax.sharding.PartitionSpec("data")
  assert target.params["conv0"]["kernel"].sharding.spec == jax.sharding.PartitionSpec()
  assert target.pool.images.shape == template.pool.images.shape
