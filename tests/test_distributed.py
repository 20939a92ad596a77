"""Training on JAX's distributed runtime (2 processes on 127.0.0.1) and the sharded first layer.

Every JAX run here is a subprocess: a process joins the distributed runtime, or is given
forced CPU devices, before JAX starts, which this (already started) process cannot do.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from stde.pinn import parallel

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
EXAMPLES = os.path.join(ROOT, "examples")
TINY = {"equation": "allen_cahn", "dim": 4, "steps": 4, "batch": 8, "width": 8, "depth": 2,
        "n_samples": 2, "n_test": 16, "eval_every": 1, "quiet": True}

# For each pair CONFIG OUT of its arguments: trains with train_pinn.fit(Config(**CONFIG))
# and saves the loss curve, the held-out error curve, the trained parameters and the
# shape of the first weight's first local shard to OUT (.npz).
WORKER = textwrap.dedent(f"""
    import json, sys
    import numpy as np
    from jax.experimental import multihost_utils
    sys.path.insert(0, {EXAMPLES!r})
    import train_pinn as tp
    for config, out in zip(sys.argv[1::2], sys.argv[2::2]):
        params, summary = tp.fit(tp.Config(**json.loads(config)))
        arrays = [multihost_utils.process_allgather(a, tiled=True)
                  for layer in params for a in layer]
        np.savez(out, loss=summary["loss_curve"], error=[e for _, e in summary["error_curve"]],
                 processes=summary["processes"],
                 shard=params[0][0].addressable_shards[0].data.shape,
                 **{{f"param{{i}}": a for i, a in enumerate(arrays)}})
""")
LAYOUT = {"processes", "shard"}  # what differs between runs of the same training


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(devices: int = 1) -> dict[str, str]:
    """A CPU-only environment with ``devices`` forced host devices and this checkout first.

    Its processes compile without LLVM's optimisation passes, as the suite does
    (tests/conftest.py): every run compared here is compiled alike, and the test takes
    a third less time.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]),
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} "
                         "--xla_backend_optimization_level=0")
    return env


def run_all(commands: list[tuple[list[str], dict[str, str]]], timeout: float = 300
            ) -> list[subprocess.CompletedProcess]:
    """Runs the commands concurrently; kills every one still running on timeout or error."""
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for cmd, env in commands]
    deadline = time.monotonic() + timeout
    try:
        outputs = [p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
                   for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [subprocess.CompletedProcess(p.args, p.returncode, out) for p, out in
            zip(procs, outputs)]


def worker(runs: list[tuple[dict, str]], devices: int = 1
           ) -> tuple[list[str], dict[str, str]]:
    """The command that trains ``(config, npz path)`` pairs in one process, its environment."""
    args = [arg for config, out in runs for arg in (json.dumps(config), out)]
    return [sys.executable, "-c", WORKER, *args], environment(devices)


def assert_same_run(a: dict, b: dict, rtol: float) -> None:
    for name in set(a.files) - LAYOUT:
        np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=rtol * 1e-2,
                                   err_msg=name)


def test_two_processes_train_like_one(tmp_path):
    """2 processes × 1 CPU device (gloo): the losses, held-out errors and parameters after 4
    steps equal one process's on 2 forced devices and on 1 device (same global batch, same
    keys), also with the first layer split over the processes; only process 0 writes --out."""
    address = f"127.0.0.1:{free_port()}"
    cluster = dict(TINY, devices=2, processes=2, coordinator=address)
    commands = [worker([(dict(cluster, process_id=i, out=str(tmp_path / f"out{i}")),
                         str(tmp_path / f"process{i}.npz")),
                        (dict(cluster, process_id=i, shard_input_layer=True, out=""),
                         str(tmp_path / f"split{i}.npz"))])
                for i in range(2)]
    commands.append(worker([(dict(TINY, devices=n, out=""), str(tmp_path / f"single{n}.npz"))
                            for n in (2, 1)], devices=2))
    results = run_all(commands)
    for result in results:
        assert result.returncode == 0, result.stdout
    process0, process1, split0, split1, two_devices, one_device = (
        np.load(tmp_path / name) for name in
        ("process0.npz", "process1.npz", "split0.npz", "split1.npz", "single2.npz",
         "single1.npz"))
    assert int(process0["processes"]) == 2 and int(two_devices["processes"]) == 1
    assert len(process0["loss"]) == TINY["steps"]
    assert_same_run(process0, process1, 0)
    # The same SPMD program on the same devices' shards; only the all-reduce differs.
    assert_same_run(process0, two_devices, 1e-6)
    assert_same_run(process0, one_device, 1e-5)
    assert_same_run(split0, split1, 0)
    assert_same_run(split0, one_device, 1e-5)
    assert tuple(split0["shard"]) == (2, 8) and tuple(process0["shard"]) == (4, 8)
    assert sorted(os.listdir(tmp_path / "out0")) == ["curves.png", "summary.json"]
    assert not (tmp_path / "out1").exists()


