"""The shared series arithmetic: Faà di Bruno's table and the factored composition.

:func:`stde.rules.series.compose` (used by every unary elementwise rule when ``R > 1``)
must agree with the primitive's own recurrence (checked against nested ``jacfwd`` in
``test_elementwise.py``) for every primitive, every ``K``, and every pattern of
symbolic zeros among the input coefficients.
"""

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stde.core import JetValue
from stde.rules import elementwise, series

pytestmark = pytest.mark.usefixtures("x64")


def stirling2(k: int, m: int) -> int:
    """Stirling number of the second kind, by its own recurrence."""
    if k == m:
        return 1
    if m == 0 or m > k:
        return 0
    return m * stirling2(k - 1, m) + stirling2(k - 1, m - 1)


@pytest.mark.parametrize("k", range(1, 9))
def test_bell_terms_sum_to_stirling_numbers(k):
    # B_{k,m}(1, 1, ..) = S(k, m): the weights of the partitions into m parts.
    for m, partitions in series.bell_terms(k):
        assert sum(w for _, w in partitions) == stirling2(k, m)
        assert all(sum(parts) == k and len(parts) == m for parts, _ in partitions)
    assert [m for m, _ in series.bell_terms(k)] == list(range(1, k + 1))


def test_bell_terms_match_exponential_composition():
    # exp(e^t - 1) = Σ_k Bell(k) t^k / k!: the Taylor coefficients of exp∘(e^t - 1) at 0.
    bell = [1, 1, 2, 5, 15, 52, 203, 877]
    for k in range(1, 8):
        total = sum(Fraction(w) for _, partitions in series.bell_terms(k) for _, w in partitions)
        assert total == bell[k]


PRIMAL = {  # a primal inside each function's domain
    "log": 1.3, "log1p": 0.4, "sqrt": 1.3, "rsqrt": 1.3, "asin": 0.3, "acos": 0.3,
    "atanh": 0.3, "erf_inv": 0.3, "acosh": 1.7,
}


def _random_series(key, order, count, zeros):
    keys = jax.random.split(key, order + 1)
    primal_shape = (2, 3)
    lower = [None if k in zeros else jax.random.normal(keys[k], (count, *primal_shape))
             for k in range(1, order)]
    summed = None if order in zeros else jax.random.normal(keys[order], primal_shape)
    return lower, summed, primal_shape


@pytest.mark.parametrize("order", range(1, 7))
@pytest.mark.parametrize("zeros", [(), (1,), (2,), (1, 3)], ids=str)
def test_compose_matches_every_recurrence(order, zeros):
    lower, summed, shape = _random_series(jax.random.PRNGKey(order), order, 3, zeros)
    for primitive, function in elementwise._UNARY.items():
        x0 = jnp.full(shape, PRIMAL.get(primitive.name.replace("_p", ""), 0.4))
        x = JetValue(x0, tuple(lower), summed)
        want = function(x.coefficients, order)
        got = elementwise.factored(function, x, order).coefficients
        for k, (g, w) in enumerate(zip(got, want)):
            if w is None:
                assert g is None, (primitive, k)
            else:
                np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10,
                                           err_msg=f"{primitive} y_{k}")


def test_compose_second_order_is_the_forward_laplacian():
    x1 = jnp.array([[1.0, 2.0], [3.0, -1.0]])       # R = 2 directions, S = (2,)
    x2 = jnp.array([0.5, -0.5])
    f = [jnp.zeros(2), jnp.array([2.0, 3.0]), jnp.array([5.0, 7.0])]
    y = series.compose(f, [jnp.zeros(2), x1, x2], 2)
    np.testing.assert_allclose(y[1], f[1][None, :] * x1)
    np.testing.assert_allclose(y[2], f[1] * x2 + f[2] * (x1 ** 2).sum(0))
    assert math.isclose(float(y[2][0]), 2 * 0.5 + 5 * 10)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 8, 9, 50])
def test_sum_directions_equals_the_sum_over_the_leading_axis(count):
    x = jax.random.normal(jax.random.PRNGKey(count), (count, 3, 2))
    np.testing.assert_allclose(series.sum_directions(x), x.sum(0), rtol=1e-14)
    jaxpr = jax.make_jaxpr(series.sum_directions)(x).jaxpr
    reductions = [e for e in jaxpr.eqns if e.primitive.name == "reduce_sum"]
    # A few directions are summed by pairwise adds (no reduction in the fused graph);
    # many by one reduction.
    assert len(reductions) == (count > series.PAIRWISE_DIRECTIONS)
