"""Training on several processes and devices: JAX's distributed runtime and sharding layouts.

* :func:`cluster_from` and :func:`initialize`: join JAX's multi-controller runtime
  (``jax.distributed.initialize``; on CPUs its gloo collectives) from explicit settings
  or the environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
  ``JAX_PROCESS_ID``, with a bounded wait: a process whose peers do not join within the
  timeout exits with a message naming the coordinator and what to check, never hangs.
* :class:`Layout`, :func:`data_parallel`, :func:`input_parallel`: where a training step's
  arrays live on a 1-D mesh over the devices of all processes. Data parallel shards the
  collocation points by point and replicates the network; input parallel (model parallel
  over the first layer's input axis) shards the ``d × width`` first-layer weight and the
  points' coordinates, so that a weight too large for one device's memory is split over
  all of them. A sparse STDE sample reads ``S`` rows of that weight
  (``y = Σ_p values[p] W[indices[p]]``); each device gathers the rows it holds and the
  partial sums are all-reduced (``width`` numbers per row), so the weight is never
  gathered whole.

Every process runs the same program on the same keys, so the global batch, the loss and
the parameters are those of one process with as many devices (up to the order of the
all-reduce's summation).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"
DEFAULT_TIMEOUT_S = 60
"""Seconds a process waits for all processes to join before it gives up."""
TIMEOUT_EXIT_CODE = 3
"""Exit status of a process that gave up waiting for its peers."""
_JAX_GRACE_S = 30  # JAX's own deadline comes this much later than ours (it aborts)

BATCH_AXIS = "batch"
INPUT_AXIS = "input"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """One process's place in a multi-process run.

    Attributes:
      coordinator: ``HOST:PORT`` of the coordination service that process 0 starts.
      processes: the number of processes.
      process_id: this process's index, ``0 ≤ process_id < processes``.
    """

    coordinator: str
    processes: int
    process_id: int


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not an integer") from None


def cluster_from(coordinator: str | None = None, processes: int | None = None,
                 process_id: int | None = None,
                 environ: Mapping[str, str] | None = None) -> Cluster | None:
    """The run's :class:`Cluster` from settings, else the environment; ``None``: one process.

    Settings left ``None`` are read from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``
    and ``JAX_PROCESS_ID`` in ``environ`` (default ``os.environ``).

    Args:
      coordinator: ``HOST:PORT`` of process 0's coordination service.
      processes: the number of processes (1 or ``None``: a single-process run).
      process_id: this process's index.
      environ: where unset settings come from.

    Returns:
      The cluster, or ``None`` for a single-process run.

    Raises:
      ValueError: an incomplete or inconsistent setting, naming the flag and the variable.

    Example:
      >>> cluster_from("127.0.0.1:1234", 2, 1, environ={})
      Cluster(coordinator='127.0.0.1:1234', processes=2, process_id=1)
      >>> cluster_from(environ={"JAX_COORDINATOR_ADDRESS": "10.0.0.1:9000",
      ...                       "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}).process_id
      3
      >>> cluster_from(environ={}) is None
      True
    """
    environ = os.environ if environ is None else environ
    coordinator = coordinator or environ.get(COORDINATOR_ENV) or None
    processes = _env_int(environ, PROCESSES_ENV) if processes is None else processes
    process_id = _env_int(environ, PROCESS_ID_ENV) if process_id is None else process_id
    if processes is None or processes == 1:
        if process_id not in (None, 0):
            raise ValueError(f"process id {process_id} (--process-id or {PROCESS_ID_ENV}) "
                             f"needs the number of processes (--processes or {PROCESSES_ENV})")
        return None
    if processes < 1:
        raise ValueError(f"the number of processes must be at least 1, got {processes}")
    if coordinator is None:
        raise ValueError(f"{processes} processes need the coordinator's HOST:PORT "
                         f"(--coordinator or {COORDINATOR_ENV}), the same in every process")
    host, colon, port = coordinator.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"coordinator {coordinator!r} is not HOST:PORT (e.g. 127.0.0.1:8476)")
    if process_id is None:
        raise ValueError(f"{processes} processes need this process's index "
                         f"(--process-id or {PROCESS_ID_ENV}), 0 to {processes - 1}")
    if not 0 <= process_id < processes:
        raise ValueError(f"process id {process_id} is not in 0..{processes - 1} "
                         f"for {processes} processes")
    return Cluster(coordinator, processes, process_id)


def _give_up(cluster: Cluster, timeout_s: float) -> None:
    """Ends a process whose peers did not join (JAX would abort later, less clearly)."""
    print(f"error: process {cluster.process_id} of {cluster.processes} gave up after "
          f"{timeout_s:g} s: not all {cluster.processes} processes joined the coordinator "
          f"at {cluster.coordinator}. Check that every process was started (process 0 "
          f"hosts the coordinator), with the same --coordinator and --processes "
          f"{cluster.processes} and its own --process-id in 0..{cluster.processes - 1}, "
          f"and that {cluster.coordinator} is reachable from every host (firewall, port "
          f"in use).", file=sys.stderr, flush=True)
    os._exit(TIMEOUT_EXIT_CODE)


def initialize(cluster: Cluster | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Joins JAX's distributed runtime as ``cluster`` says; nothing for ``None``.

    Must run before any JAX computation in the process. On CPUs the cross-process
    collectives are gloo's (``jax_cpu_collectives_implementation``). If not all
    processes have joined after ``timeout_s`` seconds, the process prints what to check
    and exits with status :data:`TIMEOUT_EXIT_CODE` (JAX itself would abort after its
    own deadline with a stack trace). A process that dies later is noticed within
    ``timeout_s`` too: the others' next collective fails with JAX's error, and JAX ends
    them once the dead process's heartbeats have been missing for ``timeout_s`` (instead
    of JAX's default 100 s). Calling it again once joined does nothing.

    Args:
      cluster: from :func:`cluster_from`.
      timeout_s: how long to wait for all processes.

    Raises:
      RuntimeError: JAX already runs in a different distributed setting, or JAX
        computed something in this process before (JAX's own message).

    Example:
      >>> initialize(None)  # a single-process run: nothing to join
    """
    if cluster is None:
        return
    if jax.distributed.is_initialized():
        if jax.process_count() != cluster.processes:
            raise RuntimeError(f"JAX's distributed runtime already runs with "
                               f"{jax.process_count()} processes, not {cluster.processes}")
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    watchdog = threading.Timer(timeout_s, _give_up, (cluster, timeout_s))
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(
            cluster.coordinator, cluster.processes, cluster.process_id,
            initialization_timeout=int(timeout_s) + _JAX_GRACE_S,
            heartbeat_timeout_seconds=int(timeout_s), shutdown_timeout_seconds=int(timeout_s))
    finally:
        watchdog.cancel()


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a training step's arrays live on a 1-D mesh over devices (all processes').

    Attributes:
      points: the ``(batch, input_dim)`` collocation points.
      keys: the per-point estimator keys ``(batch, ...)``.
      test_points: the held-out points ``(n_test, input_dim)``.
      input_weight: the first layer's ``(input_dim, width)`` weight (and its Adam moments).
      replicated: every other parameter, the loss and the optimiser's step count.
    """

    points: NamedSharding
    keys: NamedSharding
    test_points: NamedSharding
    input_weight: NamedSharding
    replicated: NamedSharding

    def params(self, layers: int) -> list[tuple[NamedSharding, NamedSharding]]:
        """Shardings of an MLP's ``[(W, b), ...]``: ``input_weight`` for the first ``W``.

        Example:
          >>> layout = input_parallel(1)
          >>> [tuple(w.spec) for w, _ in layout.params(2)]
          [('input', None), ()]
        """
        return [(self.input_weight if i == 0 else self.replicated, self.replicated)
                for i in range(layers)]


def device_mesh(devices: int, axis: str) -> Mesh:
    """A 1-D mesh named ``axis`` over the first ``devices`` of all processes' devices.

    Raises:
      ValueError: JAX sees fewer devices, or the mesh would leave out a process's devices.

    Example:
      >>> dict(device_mesh(1, "batch").shape)
      {'batch': 1}
    """
    available = jax.devices()
    if len(available) < devices:
        raise ValueError(
            f"--devices {devices} but JAX sees {len(available)}; on CPU set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={devices} before starting.")
    if jax.process_count() > 1 and devices != len(available):
        raise ValueError(f"--devices {devices}: a run on {jax.process_count()} processes "
                         f"uses the devices of all of them, pass --devices {len(available)}")
    return Mesh(np.array(available[:devices]), (axis,))


def data_parallel(devices: int) -> Layout:
    """Points and keys sharded by point over ``devices`` devices; parameters replicated.

    Example:
      >>> tuple(data_parallel(1).points.spec)
      ('batch',)
    """
    mesh = device_mesh(devices, BATCH_AXIS)
    replicated = NamedSharding(mesh, PartitionSpec())
    by_point = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
    return Layout(points=by_point, keys=by_point, test_points=replicated,
                  input_weight=replicated, replicated=replicated)


def input_parallel(devices: int) -> Layout:
    """The first layer's weight and the points' coordinates sharded over ``devices`` devices.

    Model parallelism over the input axis: device ``k`` holds rows ``k·d/n … (k+1)·d/n``
    of the ``d × width`` weight (and of its Adam moments) and the same coordinates of
    every point, computes its partial ``x W`` and the rows its sparse samples hit, and
    the partial sums are all-reduced. Every point's whole network after the first
    layer runs on every device. ``d`` must be divisible by ``devices``.

    Example:
      >>> tuple(input_parallel(1).input_weight.spec)
      ('input', None)
    """
    mesh = device_mesh(devices, INPUT_AXIS)
    replicated = NamedSharding(mesh, PartitionSpec())
    by_coordinate = NamedSharding(mesh, PartitionSpec(None, INPUT_AXIS))
    return Layout(points=by_coordinate, keys=replicated, test_points=by_coordinate,
                  input_weight=NamedSharding(mesh, PartitionSpec(INPUT_AXIS, None)),
                  replicated=replicated)
