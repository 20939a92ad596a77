"""Floyd sampling without replacement: distinct, uniform over subsets, unbiased estimates.

Seeded statistical tests: chi-square statistics against their degrees of freedom with
a wide margin (a wrong distribution, e.g. Floyd's step without the collision rule or an
off-by-one range, exceeds them by far), and sparse STDE estimates averaged over keys
against exact values within a few standard errors.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stde
import stde.operators as ops
from stde import sampling

TRIALS = 20_000


def _chi_square(counts, expected):
    counts = np.asarray(counts, float)
    return float(np.sum((counts - expected) ** 2 / expected))


def _subset_counts(subsets, universe):
    index = {s: n for n, s in enumerate(itertools.combinations(range(universe), len(subsets[0])))}
    counts = np.zeros(len(index))
    for s in subsets:
        counts[index[tuple(sorted(s))]] += 1
    return counts


def test_floyd_draws_distinct_items_uniformly_over_subsets():
    n, count = 7, 3
    keys = jax.random.split(jax.random.key(0), TRIALS)
    draws = np.asarray(jax.jit(jax.vmap(lambda k: sampling.without_replacement(k, n, count)))(
        keys))
    assert draws.min() >= 0 and draws.max() < n
    assert all(len(set(row)) == count for row in draws.tolist())
    subsets = math.comb(n, count)
    counts = _subset_counts([tuple(r) for r in draws.tolist()], n)
    # chi-square with 34 degrees of freedom: mean 34, sd 8.2; 80 is > 5 sd out.
    assert _chi_square(counts, TRIALS / subsets) < 80
    inclusion = np.bincount(draws.reshape(-1), minlength=n) / TRIALS
    np.testing.assert_allclose(inclusion, count / n, atol=0.02)


def test_floyd_edge_cases_and_errors():
    key = jax.random.key(1)
    assert sorted(sampling.without_replacement(key, 5, 5).tolist()) == [0, 1, 2, 3, 4]
    assert sampling.without_replacement(key, 5, 0).shape == (0,)
    big = sampling.without_replacement(key, 2 ** 31 - 1, 8)
    assert len(set(big.tolist())) == 8 and int(big.min()) >= 0
    with pytest.raises(ValueError, match="cannot draw 6"):
        sampling.without_replacement(key, 5, 6)
    with pytest.raises(ValueError, match="does not fit int32"):
        sampling.without_replacement(key, 2 ** 31, 1)


@pytest.mark.parametrize("large_path", [False, True])
def test_grid_sampling_is_uniform_over_cell_subsets(monkeypatch, large_path):
    """Both the flat path and the row/column path (forced on a small grid) are uniform."""
    if large_path:
        monkeypatch.setattr(sampling, "INT32_LIMIT", 5)
    rows, columns, count = 3, 2, 2
    keys = jax.random.split(jax.random.key(2), TRIALS)
    r, c = jax.vmap(lambda k: sampling.without_replacement_grid(k, rows, columns, count))(keys)
    flat = np.asarray(r) * columns + np.asarray(c)
    assert np.asarray(r).max() < rows and np.asarray(c).max() < columns
    assert all(len(set(row)) == count for row in flat.tolist())
    counts = _subset_counts([tuple(f) for f in flat.tolist()], rows * columns)
    # 14 degrees of freedom: mean 14, sd 5.3.
    assert _chi_square(counts, TRIALS / math.comb(rows * columns, count)) < 45


def test_grid_sampling_beyond_int32_has_no_overflow():
    dim = 50_000  # dim² > 2³¹
    r, c = sampling.without_replacement_grid(jax.random.key(3), dim, dim, 64)
    r, c = np.asarray(r), np.asarray(c)
    assert r.min() >= 0 and c.min() >= 0 and r.max() < dim and c.max() < dim
    assert len(set(zip(r.tolist(), c.tolist()))) == 64
    # Rows and columns spread over the whole range (a flat index overflow would not).
    assert r.max() > dim // 2 and c.max() > dim // 2 and r.min() < dim // 2


def test_sparse_laplacian_estimate_is_unbiased():
    dim, samples = 9, 2
    x = jnp.linspace(-1.0, 1.0, dim)

    def f(y):
        return jnp.sum(jnp.sin(y) * jnp.arange(1.0, dim + 1.0)) + jnp.sum(y) ** 2

    exact = float(stde.operator(f, ops.laplacian())(x))
    g = jax.jit(jax.vmap(stde.stochastic_operator(f, ops.laplacian(), samples, method="sparse"),
                         (None, 0)))
    estimates = np.asarray(g(x, jax.random.split(jax.random.key(4), 4000)), float)
    assert abs(estimates.mean() - exact) < 5 * estimates.std() / math.sqrt(len(estimates))


def test_sparse_biharmonic_estimate_unbiased_and_large_dimension():
    def f(y):
        return jnp.sum(y ** 2) ** 2 + jnp.sum(y ** 4)

    # Δ²(|x|⁴) = 8 d (d + 2), Δ²(Σ x_i⁴) = 24 d.
    dim = 4
    g = jax.jit(jax.vmap(stde.stochastic_operator(f, ops.biharmonic(), 3, method="sparse"),
                         (None, 0)))
    estimates = np.asarray(g(jnp.ones(dim) * 0.3, jax.random.split(jax.random.key(5), 2000)),
                           float)
    exact = 8 * dim * (dim + 2) + 24 * dim
    assert abs(estimates.mean() - exact) < 5 * estimates.std() / math.sqrt(len(estimates))
    dim = 50_000  # D² pairs beyond int32: sampled without forming them
    big = jax.jit(stde.stochastic_operator(f, ops.biharmonic(), 16, method="sparse"))
    value = float(big(jnp.full(dim, 1e-3), jax.random.key(6)))
    # Off-diagonal pairs (all but a ~3e-4 chance) give exactly 8 D²; diagonal ones 24 + 24.
    assert value == pytest.approx(8.0 * dim * dim, rel=1e-3)
