"""Runs one side of the multi-device tests in its own process (tests/test_multidevice.py).

The number of CPU devices is fixed when JAX starts, so each device count runs in a
separate process: the test launches this script with
`XLA_FLAGS=--xla_force_host_platform_device_count=8` (or without it) and compares the
arrays it writes.

  python tests/multidevice_worker.py one   OUT   # 1 device: a 2-stage run
  python tests/multidevice_worker.py eight OUT   # 8 devices: the same run, restores and
                                                 # resumes the 1-device run, sampler check
  python tests/multidevice_worker.py back  OUT   # 1 device: restores and resumes the
                                                 # 8-device run
  python tests/multidevice_worker.py host0 OUT   # with host1 beside it: two processes
                                                 # (jax.distributed), 4 devices each

Each task writes OUT/<name>.npz (every leaf of a TrainState, by path) and
OUT/<task>.json (shardings, sampler steps, messages, timings).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import tiny
from innjax import checkpointing
from innjax import sampler as sampler_lib
from innjax import sharding
from innjax import synthesis
from innjax import train


def make_config(mesh_data: int):
  """The tiny config, 2 stages, with a sampler that takes several steps per stage."""
  config = tiny.get_config()
  config.num_stages = 2
  config.synthesis.stop_prob = 0.8  # tiny's negatives cross 0.5 after one step
  config.mesh.data = mesh_data
  return config


def save_state(state, path: str) -> None:
  """Writes every array of `state` (the key as its raw data) to an .npz, by path."""
  state = state.replace(key=jax.random.key_data(state.key))
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  np.savez(
    path, **{jax.tree_util.keystr(p): np.asarray(jax.device_get(v)) for p, v in leaves}
  )


def spec(x) -> str:
  """The PartitionSpec of `x`, as text."""
  return str(getattr(x.sharding, "spec", x.sharding))


def resume_from_stage_one(config, source: str, workdir: str):
  """Copies `source`'s stage-1 checkpoint into a new workdir and trains on from it."""
  os.makedirs(os.path.join(workdir, "checkpoints"))
  shutil.copytree(
    os.path.join(source, "checkpoints", "1"), os.path.join(workdir, "checkpoints", "1")
  )
  return train.train(config, workdir)


def restore_final(config, workdir: str):
  """The final state of `workdir`, restored onto this process's mesh (no training)."""
  return train.train(config, workdir)  # every stage done: restore only


def sampler_check() -> dict:
  """The sampler's early stop uses the global batch mean when the batch is sharded.

  Eight chains start at different constant images under a logit that grows with the
  image mean, so each chain alone would cross P(real) = 0.8 after a different number
  of steps; the batch mean crosses after one number of steps, and the 8-device run
  must stop exactly there.
  """

  def logit_fn(params, x):
    return params["w"] * jnp.mean(x, axis=(1, 2, 3)) + params["b"]

  params = {"w": jnp.full((1,), 4.0), "b": jnp.zeros((1,))}
  s = sampler_lib.make_sampler(
    logit_fn, step_size=0.05, beta1=0.5, max_steps=100, stop_prob=0.8, clip=(-1.0, 1.0)
  )
  x0 = jnp.linspace(-0.8, 0.6, 8)[:, None, None, None] * jnp.ones((8, 4, 4, 1))
  key = jax.random.key(0)
  mesh = sharding.make_mesh(make_config(0))
  run8 = synthesis.jit_run(s, mesh)
  x8, info8 = run8(params, x0, key)
  x1, info1 = jax.jit(s.run)(params, jax.device_put(x0, jax.devices()[0]), key)
  alone = [int(jax.jit(s.run)(params, x0[i : i + 1], key)[1].steps) for i in range(8)]
  hlo = run8.lower(params, x0, key).compile().as_text()
  return {
    "steps_8": int(info8.steps),
    "steps_1": int(info1.steps),
    "steps_each_chain_alone": alone,
    "max_abs_diff_x": float(np.max(np.abs(np.asarray(x8) - np.asarray(x1)))),
    "x_spec": spec(x8),
    "num_shards": len(x8.addressable_shards),
    "all_reduce_in_hlo": "all-reduce" in hlo,
  }


