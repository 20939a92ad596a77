"""JAX's own jet tests run against stde.jet (see jet_test.py's import of jet)."""

import pytest

# Tests of jax.experimental.jet's internals, not of the jet function: they never call
# stde and are the slowest of the file (an order-5 nested-jacfwd oracle), so they only
# run with -m slow.
NOT_STDE = {"test_expit2": "checks jax.experimental.jet._logistic_taylor, not jet"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.name in NOT_STDE and "peer" in item.nodeid:
            item.add_marker(pytest.mark.slow)
