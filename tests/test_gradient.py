"""``stde.value_grad_laplacian`` against jax.grad / jax.hessian (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stde
from stde.pinn.harness import init_mlp

pytestmark = pytest.mark.usefixtures("x64")


def _log_psi(params, x):
    """A tiny FermiNet-like wavefunction of 3 particles in 2D.

    Per-particle and pair features (``r_i - r_j``, broadcast), a per-particle layer,
    a mean over particles, then log|det| of the orbitals: the Jacobian sparsity of
    sparse directions is kept, then densified, on the way.
    """
    r = x.reshape(3, 2)
    diff = r[:, None, :] - r[None, :, :]                                     # (3, 3, 2)
    pair = jnp.tanh(jnp.concatenate([diff, jnp.sum(diff ** 2, -1, keepdims=True)], -1)
                    @ params["pair"])                                         # (3, 3, 4)
    h = jnp.tanh(r @ params["w"] + jnp.mean(pair, 1) @ params["mix"] + params["b"][None, :])
    return jnp.linalg.slogdet(h)[1] - 0.1 * jnp.sum(x ** 2)


def _params():
    keys = jax.random.split(jax.random.key(0), 3)
    return {"w": jax.random.normal(keys[0], (2, 3), jnp.float64),
            "b": jax.random.normal(keys[1], (3,), jnp.float64),
            "pair": jax.random.normal(keys[2], (3, 4), jnp.float64),
            "mix": 0.5 * jnp.ones((4, 3), jnp.float64)}


SPARSE = pytest.mark.parametrize("sparse", [False, True])


@SPARSE
def test_matches_grad_and_hessian_trace(sparse):
    params = _params()
    x = jax.random.normal(jax.random.key(1), (6,), jnp.float64)
    ours = jax.jit(stde.value_grad_laplacian(_log_psi, argnums=1, sparse=sparse))
    value, grad, lap = ours(params, x)
    np.testing.assert_allclose(value, _log_psi(params, x), rtol=1e-12)
    np.testing.assert_allclose(grad, jax.grad(_log_psi, 1)(params, x), rtol=1e-9)
    hessian_trace = jax.jit(lambda p, y: jnp.trace(jax.hessian(_log_psi, 1)(p, y)))
    np.testing.assert_allclose(lap, hessian_trace(params, x), rtol=1e-9)


@pytest.mark.parametrize("sparse", [False, True])
def test_vmap_over_walkers_and_grad_of_mean_local_energy(sparse):
    params = _params()
    walkers = jax.random.normal(jax.random.key(2), (4, 6), jnp.float64)

    def energy(p, g):
        def local(x):
            _, grad, lap = g(p, x)
            return -0.5 * (lap + jnp.sum(grad ** 2))
        return jnp.mean(jax.vmap(local)(walkers))

    def reference(p, x):
        grad = jax.grad(_log_psi, 1)(p, x)
        return _log_psi(p, x), grad, jnp.trace(jax.hessian(_log_psi, 1)(p, x))

    ours = jax.jit(jax.value_and_grad(lambda p: energy(p, stde.value_grad_laplacian(
        _log_psi, argnums=1, sparse=sparse))))(params)
    want = jax.jit(jax.value_and_grad(lambda p: energy(p, reference)))(params)
    np.testing.assert_allclose(ours[0], want[0], rtol=1e-9)
    for key in params:
        np.testing.assert_allclose(ours[1][key], want[1][key], rtol=1e-8, atol=1e-10)


def test_array_output_jacobian_shape_and_matrix_argument():
    params = init_mlp(jax.random.key(3), [4, 5, 2], bias=0.1)
    x = jax.random.normal(jax.random.key(4), (2, 2))

    def f(x):
        h = jnp.tanh(x.reshape(-1) @ params[0][0] + params[0][1])
        return h @ params[1][0] + params[1][1]

    value, jac, lap = stde.value_grad_laplacian(f, sparse=True)(x)
    assert value.shape == (2,) and jac.shape == (2, 2, 2) and lap.shape == (2,)
    np.testing.assert_allclose(jac, jax.jacfwd(f)(x), rtol=1e-9)
    hess = jax.hessian(f)(x).reshape(2, 4, 4)
    np.testing.assert_allclose(lap, jnp.trace(hess, axis1=1, axis2=2), rtol=1e-9)


def test_constant_function_and_errors():
    value, grad, lap = stde.value_grad_laplacian(lambda x: jnp.float64(2.0))(jnp.ones(3))
    assert float(value) == 2.0 and grad.shape == (3,) and not grad.any() and float(lap) == 0.0
    with pytest.raises(TypeError, match="floating-point"):
        stde.value_grad_laplacian(jnp.sum)(jnp.arange(3))


def test_has_aux_returns_value_and_aux_first_as_value_and_grad_does():
    params = _params()
    x = jax.random.normal(jax.random.key(4), (6,), jnp.float64)

    def f(x):  # aux: the sign of the determinant, as a VMC code returns it
        r = x.reshape(3, 2)
        return _log_psi(params, x), {"sign": jnp.sign(jnp.linalg.det(r @ params["w"]))}

    (value, aux), grad, lap = jax.jit(stde.value_grad_laplacian(f, has_aux=True))(x)
    want_value, want_grad = jax.jit(jax.value_and_grad(_log_psi, argnums=1))(params, x)
    np.testing.assert_allclose(value, want_value, rtol=1e-10)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10)
    hessian_trace = jax.jit(lambda p, y: jnp.trace(jax.hessian(_log_psi, 1)(p, y)))
    np.testing.assert_allclose(lap, hessian_trace(params, x), rtol=1e-10)
    assert aux["sign"] == jax.jit(f)(x)[1]["sign"]
