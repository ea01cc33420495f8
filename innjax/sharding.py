"""Data parallelism with `jax.sharding`: the device mesh and where each array lives.

innjax scales out with JAX's own runtime and nothing else. One `Mesh` with a single
axis, "data", spans the devices (`config.mesh.data`: 1 = one device, the default; 0 =
every device of every host; k = the first k devices). Arrays carry a `NamedSharding`,
jitted functions state the shardings of what they return, and the compiler (XLA's SPMD
partitioner) inserts every collective. What lives where:

* replicated on every device: the classifier, its optimizer state, the stacked
  cascade, the active-slot mask, the PRNG key and the stage counter. Every device needs
  all of them at every step, and replicated parameters make the gradient reduction one
  all-reduce that the compiler adds;
* sharded along the data axis ("rows"): the pseudo-negative pool (images and stage
  tags), the latest negatives and the positives. Memory per device falls with the
  device count, and a draw of a batch from a row-sharded array compiles to a local
  gather on each device plus an all-reduce of the batch-sized result: the pool is never
  gathered onto one device. An array whose leading size is not divisible by the device
  count is replicated instead, which costs memory but never changes a result;
* batch-sharded inside the jitted steps: the classifier's batch and the sampler's
  batch of pseudo-negatives. Batch reductions (BatchNorm statistics, the loss, the
  sampler's early-stop mean P(real)) stay global means over all devices.

PRNG draws do not depend on the sharding (`jax_threefry_partitionable`), so a run on N
devices draws the same batches as a run on one and differs from it only by the order
of floating-point sums. A mesh of one device runs exactly the single-device program.

Several hosts (TPU pod slices, multi-node GPU) run the same program in every process
after `initialize_distributed` (`main.py --distributed`); each host reads its own
slice of the data and `distribute_rows` assembles the slices into one global array.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from innjax import errors

DATA_AXIS = "data"

# The batch sizes that `config.mesh.batch_per_device` turns from global to per device.
BATCH_KEYS = (
  "train.pos_batch",
  "train.neg_batch",
  "synthesis.batch_size",
  "sample.batch_size",
)


def initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> None:
  """Joins this process to a multi-host JAX run (`jax.distributed.initialize`).

  Must run before any JAX computation. On Cloud TPU, Slurm and Open MPI every argument
  may be left out (JAX detects them); elsewhere give all three, the same
  `coordinator_address` (host:port of process 0) on every host.
  """
  jax.distributed.initialize(
    coordinator_address=coordinator_address or None,
    num_processes=num_processes if num_processes and num_processes > 0 else None,
    process_id=process_id if process_id is not None and process_id >= 0 else None,
  )


def is_main_process() -> bool:
  """Whether this process writes files and logs (process 0 of a multi-host run)."""
  return jax.process_index() == 0


def from_process_0(flag: bool) -> bool:
  """Process 0's `flag`, on every process: all hosts take the same branch.

  A collective in a multi-host run (every process must call it); `flag` itself when
  there is one process.
  """
  if jax.process_count() == 1:
    return bool(flag)
  return bool(multihost_utils.broadcast_one_to_all(np.int32(bool(flag))))


def num_mesh_devices(config: ml_collections.ConfigDict) -> int:
  """How many devices `config.mesh.data` asks for; raises ConfigError with the fix."""
  available = jax.device_count()
  wanted = config.mesh.data if "mesh" in config else 1
  if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < -1:
    raise errors.ConfigError(
      f"Bad config: mesh.data must be 1 (one device), 0 or -1 (every device) or a "
      f"device count, got {wanted!r}."
    )
  count = available if wanted <= 0 else wanted
  if count > available:
    raise errors.ConfigError(
      f"Bad config: mesh.data={wanted} asks for {wanted} devices but JAX sees "
      f"{available} ({jax.devices()[0].platform}); use --config.mesh.data=0 for all "
      "of them."
    )
  if jax.process_count() > 1 and count != available:
    raise errors.ConfigError(
      f"Bad config: this is a {jax.process_count()}-process run, so the mesh must "
      f"span every host's devices; mesh.data={wanted} covers {count} of {available}. "
      "Use --config.mesh.data=0."
    )
  return count


def make_mesh(
  config: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None
) -> jax.sharding.Mesh:
  """The one-axis ("data") mesh of `config.mesh.data` devices.

  Args:
    config: the run's config.
    devices: the devices to use (default: the first `num_mesh_devices` of
      `jax.devices()`, i.e. all of them when `mesh.data` is 0).

  Returns:
    A `Mesh` with axis "data". Its axis type is `Auto`, so the compiler propagates
    shardings through the code from the few places that fix them.
  """
  if devices is None:
    devices = jax.devices()[: num_mesh_devices(config)]
  return jax.make_mesh(
    (len(devices),),
    (DATA_AXIS,),
    axis_types=(jax.sharding.AxisType.Auto,),
    devices=devices,
  )


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """A full copy on every device of `mesh`."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """The leading (batch or row) axis split over the data axis."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(DATA_AXIS))


