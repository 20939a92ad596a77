"""Selections with jets in every operand (clamp's bounds) against nested forward mode, and
locally constant primitives."""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import stde
from stde.rules import registry
from tests.oracle import check_collapsed_against

# Every branch of clamp(lo, x, hi), including lower bounds above upper ones (columns 3-5),
# where XLA's clamp, min(max(x, lo), hi), returns hi whatever x is.
LO = np.array([-1.0, 0.5, -1.0, 1.0, 1.0, 1.0])
X = np.array([0.2, 0.1, 2.0, 0.0, 0.7, 2.0])
HI = np.array([1.0, 1.5, 1.0, 0.5, 0.5, 0.5])


def test_clamp_with_jet_bounds_matches_nested_jacfwd(x64):
    f = lambda lo, x, hi: lax.clamp(jnp.sin(lo), x, hi) ** 3  # noqa: E731
    branches = lambda lo, x, hi: jnp.minimum(jnp.maximum(x, jnp.sin(lo)), hi) ** 3  # noqa: E731
    primals = (jnp.arcsin(LO * 0.9), jnp.asarray(X), jnp.asarray(HI))
    check_collapsed_against(f, branches, primals, 3, 2, jax.random.PRNGKey(0))


def test_clamp_primal_is_lax_clamp_exactly(x64):
    x = jnp.asarray(X).at[1].set(jnp.nan)
    series = [jnp.ones(6), jnp.ones(6)]
    primal, (y1, _) = stde.jet(lax.clamp, (jnp.asarray(LO), x, jnp.asarray(HI)),
                               (series, series, [2 * s for s in series]))
    np.testing.assert_array_equal(primal, lax.clamp(jnp.asarray(LO), x, jnp.asarray(HI)))
    # hi's coefficient where lo > hi, whichever side of the bounds x lies.
    np.testing.assert_array_equal(y1[3:], [2.0, 2.0, 2.0])


def test_clamp_with_scalar_bounds(x64):
    f = lambda x: lax.clamp(-0.5, jnp.sin(x), 0.5) * x  # noqa: E731
    branches = lambda x: jnp.clip(jnp.sin(x), -0.5, 0.5) * x  # noqa: E731
    check_collapsed_against(f, branches, (jnp.asarray(X),), 2, 3, jax.random.PRNGKey(1))


def test_total_order_comparisons_are_constants(x64):
    """``eq_to``, ``le_to``, ``lt_to`` (``jnp.interp``'s search on jax 0.10) have rules:
    their boolean results carry no coefficients, without the fallback's warning."""
    assert all(registry.lookup(p) for p in (lax.eq_to_p, lax.le_to_p, lax.lt_to_p))
    f = lambda x: jnp.sum(jnp.interp(x, jnp.linspace(0.0, 1.0, 7), jnp.sin(jnp.arange(7.0)))
                          * x ** 2)  # noqa: E731
    x = jnp.array([0.15, 0.5, 0.8])
    np.testing.assert_allclose(stde.laplacian(f)(x), jnp.trace(jax.hessian(f)(x)), rtol=1e-10)
