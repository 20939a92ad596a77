"""Exact solutions and forcing terms of stde/pinn/equations.py, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stde.pinn.equations as pe
from stde.pinn.harness import make_estimate

NAMES = sorted(pe.EQUATIONS)


def exact_estimate(equation):
    """(f, L f) with the library's exact operator (stde.operator)."""
    return make_estimate(equation, "exact", 1)


@pytest.mark.parametrize("body", [2, 3])
def test_closed_form_derivatives_match_jax_hessian(x64, body):
    sol = pe.make_solution(6, body, seed=3)
    x = pe.sample_ball(jax.random.PRNGKey(0), 3, 6, jnp.float64)
    value, grad, hessdiag = jax.vmap(sol.value_grad_hessdiag)(x)
    np.testing.assert_allclose(value, jax.vmap(sol.value)(x), rtol=1e-12)
    np.testing.assert_allclose(grad, jax.vmap(jax.grad(sol.value))(x), rtol=1e-10, atol=1e-12)
    hessians = jax.vmap(jax.hessian(sol.value))(x)
    np.testing.assert_allclose(hessdiag, jnp.diagonal(hessians, axis1=1, axis2=2),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_exact_solution_has_zero_residual(x64, name):
    """The forcing term equals the exact operator applied to u* (float64, random points)."""
    equation = pe.make_equation(name, 1 if name == "kdv" else 5, seed=1)
    points = equation.sample(jax.random.PRNGKey(7), 4).astype(jnp.float64)
    estimate = exact_estimate(equation)
    residual = jax.vmap(lambda z: equation.residual(equation.exact, z, None, estimate))(points)
    scale = float(jnp.max(jnp.abs(jax.vmap(equation.exact)(points)))) + 1.0
    assert residual.shape[0] == 4
    np.testing.assert_allclose(residual, 0.0, atol=1e-9 * scale)


def test_wrong_forcing_is_detected(x64):
    """The residual test can fail: a perturbed solution leaves a residual."""
    equation = pe.make_equation("allen_cahn", 4)
    z = equation.sample(jax.random.PRNGKey(0), 1)[0].astype(jnp.float64)
    wrong = lambda x: equation.exact(x) * 1.01  # noqa: E731
    assert abs(float(equation.residual(wrong, z, None, exact_estimate(equation))[0])) > 1e-4


def test_kdv_jet_derivatives_match_nested_grad(x64):
    z = jnp.array([-0.3, 0.4])
    terms = pe.kdv_derivatives(pe.kdv_soliton, z)

    def partial(f, axis):
        return lambda q: jax.grad(f)(q)[axis]

    u = pe.kdv_soliton
    dx = lambda f: partial(f, 0)  # noqa: E731
    dt = lambda f: partial(f, 1)  # noqa: E731
    expected = {"u_x": dx(u), "u_xx": dx(dx(u)), "u_xxx": dx(dx(dx(u))),
                "u_xxxx": dx(dx(dx(dx(u)))), "u_t": dt(u), "u_xt": dt(dx(u)),
                "u_tt": dt(dt(u)), "u_xxxt": dt(dx(dx(dx(u))))}
    for name, fn in expected.items():
        np.testing.assert_allclose(terms[name], fn(z), rtol=1e-9, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(pe.kdv_residuals(terms), 0.0, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_ansatz_meets_boundary_and_initial_conditions(name):
    equation = pe.make_equation(name, 1 if name == "kdv" else 4)
    net = lambda z: 1.0 + jnp.sum(jnp.sin(z))  # noqa: E731
    if name == "kdv":
        edges = jnp.array([[-1.0, 0.7], [1.0, 0.3], [0.2, 0.0]])
    else:
        x = pe.sample_ball(jax.random.PRNGKey(0), 3, 4)
        x = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
        edges = (jnp.concatenate([x, jnp.full((3, 1), 0.6)], -1) if name.startswith("heat")
                 else x)
    np.testing.assert_allclose(jax.vmap(lambda z: equation.ansatz(net, z))(edges),
                               jax.vmap(equation.exact)(edges), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_each_equation_sets_its_default_dimension(name):
    equation = pe.make_equation(name)  # built in its default dimension
    assert equation.dim == equation.default_dim == pe.default_dim(name)
    other = pe.make_equation(name, 1 if name == "kdv" else 5)
    assert other.default_dim == equation.default_dim


def test_unknown_equation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown equation"):
        pe.make_equation("navier_stokes", 3)
