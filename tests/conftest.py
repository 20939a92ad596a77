"""Shared fixtures: float64 where a test needs it (never globally at import)."""

import jax
import pytest


@pytest.fixture
def x64():
    """Runs the test with ``jax_enable_x64`` on."""
    with jax.enable_x64(True):
        yield
