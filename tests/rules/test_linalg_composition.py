"""Every linear-algebra path under an outer transformation, against nested jacfwd (float64).

stde's output is differentiated again (``jax.grad``, ``jax.jvp``), batched (``jax.vmap``)
and nested (the biharmonic as a Laplacian of a Laplacian, or one interpolation 4-jet):
a rule whose coefficients are constants to an outer derivative (issue 21: ``solve`` and
``inv`` factorise ``stop_gradient(A)``) gives silently zero or wrong numbers here.

Each path maps a point ``y`` (``D = 2``) to a scalar through a matrix
``M(y) = A0 + θ0 diag(P y) + θ1 (Q y)(Q y)ᵀ``. By default each path runs the
transformations that reach its rule differently (grad, jvp of the jet, biharmonic both
ways) and one of the rest in rotation; the full grid is ``slow``.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.scipy.linalg import lu as scipy_lu
from jax.scipy.linalg import solve_triangular
from jax.scipy.sparse.linalg import cg

import stde
import stde.operators as ops
from tests.oracle import taylor

pytestmark = pytest.mark.usefixtures("x64")

THETA = (1.0, 0.3)
RTOL, ATOL = 1e-7, 1e-9


def _a0() -> jax.Array:
    return jnp.array([[2.0, 0.3, -0.2], [0.1, 3.5, 0.4], [0.2, -0.3, 5.0]])


def _matrix(y: jax.Array, theta: tuple = THETA) -> jax.Array:
    p = jnp.array([[1.0, 0.5], [-0.4, 1.0], [0.3, -0.7]])
    q = jnp.array([[0.5, -0.2], [0.1, 0.6], [-0.3, 0.2]])
    u = q @ y
    return _a0() + theta[0] * jnp.diag(p @ y) + theta[1] * jnp.outer(u, u)


def _spd(m: jax.Array) -> jax.Array:
    return m @ m.T


def _weights() -> jax.Array:
    return jnp.array([[1.0, -0.5, 0.25], [0.3, 0.8, -0.6], [-0.2, 0.4, 1.2]])


def _weighted(m: jax.Array) -> jax.Array:
    return jnp.sum(_weights() * m)


def _eigh(m: jax.Array) -> jax.Array:
    w, v = jnp.linalg.eigh(_spd(m))
    return jnp.sum(w * jnp.array([0.3, -0.2, 0.1])) + _weighted(v @ jnp.diag(jnp.sin(w)) @ v.T)


def _svd(m: jax.Array) -> jax.Array:
    u, s, vt = jnp.linalg.svd(m)
    return jnp.sum(s * jnp.array([0.3, -0.2, 0.5])) + _weighted(u @ jnp.diag(s ** 2) @ u.T
                                                               + vt.T @ jnp.diag(s) @ vt)


def _qr(m: jax.Array) -> jax.Array:
    q, r = jnp.linalg.qr(m)
    return _weighted(q) + _weighted(r)


def _cg(m: jax.Array) -> jax.Array:
    s = _spd(m)
    x, _ = cg(lambda v: s @ v, jnp.array([1.0, -2.0, 0.5]), tol=1e-14, atol=0.0, maxiter=200)
    return jnp.sum(x * jnp.array([0.4, 1.0, -0.7]))


def _custom_root(m: jax.Array) -> jax.Array:
    """The root of ``z³ + c z - d = 0`` (c > 0: one real root) by Newton's method."""
    c, d = jnp.trace(m), m[0, 1] + m[1, 2]

    def residual(z):
        return z ** 3 + c * z - d

    def newton(g, z):
        return lax.fori_loop(0, 30, lambda _, z: z - g(z) / jax.grad(g)(z), z)

    return lax.custom_root(residual, 0.0 * c, newton, lambda g, r: r / jax.grad(g)(0.0 * c))


PATHS = {
    "solve": lambda m: jnp.sum(jnp.linalg.solve(m, jnp.array([1.0, -2.0, 0.5]))),
    "inv": lambda m: _weighted(jnp.linalg.inv(m)),
    "slogdet": lambda m: jnp.linalg.slogdet(m)[1],
    "det": jnp.linalg.det,
    "cholesky": lambda m: _weighted(jnp.linalg.cholesky(_spd(m))),
    "eigh": _eigh,
    "qr": _qr,
    "svd": _svd,
    "solve_triangular": lambda m: _weighted(solve_triangular(m, _weights(), lower=True)),
    "lu": lambda m: _weighted(scipy_lu(m)[1] + scipy_lu(m)[2]),
    "cg": _cg,
    "custom_root": _custom_root,
}


def _g(name: str, theta: tuple = THETA):
    return lambda y: PATHS[name](_matrix(y, theta))


def _laplacian_oracle(f):
    return lambda y: jnp.trace(jax.hessian(f)(y))


def _point() -> jax.Array:
    return jnp.array([0.3, -0.2])


def _tangent() -> jax.Array:
    return jnp.array([0.7, -1.1])


