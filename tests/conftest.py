"""Shared fixtures: float64 where a test needs it (never globally at import), strict modes."""

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from unittest import mock

import jax
import pytest

from stde.rules import fallback


def pytest_configure(config: pytest.Config) -> None:
    """Full float32 matmul precision for the whole test session (tests only).

    On GPUs (Ampere and later) XLA's default float32 ``dot``/``conv`` precision is TF32
    (a 10-bit mantissa), so two float32 computations of the same derivative that take
    different routes (stde against nested AD, sparse against exact) differ by ~1e-3
    relative and the float32 tolerances of the suite fail. ``"highest"`` asks for true
    float32 products. On the CPU, float32 products are full precision either way: results
    are bitwise the same with and without this setting (checked on jax 0.10 and 0.12), so
    CPU runs are unchanged. Float64 tests are unaffected on every backend.
    """
    del config
    jax.config.update("jax_default_matmul_precision", "highest")
    _fast_compiles()


def _fast_compiles() -> None:
    """XLA's CPU backend without LLVM's optimisation passes, unless ``XLA_FLAGS`` sets a level.

    The suite compiles thousands of small programs, and LLVM's passes are most of their
    compile time while buying nothing at these sizes: the default run on jax 0.10.2 on 2
    cores took 11:46 at the default level and 9:25 at level 0, every result within its
    tolerance. Level 0 is not always right: XLA's code for JAX's JVP of ``reduce_max``
    then returns NaN (it compares the input with the maximum computed in another fusion,
    and no entry is equal), and float32 nested AD of the VMC wavefunction moves by 2e-4.
    Oracles that meet such code compile at the default level (:data:`OPTIMISED`,
    :func:`rerun_optimised`). XLA reads the flag when its backend starts, which no test
    has done yet here; xdist workers inherit it, and so do pytest runs in subprocesses
    (:func:`on_two_cpu_devices`). The distributed tests' processes set it themselves.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


OPTIMISED = {"xla_backend_optimization_level": 3}
"""``compiler_options`` for a ``jax.jit`` at XLA's default level (see ``_fast_compiles``)."""
_OPTIMISED_FLAG = "--xla_backend_optimization_level=3"


def _python(args: tuple[str, ...], env: dict[str, str], timeout: int
            ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _passed(result: subprocess.CompletedProcess) -> str:
    """The output of a pytest run in a subprocess, asserting that it passed."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


_PYTEST = ("-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider")


def rerun_optimised(*arguments: str) -> str:
    """Runs ``pytest *arguments`` in a process compiling at XLA's default level; its output.

    Asserts that the run passed. For tests whose own compilations meet code that level 0
    gets wrong and that cannot pass :data:`OPTIMISED` to each ``jax.jit``.
    """
    env = dict(os.environ, XLA_FLAGS=_OPTIMISED_FLAG)
    return _passed(_python((*_PYTEST, *arguments), env, timeout=600))


def compiles_optimised() -> bool:
    """Whether this process compiles at XLA's default level (:func:`rerun_optimised`)."""
    return _OPTIMISED_FLAG in os.environ.get("XLA_FLAGS", "")


def on_two_cpu_devices(*args: str, **env: str) -> subprocess.CompletedProcess:
    """Runs ``python *args`` with two CPU devices (the flag must precede JAX's start).

    ``env`` adds variables to the process's environment.
    """
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", **env)
    return _python(args, env, timeout=300)


def rerun_on_two_cpu_devices(*arguments: str, **env: str) -> str:
    """Runs ``pytest *arguments`` in one process with two CPU devices; returns its output.

    Asserts that the run passed (the output's tail is the message otherwise).
    """
    return _passed(on_two_cpu_devices(*_PYTEST, *arguments, **env))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--strict-modes", action="store_true",
                     help="run every test under JAX's strict modes (see strict_modes)")


@contextlib.contextmanager
def strict_modes() -> Iterator[None]:
    """JAX's strictest settings, as ``jax.test_util``'s test cases and careful users set them.

    No implicit rank promotion, no implicit dtype promotion, and JAX's internal checks
    (jaxpr type checking) on.
    """
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"), \
            jax.enable_checks(True):
        yield


@contextlib.contextmanager
def forbid_fallback() -> Iterator[None]:
    """Fails the test where any primitive goes through the nested-JVP fallback.

    The fallback warns once per primitive per process, so turning warnings into errors
    misses a primitive that an earlier test in the same worker already sent there; this
    replaces the warning itself with an ``AssertionError`` naming the primitive.
    """
    def fail(name: str) -> None:
        raise AssertionError(f"the nested-JVP fallback ran for '{name}'")

    with mock.patch.object(fallback, "_warn_once", fail):
        yield


@pytest.fixture(autouse=True)
def _strict_modes_option(request: pytest.FixtureRequest) -> Iterator[None]:
    """``--strict-modes``: the whole suite under :func:`strict_modes` (an audit run)."""
    if request.config.getoption("--strict-modes"):
        with strict_modes():
            yield
    else:
        yield


@pytest.fixture
def strict() -> Iterator[None]:
    """Runs the test under :func:`strict_modes`."""
    with strict_modes():
        yield


@pytest.fixture
def x64():
    """Runs the test with ``jax_enable_x64`` on."""
    with jax.enable_x64(True):
        yield
