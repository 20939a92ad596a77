"""Shared fixtures: float64 where a test needs it (never globally at import), strict modes."""

import contextlib
from collections.abc import Iterator

import jax
import pytest


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
