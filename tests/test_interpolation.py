"""Interpolation coefficients (exact fractions) and the unique-partition slot search."""

import itertools
import math
from fractions import Fraction as F

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import jet

from stde.interpolation import compositions, generalized_binomial, interpolation_coefficients
from stde.slots import divisor, find_slots, solutions


def test_generalized_binomial_rational_argument():
    assert generalized_binomial(F(3, 2), 2) == F(3, 8)
    assert generalized_binomial(F(-1, 2), 3) == F(-1, 2) * F(-3, 2) * F(-5, 2) / 6
    assert generalized_binomial(5, 2) == 10
    assert generalized_binomial(F(2, 3), 0) == 1
    with pytest.raises(ValueError, match="n >= 0"):
        generalized_binomial(1, -1)


def test_compositions_cover_every_multi_index():
    found = list(compositions(4, 3))
    assert len(found) == math.comb(6, 2) == len(set(found))
    assert all(sum(j) == 4 and min(j) >= 0 for j in found)


@pytest.mark.parametrize("multiplicities, expected", [
    ((1, 1), {(2, 0): F(-1, 4), (1, 1): F(1), (0, 2): F(-1, 4)}),
    ((2, 1), {(3, 0): F(-5, 27), (2, 1): F(2, 3), (1, 2): F(-1, 3), (0, 3): F(2, 27)}),
    ((2, 2), {(4, 0): F(13, 192), (3, 1): F(-1, 3), (2, 2): F(5, 8), (1, 3): F(-1, 3),
              (0, 4): F(13, 192)}),
])
def test_interpolation_coefficients_match_design_values(multiplicities, expected):
    gammas = interpolation_coefficients(multiplicities)
    assert gammas == expected
    assert all(isinstance(g, F) for g in gammas.values())


def test_interpolation_coefficients_reject_bad_input():
    with pytest.raises(ValueError, match="positive"):
        interpolation_coefficients((1, 0))


@pytest.mark.parametrize("multiplicities", [(1, 1), (2, 1), (1, 1, 1), (2, 2), (1, 1, 2), (3, 1)])
def test_interpolation_identity_on_a_polynomial_tensor(multiplicities):
    """Σ γ/K! y_K(Σ j_p v_p) = ⟨∂^K f, ⊗ v_p^{i_p}⟩ for a homogeneous polynomial f (float64)."""
    order = sum(multiplicities)
    dim = 3
    rng = np.random.default_rng(sum(multiplicities) * 7 + len(multiplicities))
    tensor = rng.normal(size=(dim,) * order)
    vs = rng.normal(size=(len(multiplicities), dim))

    def y(v):  # y_K of the homogeneous form x ↦ T[x, .., x] along x_1 = v is K! T[v..v]
        out = tensor
        for _ in range(order):
            out = out @ v
        return out * math.factorial(order)

    symmetric = sum(np.transpose(tensor, perm) for perm in itertools.permutations(
        range(order))) / math.factorial(order)
    want = symmetric * math.factorial(order)  # ∂^K of x ↦ T[x..x] is K! sym(T)
    for p, m in enumerate(multiplicities):
        for _ in range(m):
            want = want @ vs[p]
    got = sum(float(g) / math.factorial(order) * y(np.asarray(j, float) @ vs)
              for j, g in interpolation_coefficients(multiplicities).items())
    np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize("multiplicities, order, slots, c", [
    ((1, 1), 5, (2, 3), 10),
    ((2, 1), 7, (2, 3), 105),
    ((2, 2), 14, (3, 4), 1_051_050),
    ((1, 1, 1), 17, (4, 6, 7), 4_084_080),
])
def test_slot_search_returns_design_table(multiplicities, order, slots, c):
    construction = find_slots(multiplicities)
    assert (construction.order, construction.slots, construction.divisor) == (order, slots, c)
    assert divisor(multiplicities, slots) == c
    # uniqueness: q is the only way to write k with these slots
    assert solutions(slots, order) == [multiplicities]
    # and no smaller jet order admits a unique choice
    for smaller in range(sum(multiplicities), order):
        for candidate in itertools.permutations(range(1, smaller + 1), len(multiplicities)):
            if sum(q * j for q, j in zip(multiplicities, candidate)) == smaller:
                assert solutions(candidate, smaller) != [multiplicities]


def test_slot_search_pure_and_errors():
    assert find_slots((3,)).order == 3
    assert solutions((1, 2), 3) == [(1, 1), (3, 0)]
    with pytest.raises(ValueError, match="positive"):
        find_slots((0, 1))
    with pytest.raises(ValueError, match="interpolation"):
        find_slots((1, 1, 1), max_order=10)


def test_slot_construction_isolates_the_partial(x64):
    """y_k of the slot jet divided by C(q) is ∂i²∂j f (jax.experimental.jet vs jacfwd)."""
    f = lambda x: jnp.sin(x[0] * x[1] + 0.3 * x[2]) * jnp.exp(0.2 * x[1])  # noqa: E731
    x = jnp.array([0.3, -0.4, 0.7])
    construction = find_slots((2, 1))
    series = [jnp.zeros(3) for _ in range(construction.order)]
    for index, slot in zip((0, 1), construction.slots):
        series[slot - 1] = jnp.eye(3)[index]
    y = jet.jet(f, (x,), (series,))[1][-1]
    want = jax.jacfwd(jax.jacfwd(jax.jacfwd(f)))(x)[0, 0, 1]
    np.testing.assert_allclose(y / construction.divisor, want, rtol=1e-9)