def rows_sharding(mesh: jax.sharding.Mesh, rows: int) -> jax.sharding.NamedSharding:
  """Row-sharded when `rows` divides evenly over the mesh, else replicated."""
  return batch_sharding(mesh) if rows % mesh.size == 0 else replicated(mesh)


def constrain_batch(x: jax.Array, mesh: jax.sharding.Mesh | None) -> jax.Array:
  """Inside jit: asks for `x` split along its leading axis (no-op without a mesh)."""
  if mesh is None:
    return x
  return jax.lax.with_sharding_constraint(x, batch_sharding(mesh))


def state_shardings(state: Any, mesh: jax.sharding.Mesh) -> Any:
  """The sharding of every leaf of a `train.TrainState` (concrete or abstract).

  Everything is replicated except the pool's images and stage tags and the latest
  negatives (`negatives`, and `group_start` where the variant keeps it), which are
  row-sharded (see the module docstring).
  """
  shardings = jax.tree_util.tree_map(lambda _: replicated(mesh), state)
  rows = lambda x: rows_sharding(mesh, x.shape[0])
  pool = shardings.pool.replace(
    images=rows(state.pool.images), stage=rows(state.pool.stage)
  )
  group_start = None if state.group_start is None else rows(state.group_start)
  return shardings.replace(
    pool=pool, negatives=rows(state.negatives), group_start=group_start
  )


def place(tree: Any, shardings: Any) -> Any:
  """Puts a pytree that every process holds identically onto `shardings`.

  One process: `jax.device_put`. Several: each process builds its own shards from its
  own copy (`jax.make_array_from_callback`), so nothing crosses hosts; this is how a
  fresh training state, computed from the same seed everywhere, goes onto the mesh.
  """
  if jax.process_count() == 1:
    return jax.device_put(tree, shardings)

  def put(x, s):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      data = put(jax.random.key_data(x), s)
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(host.shape, s, lambda index: host[index])

  return jax.tree_util.tree_map(put, tree, shardings)


def with_shardings(abstract: Any, shardings: Any) -> Any:
  """`jax.ShapeDtypeStruct`s of `abstract` that carry `shardings` (restore targets)."""
  return jax.tree_util.tree_map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
  )


def global_batch_config(
  config: ml_collections.ConfigDict, num_devices: int
) -> ml_collections.ConfigDict:
  """The config with global batch sizes.

  With `config.mesh.batch_per_device` the batch sizes in `BATCH_KEYS` are per device:
  returns a copy where they are multiplied by `num_devices` (and the flag cleared).
  Otherwise returns `config` itself.
  """
  if "mesh" not in config or not config.mesh.batch_per_device:
    return config
  config = config.copy_and_resolve_references()
  for dotted in BATCH_KEYS:
    section, name = dotted.split(".")
    config[section][name] = int(config[section][name]) * num_devices
  config.mesh.batch_per_device = False
  return config


