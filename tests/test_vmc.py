"""The VMC benchmark's wavefunction: stde agrees with jax.hessian, without any fallback."""

import jax
import numpy as np
import pytest

from benchmarks.suites import vmc
from tests.conftest import forbid_fallback


def _setup(electrons):
    params, walkers = vmc.setup(electrons, 2, 8)
    return (jax.tree_util.tree_map(lambda p: p.astype(np.float64), params),
            walkers.astype(np.float64))


def test_kinetic_energy_agrees_without_fallback(x64):
    params, walkers = _setup(4)
    with forbid_fallback():
        ours = jax.jit(vmc.walkers_kinetic(vmc.stde_kinetic))(params, walkers)
    want = jax.jit(vmc.walkers_kinetic(vmc.nested_kinetic))(params, walkers)
    np.testing.assert_allclose(ours, want, rtol=1e-9)


def test_sparse_directions_agree_with_dense_without_fallback(x64):
    """The kinetic energy with e_1 .. e_D held sparse (electron sparsity kept by the rules)."""
    import stde

    def sparse_kinetic(params, x):
        _, grad, lap = stde.value_grad_laplacian(vmc.log_psi, argnums=1, sparse=True)(params, x)
        return -0.5 * (lap + (grad ** 2).sum())

    params, walkers = _setup(4)
    with forbid_fallback():
        ours = jax.jit(vmc.walkers_kinetic(sparse_kinetic))(params, walkers)
    want = jax.jit(vmc.walkers_kinetic(vmc.nested_kinetic))(params, walkers)
    np.testing.assert_allclose(ours, want, rtol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("electrons", [4, 6])
def test_parameter_gradient_agrees_without_fallback(x64, electrons):
    params, walkers = _setup(electrons)
    with forbid_fallback():
        energy, grads = jax.jit(vmc.energy_gradient(vmc.stde_kinetic))(params, walkers)
    want_energy, want_grads = jax.jit(vmc.energy_gradient(vmc.nested_kinetic))(params, walkers)
    np.testing.assert_allclose(energy, want_energy, rtol=1e-9)
    for key in params:
        np.testing.assert_allclose(grads[key], want_grads[key], rtol=1e-7, atol=1e-9,
                                   err_msg=key)
