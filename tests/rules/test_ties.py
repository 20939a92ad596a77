"""Where the pieces of a selection meet, coefficients equal JAX's derivatives there.

``max``/``min`` at a tie, ``clamp`` at a bound, ``|x|`` at ``0``, a ``reduce_max`` with a
repeated maximum: these functions are not differentiable at such points, and JAX's JVP
rules pick a value (the mean of tied operands, zero at a bound, slope ``+1``). Nested
``jax.jacfwd`` along a curve, ``jax.hessian`` and ``jax.experimental.jet`` all use it, so
stde must too: a user comparing against ``jax.hessian`` on a grid that contains the kink
(``jnp.clip`` at its bounds, ``jnp.maximum(x, 0)`` at ``0``) would see a different answer.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import stde
from tests.oracle import assert_jet_matches_jax, check_collapsed

pytestmark = pytest.mark.usefixtures("x64")

# Ties at entries 0, 1 and 3 of every case below; entry 2 is a smooth point.
X = np.array([0.5, 0.5, -0.3, 0.0])
WEIGHTS = np.array([1.0, 2.0, 3.0, 4.0])


def _mixed(v):
    """A smooth scalar of ``v`` with a non-zero second derivative along every entry."""
    return jnp.sin(v @ WEIGHTS[:v.shape[-1]]) + (v ** 3).sum()


CASES = {
    # two moving operands tied where x = 2x² (x = 0.5 and x = 0), with different slopes
    "maximum": lambda x: jnp.maximum(x, 2 * x ** 2),
    "minimum": lambda x: jnp.minimum(x, 2 * x ** 2),
    "maximum_constant": lambda x: jnp.maximum(x, 0.0),
    "minimum_constant": lambda x: jnp.minimum(x, 0.5),
    "clip": lambda x: jnp.clip(x, 0.0, 0.5),
    "abs": lambda x: jnp.abs(x) * x[::-1],
    "reduce_max": lambda x: jnp.max(jnp.stack([x, 2 * x ** 2, x * x]), axis=0),
    "reduce_min": lambda x: jnp.min(jnp.stack([-x, -2 * x ** 2]), axis=0),
    "max_of_all": lambda x: jnp.max(x).reshape(1) * x,
    # x = 2x² = 4x³ at x = 0.5: six entries attain the maximum
    "six_way_tie": lambda x: jnp.max(jnp.stack([x, x * x * 2, x ** 3 * 4])).reshape(1) * x,
}


@pytest.mark.parametrize("name", CASES)
def test_laplacian_at_ties_equals_hessian(name):
    f = lambda x: _mixed(CASES[name](x))  # noqa: E731
    got, want = jax.jit(lambda x: (stde.laplacian(f)(x), jnp.trace(jax.hessian(f)(x))))(X)
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("name", ["maximum", "minimum_constant", "clip", "abs", "reduce_min",
                                  "six_way_tie"])
def test_higher_orders_at_ties_match_nested_jacfwd(name):
    check_collapsed(CASES[name], [X], 3, 2, jax.random.PRNGKey(3))


@pytest.mark.parametrize("name", ["maximum", "minimum", "abs", "reduce_max", "reduce_min"])
def test_jet_at_ties_matches_jax_experimental_jet(name):
    e = np.eye(4)
    for i in range(4):
        assert_jet_matches_jax(CASES[name], [X], [[e[i], e[(i + 1) % 4], np.zeros(4)]])


def test_max_mean_of_tied_coefficients():
    # max(a, b) at a tie: (a_k + b_k) / 2 at every order, not one operand's.
    a, b = jnp.array([1.0, 2.0]), jnp.array([1.0, 3.0])
    _, (y1, y2) = stde.jet(jnp.maximum, (a, b), ([jnp.array([4.0, 4.0]), jnp.array([6.0, 6.0])],
                                                 [jnp.array([2.0, 2.0]), jnp.array([0.0, 8.0])]))
    np.testing.assert_array_equal(y1, [3.0, 2.0])
    np.testing.assert_array_equal(y2, [3.0, 8.0])


def test_unselected_non_finite_coefficient_is_dropped():
    # sqrt at 0 has an infinite derivative; max(0.5, sqrt(x)) selects the constant there.
    f = lambda x: jnp.maximum(0.5, jnp.sqrt(x))  # noqa: E731
    _, (y1,) = stde.jet(f, (jnp.array([0.0, 1.0]),), ([jnp.array([1.0, 1.0])],))
    np.testing.assert_array_equal(y1, [0.0, 0.5])


def test_clamp_at_moving_bounds_matches_nested_jacfwd():
    # x meets lo, x meets hi, lo = hi with x above and below, and one smooth point each
    # side: JAX's clamp JVP gives no derivative where x equals a bound.
    lo = np.array([0.2, -0.4, 0.3, 0.3, -1.0, 0.1])
    x = np.array([0.2, 0.6, 0.5, 0.1, 0.0, 0.9])
    hi = np.array([0.7, 0.6, 0.3, 0.3, 1.0, 0.5])
    f = lambda lo, x, hi: lax.clamp(jnp.sin(lo), x * 1.0, hi) ** 3  # noqa: E731
    check_collapsed(f, [np.arcsin(lo), x, hi], 3, 2, jax.random.PRNGKey(4))


def test_abs_slope_at_zero_is_one():
    _, (y1, y2) = stde.jet(jnp.abs, (jnp.zeros(2),), ([jnp.array([2.0, -2.0]),
                                                        jnp.array([3.0, 3.0])],))
    np.testing.assert_array_equal(y1, [2.0, -2.0])
    np.testing.assert_array_equal(y2, [3.0, 3.0])


def test_pow_of_a_zero_constant_base():
    # d/dy 0^y = 0 for y > 0 (JAX takes log 0 as 0 there); not 0 · log 0 = NaN.
    f = lambda x: (jnp.power(jnp.array([0.0, 2.0, 0.0]), x + 2.0) * x).sum()  # noqa: E731
    x = jnp.array([0.5, 1.0, -1.0])
    np.testing.assert_allclose(stde.laplacian(f)(x), jnp.trace(jax.hessian(f)(x)), rtol=1e-12)


@pytest.mark.parametrize("name", ["maximum", "clip", "abs", "six_way_tie"])
def test_value_grad_laplacian_at_ties_equals_jax(name):
    # the indexed (per-element sparse) directions go through the same rules
    f = lambda x: _mixed(CASES[name](x))  # noqa: E731
    _, grad, lap = stde.value_grad_laplacian(f)(X)
    np.testing.assert_allclose(grad, jax.grad(f)(X), rtol=1e-12)
    np.testing.assert_allclose(lap, jnp.trace(jax.hessian(f)(X)), rtol=1e-12)