def check_divisible(
  config: ml_collections.ConfigDict,
  num_devices: int,
  keys: Sequence[str] = BATCH_KEYS[:3],
) -> None:
  """Raises ConfigError (with the fix) when a batch does not split evenly over devices."""
  for dotted in keys:
    section, name = dotted.split(".")
    value = int(config[section][name])
    if value % num_devices:
      fit = -(-value // num_devices) * num_devices
      raise errors.ConfigError(
        f"Bad config: {dotted}={value} does not split evenly over the "
        f"{num_devices} devices of the mesh (mesh.data={config.mesh.data}): every "
        f"device takes an equal share of each batch. Use a multiple of "
        f"{num_devices} (e.g. --config.{dotted}={fit}), give batch sizes per device "
        "with --config.mesh.batch_per_device=True, or use fewer devices "
        "(--config.mesh.data=1)."
      )


@dataclasses.dataclass(frozen=True)
class RowLayout:
  """Where a dataset's rows sit in its padded, row-sharded global array.

  Each process contributes one block (its slice of the data, in process order) padded
  to a common length so that every device holds the same number of rows; padding is
  never drawn. With one process the layout is the identity on the first `num_rows`.

  Attributes:
    counts: the real rows of each block, in data order.
    offsets: the row of the global array where each block starts.
  """

  counts: tuple[int, ...]
  offsets: tuple[int, ...]

  @property
  def num_rows(self) -> int:
    """Real rows over all processes."""
    return int(sum(self.counts))

  def positions(self, idx: jax.Array) -> jax.Array:
    """Maps row indices in [0, num_rows) to rows of the global array (jittable)."""
    if len(self.counts) == 1:
      return idx + self.offsets[0] if self.offsets[0] else idx
    starts = np.cumsum((0,) + self.counts[:-1])
    block = jnp.searchsorted(jnp.asarray(starts[1:]), idx, side="right")
    return jnp.asarray(self.offsets)[block] + idx - jnp.asarray(starts)[block]


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  """Appends zero rows up to `rows`."""
  if x.shape[0] == rows:
    return x
  pad = np.zeros((rows - x.shape[0], *x.shape[1:]), x.dtype)
  return np.concatenate([x, pad])


def distribute_rows(
  local: np.ndarray, mesh: jax.sharding.Mesh
) -> tuple[jax.Array, RowLayout]:
  """Puts this host's rows of a dataset into one array row-sharded over `mesh`.

  Args:
    local: this process's slice of the data (host memory), e.g. from
      `data.load_dataset(..., process_index=jax.process_index(),
      process_count=jax.process_count())`.
    mesh: the mesh; each process owns the rows of its own devices.

  Returns:
    (global array, layout): with one process the array is `local` padded to a
    multiple of the device count; with several, `jax.make_array_from_process_local_data`
    assembles the per-host blocks without copying data between hosts. Index it
    through `layout.positions`.
  """
  local = np.asarray(local)
  sharding = batch_sharding(mesh)
  if jax.process_count() == 1:
    rows = -(-local.shape[0] // mesh.size) * mesh.size
    return (
      jax.device_put(_pad_rows(local, rows), sharding),
      RowLayout((local.shape[0],), (0,)),
    )
  # Hosts may hold slices that differ by a row (tfds.even_splits): pad every block to
  # the longest, rounded to this host's device count.
  counts = np.asarray(multihost_utils.process_allgather(np.int64(local.shape[0])))
  counts = tuple(int(c) for c in np.ravel(counts))
  local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
  block = -(-max(counts) // local_devices) * local_devices
  global_shape = (block * len(counts), *local.shape[1:])
  array = jax.make_array_from_process_local_data(
    sharding, _pad_rows(local, block), global_shape
  )
  starts = {}
  for device, index in sharding.devices_indices_map(global_shape).items():
    first = index[0].start or 0
    starts[device.process_index] = min(first, starts.get(device.process_index, first))
  return array, RowLayout(counts, tuple(starts[p] for p in range(len(counts))))


def to_host(x: jax.Array) -> np.ndarray:
  """The whole of `x` as a numpy array, also when it spans several hosts.

  Every process must call it for a multi-host array (it is a collective).
  """
  if getattr(x, "is_fully_addressable", True):
    return np.asarray(jax.device_get(x))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))