def two_hosts(process_id: int, port: int) -> dict:
  """The multi-host paths, with two processes of 4 CPU devices on this machine.

  Process 0 holds rows 0-6 of a dataset and process 1 rows 7-12; the global array
  pads each block to 8 rows, and every row drawn through the layout is the right one.
  A fresh training state placed on the 8-device mesh holds what each process computed.
  """
  sharding.initialize_distributed(f"localhost:{port}", 2, process_id)
  config = make_config(0)
  mesh = sharding.make_mesh(config)
  local = np.arange(7) if process_id == 0 else np.arange(7, 13)
  rows, layout = sharding.distribute_rows(local, mesh)
  drawn = jax.jit(lambda a: a[layout.positions(jnp.arange(13))])(rows)
  model = synthesis.build_model(config)
  state = train.init_state(config, model, jax.random.key(0))
  placed = sharding.place(state, sharding.state_shardings(state, mesh))
  return {
    "process_count": jax.process_count(),
    "mesh_size": mesh.size,
    "local_devices": jax.local_device_count(),
    "rows_shape": list(rows.shape),
    "counts": list(layout.counts),
    "offsets": list(layout.offsets),
    "drawn": sharding.to_host(drawn).tolist(),
    "placed_pool_equal": bool(
      np.array_equal(sharding.to_host(placed.pool.images), np.asarray(state.pool.images))
    ),
    "placed_key_equal": bool(
      np.array_equal(
        sharding.to_host(jax.random.key_data(placed.key)),
        np.asarray(jax.random.key_data(state.key)),
      )
    ),
    "pool_spec": spec(placed.pool.images),
  }


def main(task: str, out: str) -> None:
  """Runs `task` (one, eight or back), writing into the folder `out`."""
  report = {}
  t0 = time.perf_counter()
  if task == "one":
    state = train.train(make_config(1), os.path.join(out, "w1"))
    save_state(state, os.path.join(out, "one.npz"))
  elif task == "eight":
    config = make_config(0)
    config.checkpoint.async_save = True  # saves overlap the donated training steps
    state = train.train(config, os.path.join(out, "w8"))
    save_state(state, os.path.join(out, "eight.npz"))
    report["specs"] = {
      "params": spec(jax.tree_util.tree_leaves(state.params)[0]),
      "cascade": spec(jax.tree_util.tree_leaves(state.cascade)[0]),
      "pool.images": spec(state.pool.images),
      "negatives": spec(state.negatives),
      "key": spec(state.key),
    }
    report["mesh_size"] = sharding.make_mesh(config).size
    save_state(
      restore_final(config, os.path.join(out, "w1")),
      os.path.join(out, "eight_restored_from_one.npz"),
    )
    save_state(
      resume_from_stage_one(config, os.path.join(out, "w1"), os.path.join(out, "r18")),
      os.path.join(out, "resumed_one_to_eight.npz"),
    )
    report["sampler"] = sampler_check()
    # 13 rows do not split over 8 devices: padded to 16, and the padding never drawn.
    rows, layout = sharding.distribute_rows(
      np.arange(13, dtype=np.uint8), sharding.make_mesh(config)
    )
    report["rows"] = {
      "shape": list(rows.shape),
      "spec": spec(rows),
      "num_rows": layout.num_rows,
      "values": np.asarray(rows).tolist(),
    }
    bad = make_config(0)
    bad.train.pos_batch = 6
    try:
      train.train(bad, os.path.join(out, "bad"))
    except ValueError as err:
      report["bad_batch_error"] = str(err)
  elif task.startswith("host"):  # host0 / host1: one of two processes on this machine
    report.update(two_hosts(int(task[4:]), int(os.environ["INNJAX_TEST_PORT"])))
  elif task == "back":
    config = make_config(1)
    save_state(
      restore_final(config, os.path.join(out, "w8")),
      os.path.join(out, "back_restored_from_eight.npz"),
    )
    save_state(
      resume_from_stage_one(config, os.path.join(out, "w8"), os.path.join(out, "r81")),
      os.path.join(out, "resumed_eight_to_one.npz"),
    )
    # A reader that gives no shardings (as benchmarks and older callers do) gets
    # the arrays on its first device, not a demand for the eight that saved them.
    model = synthesis.build_model(config)
    template = jax.eval_shape(lambda: train.init_state(config, model, jax.random.key(0)))
    manager = checkpointing.Manager(os.path.join(out, "w8"), config, read_only=True)
    save_state(
      manager.restore_latest(template),
      os.path.join(out, "back_reader_restored_from_eight.npz"),
    )
    manager.close()
  else:
    raise ValueError(f"unknown task {task!r}")
  report["seconds"] = time.perf_counter() - t0
  report["devices"] = jax.device_count()  # after the task: host tasks start JAX there
  with open(os.path.join(out, f"{task}.json"), "w") as f:
    json.dump(report, f, indent=1)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2])