def _jitted_jvp(f):
    """``jax.jvp`` of ``f`` at the test point along a fixed direction, under ``jax.jit``."""
    return jax.jit(lambda y: jax.jvp(f, (y,), (jnp.array([-0.4, 0.9]),)))(_point())


def _close(got, want) -> None:
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def check_grad_of_laplacian(name: str) -> None:
    g = _g(name)
    _close(jax.jit(jax.grad(stde.laplacian(g)))(_point()),
           jax.jit(jax.grad(_laplacian_oracle(g)))(_point()))


def check_jvp_of_laplacian(name: str) -> None:
    g = _g(name)
    _close(_jitted_jvp(stde.laplacian(g)), _jitted_jvp(_laplacian_oracle(g)))


def check_jvp_of_jet(name: str) -> None:
    g = _g(name)
    series = (_tangent(), jnp.array([0.2, 0.5]), jnp.zeros(2))

    def coefficients(y):
        return jnp.stack(stde.jet(g, (y,), (series,))[1])

    def reference(y):
        return jnp.stack(taylor(g, [y], [list(series)])[1:])

    _close(_jitted_jvp(coefficients), _jitted_jvp(reference))


def check_vmap_of_laplacian(name: str) -> None:
    g = _g(name)
    points = jnp.array([[0.3, -0.2], [-0.1, 0.25], [0.0, 0.1]])
    _close(jax.jit(jax.vmap(stde.laplacian(g)))(points),
           jax.jit(jax.vmap(_laplacian_oracle(g)))(points))


def _biharmonic_oracle(f):
    return _laplacian_oracle(_laplacian_oracle(f))


def check_biharmonic(name: str, method: str) -> None:
    g = _g(name)
    got = jax.jit(stde.operator(g, ops.biharmonic(), biharmonic_method=method))(_point())
    _close(got, jax.jit(_biharmonic_oracle(g))(_point()))


def check_pinn_loss_gradient(name: str) -> None:
    points = jnp.array([[0.3, -0.2], [-0.1, 0.25]])

    def loss(theta, laplacian):
        residuals = jax.vmap(laplacian(lambda y: PATHS[name](_matrix(y, theta))))(points)
        return jnp.mean(residuals ** 2)

    theta = jnp.array(THETA)
    gradient = jax.jit(jax.grad(loss), static_argnums=1)
    _close(gradient(theta, stde.laplacian), gradient(theta, _laplacian_oracle))


CHECKS = {
    "grad_laplacian": check_grad_of_laplacian,
    "jvp_laplacian": check_jvp_of_laplacian,
    "jvp_jet": check_jvp_of_jet,
    "vmap_laplacian": check_vmap_of_laplacian,
    "biharmonic_nested": lambda name: check_biharmonic(name, "nested"),
    "biharmonic_interpolation": lambda name: check_biharmonic(name, "interpolation"),
    "pinn_loss_grad": check_pinn_loss_gradient,
}

# By default one check per path (every check on one to three paths; the compile-heavy
# paths get the cheaper checks, the fourth-order ones go to the cheap paths).
DEFAULT = list(zip(PATHS, ["biharmonic_nested", "grad_laplacian", "biharmonic_interpolation",
                           "jvp_jet", "jvp_jet", "jvp_laplacian", "grad_laplacian",
                           "vmap_laplacian", "pinn_loss_grad", "grad_laplacian",
                           "jvp_laplacian", "jvp_jet"]))


@pytest.mark.parametrize("path, check", DEFAULT, ids=[f"{p}-{c}" for p, c in DEFAULT])
def test_path_under_transformation(path: str, check: str) -> None:
    CHECKS[check](path)


@pytest.mark.slow
@pytest.mark.parametrize("path, check", list(itertools.product(PATHS, CHECKS)))
def test_path_under_transformation_full_grid(path: str, check: str) -> None:
    CHECKS[check](path)


def test_default_covers_every_path_and_check() -> None:
    assert {p for p, _ in DEFAULT} == set(PATHS)
    assert {c for _, c in DEFAULT} == set(CHECKS)


def test_issue_21_grad_of_laplacian_through_inv_and_solve_is_not_zero() -> None:
    """Issue 21: ``solve``/``inv`` factorise ``stop_gradient(A)``; the outer grad was 0."""
    a0 = jnp.array([[2.0, 0.3], [0.1, 1.5]])
    x = jnp.array([0.3, -0.2])
    inv = lambda y: jnp.sum(jnp.linalg.inv(a0 + jnp.diag(y)))
    solve = lambda y: jnp.sum(jnp.linalg.solve(a0 + jnp.diag(y), jnp.ones(2)))
    for g in (inv, solve):
        lap = stde.laplacian(g)
        ref = _laplacian_oracle(g)
        grad = jax.jit(jax.grad(lap))(x)
        _close(grad, jax.jit(jax.grad(ref))(x))
        assert np.all(np.abs(grad) > 1e-2), grad
    _close(jax.jit(stde.operator(inv, ops.biharmonic()))(x), jax.jit(_biharmonic_oracle(inv))(x))