def test_a_missing_peer_is_a_clear_error_not_a_hang():
    """Process 0, then process 1, of 2 alone (each with its own coordinator address): each
    gives up after --init-timeout, naming the coordinator and what to check."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    commands = [([sys.executable, os.path.join(EXAMPLES, "train_pinn.py"), "--processes", "2",
                  "--process-id", str(i), "--coordinator", address, "--init-timeout", "2",
                  "--devices", "2", "--out", ""], environment())
                for i, address in enumerate(addresses)]
    for address, result in zip(addresses, run_all(commands, timeout=60)):
        assert result.returncode == parallel.TIMEOUT_EXIT_CODE, result.stdout
        assert f"not all 2 processes joined the coordinator at {address}" in result.stdout
        assert "--process-id in 0..1" in result.stdout and "Traceback" not in result.stdout


def test_sharded_input_layer_trains_like_one_device(tmp_path):
    """--shard-input-layer on 2 forced CPU devices: same run as 1 device; the first layer's
    weight and Adam moments stay split by rows. --block-rows with data parallelism on 2
    devices: same run as on 1 device."""
    sharded, single = tmp_path / "sharded.npz", tmp_path / "single.npz"
    blocks2, blocks1 = tmp_path / "blocks2.npz", tmp_path / "blocks1.npz"
    result, = run_all([worker([(dict(TINY, devices=2, shard_input_layer=True, out=""), sharded),
                               (dict(TINY, out=""), single),
                               (dict(TINY, devices=2, block_rows=3, out=""), blocks2),
                               (dict(TINY, block_rows=3, out=""), blocks1)], devices=2)])
    assert result.returncode == 0, result.stdout
    assert_same_run(np.load(blocks2), np.load(blocks1), 1e-5)
    sharded, single = np.load(sharded), np.load(single)
    assert_same_run(sharded, single, 1e-5)
    assert tuple(sharded["shard"]) == (2, 8) and tuple(single["shard"]) == (4, 8)


def test_sparse_row_gather_across_weight_shards():
    """The sparse STDE rule's row gather of a first-layer weight split over 2 devices: the
    same values and gradient as unsharded, each device gathers its own rows (an all-reduce
    of the partial rows, no all-gather of the weight), the gradient stays split."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {EXAMPLES!r})
        import jax, jax.numpy as jnp, numpy as np
        import stde, stde.operators as ops
        import train_pinn as tp
        from stde.pinn import parallel
        layout = parallel.input_parallel(2)
        params = tp.init_mlp(jax.random.PRNGKey(0), [64, 8, 8, 1])
        points = jax.random.normal(jax.random.PRNGKey(1), (4, 64)) / 8
        keys = jax.random.split(jax.random.PRNGKey(2), 4)
        g = stde.stochastic_operator(tp.mlp, ops.laplacian(), 4, argnums=1, method="sparse")
        f = jax.jit(jax.value_and_grad(lambda p, x, k: jnp.mean(
            jax.vmap(lambda xi, ki: g(p, xi, ki))(x, k) ** 2)))
        sharded = (jax.device_put(params, layout.params(3)),
                   jax.device_put(points, layout.points), jax.device_put(keys, layout.keys))
        want, got = f(params, points, keys), f(*sharded)
        for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert got[1][0][0].sharding.spec == layout.input_weight.spec, got[1][0][0].sharding
        hlo = f.lower(*sharded).compile().as_text()
        assert "all-reduce" in hlo and "all-gather" not in hlo, hlo
    """)
    result, = run_all([([sys.executable, "-c", code], environment(2))])
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("settings, message", [
    ({"processes": 2, "process_id": 0}, "coordinator"),
    ({"processes": 2, "coordinator": "127.0.0.1:1"}, "process's index"),
    ({"processes": 2, "process_id": 2, "coordinator": "127.0.0.1:1"}, "not in 0..1"),
    ({"processes": 2, "process_id": 0, "coordinator": "localhost"}, "HOST:PORT"),
    ({"process_id": 1}, "number of processes"),
])
def test_incomplete_cluster_settings_are_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        parallel.cluster_from(environ={}, **settings)


def test_cluster_settings_come_from_the_environment():
    environ = {parallel.COORDINATOR_ENV: "127.0.0.1:9", parallel.PROCESSES_ENV: "2",
               parallel.PROCESS_ID_ENV: "1"}
    assert parallel.cluster_from(environ=environ) == parallel.Cluster("127.0.0.1:9", 2, 1)
    assert parallel.cluster_from(process_id=0, environ=environ).process_id == 0
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES"):
        parallel.cluster_from(environ={parallel.PROCESSES_ENV: "two"})
