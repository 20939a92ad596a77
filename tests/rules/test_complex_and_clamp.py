"""Non-holomorphic complex intermediates (``abs``) and ``clamp`` with jet bounds, vs jax.hessian."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import stde
from tests import oracle

pytestmark = pytest.mark.usefixtures("x64")

X = np.array([0.3, -0.1, 0.7, 0.2])


def _matrix(x):
    a = x.reshape(2, 2)
    return a + 1j * jnp.sin(a).T + 0.5 * jnp.eye(2)


COMPLEX = {
    "abs_fft": lambda x: jnp.abs(jnp.fft.fft(x)).sum(),
    "abs_fft_squared_weighted": lambda x: (jnp.abs(jnp.fft.fft(jnp.sin(x))) ** 3 * X).sum(),
    "slogdet_complex": lambda x: jnp.linalg.slogdet(_matrix(x))[1],
    "abs_det_complex": lambda x: jnp.abs(jnp.linalg.det(_matrix(x))),
    "abs_complex_exp": lambda x: jnp.abs(jnp.exp(1j * x) + x).sum(),
}


@pytest.mark.parametrize("name", COMPLEX)
def test_laplacian_through_complex_abs_matches_hessian(name):
    f = COMPLEX[name]
    got, want = jax.jit(lambda x: (stde.laplacian(f)(x), jnp.trace(jax.hessian(f)(x))))(X)
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("order, count", [(3, 2), (4, 1)])
def test_complex_abs_higher_orders_match_nested_jacfwd(order, count):
    oracle.check_collapsed(lambda x: jnp.abs(jnp.fft.fft(x)), [X], order, count,
                           jax.random.PRNGKey(0))


def test_clamp_primal_is_lax_clamp_when_lower_bound_exceeds_upper():
    lo, x, hi = np.array([0.9, 0.0, -0.2]), np.array([0.5, 2.0, -0.8]), np.array([0.1, 0.4, 0.3])
    series = ([lo, lo], [x, x], [hi * 2, hi * 3])
    y, (y1, y2) = stde.jet(lax.clamp, (lo, x, hi), series)
    np.testing.assert_array_equal(y, lax.clamp(lo, x, hi))
    # clamp(lo, x, hi) = min(max(x, lo), hi) picks [hi, hi, lo] here: so do the coefficients.
    np.testing.assert_array_equal(y1, [hi[0] * 2, hi[1] * 2, lo[2]])
    np.testing.assert_array_equal(y2, [hi[0] * 3, hi[1] * 3, lo[2]])


def test_clamp_with_jet_bounds_matches_nested_jacfwd():
    # Every branch: x inside, below lo, above hi, and lo > hi with x on either side.
    lo = np.array([0.1, 0.5, -0.9, 0.8, 0.8])
    x = np.array([0.3, 0.2, 0.4, 0.9, -0.5])
    hi = np.array([0.6, 0.9, 0.1, 0.2, 0.2])
    f = lambda a, b, c: lax.clamp(jnp.sin(a), b * b, c + c ** 3)
    reference = lambda a, b, c: jnp.minimum(jnp.maximum(b * b, jnp.sin(a)), c + c ** 3)
    oracle.check_collapsed_against(f, reference, [lo, x, hi], 3, 2, jax.random.PRNGKey(1))
