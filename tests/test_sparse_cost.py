"""Sparse STDE costs what a sparse sample touches: deterministic XLA flops, no D² arrays."""

import jax
import jax.numpy as jnp
import numpy as np

import stde
import stde.operators as ops
from benchmarks.suites.scale import _dense_one_hot, _mean_square, _sparse
from stde import sparse
from stde.pinn.harness import init_mlp, mlp

DIM = 20_000


def _flops(fn, *args):
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list | tuple) else analysis
    return float(analysis["flops"])


def test_sparse_step_flops_stay_near_the_primal_step():
    """A training step of the sparse-STDE Laplacian costs about a primal step, independent
    of D; the same samples as dense one-hot tangents cost S times the first layer more."""
    params = init_mlp(jax.random.PRNGKey(0), [DIM, 32, 32, 1])
    points = jax.random.normal(jax.random.PRNGKey(1), (4, DIM)) / DIM ** 0.5
    keys = jax.random.split(jax.random.PRNGKey(2), 4)
    primal = _flops(_mean_square(lambda p, x, _: mlp(p, x)), params, points, keys)
    sparse = _flops(_mean_square(_sparse(8)), params, points, keys)
    dense = _flops(_mean_square(_dense_one_hot(8)), params, points, keys)
    assert sparse <= 1.5 * primal, (sparse, primal)
    assert dense >= 4 * primal, (dense, primal)


def test_exact_laplacian_at_large_dimension_builds_no_square_array():
    def f(x):
        return jnp.sum(jnp.sin(x)) * jnp.sum(x[:3])

    dim = 4000
    x = jnp.linspace(-1.0, 1.0, dim)
    g = stde.operator(f, ops.laplacian())
    jaxpr = jax.make_jaxpr(g)(x)
    largest = max((int(np.prod(v.aval.shape)) for eqn in jaxpr.eqns for v in eqn.outvars),
                  default=0)
    assert largest < 10 * dim
    want = -jnp.sum(jnp.sin(x)) * jnp.sum(x[:3]) + 2 * jnp.sum(jnp.cos(x[:3]))
    np.testing.assert_allclose(g(x), want, rtol=1e-4)


def test_products_of_broadcast_scalars_compare_no_pairs_of_entries(x64):
    """Two scalars' jets broadcast over one axis hold one entry per element each (as
    HJB-LQG's quadrature nodes do); their product reads a written-out factor instead of
    comparing every pair of entries (a (D, 193, 386) array before)."""
    nodes = jnp.exp(jnp.linspace(-3.0, 2.0, 193))

    def f(x):
        first, last = x[:1], x[-1:]
        return jnp.sum(nodes * jnp.sum(x ** 2) / (1.0 + 4.0 * (1.0 - last) * nodes)
                       + jnp.sin(nodes * first) * last)

    x = jnp.linspace(-0.5, 0.5, 8)
    g = stde.laplacian(f)
    jaxpr = jax.make_jaxpr(g)(x)
    sizes = [int(np.prod(v.aval.shape)) for eqn in jaxpr.eqns for v in eqn.outvars]
    assert max(sizes) <= 4 * x.size * nodes.size, max(sizes)
    want = jnp.trace(jax.hessian(f)(x))
    np.testing.assert_allclose(jax.jit(g)(x), want, rtol=1e-10)
    sampled = stde.laplacian(f, x.size, method="sparse")  # every coordinate: exact
    np.testing.assert_allclose(jax.jit(sampled)(x, jax.random.key(0)), want, rtol=1e-10)


def test_a_sparse_factor_with_more_entry_pairs_than_elements_is_read_written_out():
    rng = np.random.default_rng(0)
    directions, size = 3, 8
    c = sparse.SparseCoefficient(jnp.asarray(rng.integers(0, size, (directions, 6))),
                                 jnp.asarray(rng.normal(size=(directions, 6))), (size,), False)
    other = sparse.SparseCoefficient(jnp.asarray(rng.integers(0, size, (directions, 5))),
                                     jnp.asarray(rng.normal(size=(directions, 5))), (size,),
                                     False)
    want = [[sum(v for i, v in zip(other.indices[r].tolist(), other.values[r].tolist())
                 if i == j) for j in c.indices[r].tolist()] for r in range(directions)]
    np.testing.assert_allclose(sparse.values_at(c, other), want, rtol=1e-6)
    jaxpr = jax.make_jaxpr(sparse.values_at)(c, other)
    largest = max(int(np.prod(v.aval.shape)) for eqn in jaxpr.eqns for v in eqn.outvars)
    assert largest < directions * 6 * 5, largest  # 6 · 5 pairs > 8 elements: no pair array


def test_a_sum_of_scalars_sliced_one_by_one_builds_no_growing_index_list(x64):
    """``Σ_i w_i x[i]`` written as a Python loop: each term's jet has one entry, and
    merging index lists term by term grew them to one entry per coordinate, a
    ``(D, 2D)`` array at the end (and ``O(D³)`` work in all). A sum with an entry per
    element or more is dense (:func:`stde.sparse.pays`)."""
    dim = 30
    weights = np.cos(np.arange(dim))

    def f(x):
        return jnp.sin(sum(x[i] * weights[i] for i in range(dim))) * x[0]

    x = jnp.linspace(-1.0, 1.0, dim)
    g = stde.laplacian(f)
    jaxpr = jax.make_jaxpr(g)(x)
    largest = max(int(np.prod(v.aval.shape)) for eqn in jaxpr.eqns for v in eqn.outvars)
    assert largest <= 4 * dim, largest
    want = jax.jit(lambda x: jnp.trace(jax.hessian(f)(x)))(x)
    np.testing.assert_allclose(jax.jit(g)(x), want, rtol=1e-10)
    sampled = stde.laplacian(f, dim, method="sparse")  # every coordinate: exact
    np.testing.assert_allclose(jax.jit(sampled)(x, jax.random.key(0)), want, rtol=1e-10)


def test_sums_of_sparse_coefficients_stay_sparse_only_while_it_pays():
    dim = 10
    a = sparse.from_indices(jnp.array([[1], [2]]), 1.0, dim, jnp.float32)
    b = sparse.from_indices(jnp.array([[3], [2]]), 2.0, dim, jnp.float32)
    total = sparse.plus(a, b)
    assert sparse.is_sparse(total) and total.indices.shape == (2, 2)
    np.testing.assert_array_equal(sparse.densify(total),
                                  sparse.densify(a) + sparse.densify(b))
    wide = sparse.from_indices(jnp.tile(jnp.arange(8), (2, 1)), 1.0, dim, jnp.float32)
    dense = sparse.plus(wide, b, sign=-1)  # 8 + 1 entries of 10: sparse would still pay
    assert sparse.is_sparse(dense)
    dense = sparse.plus(dense, a)  # 11 entries of 10: written out
    assert not sparse.is_sparse(dense)
    np.testing.assert_array_equal(
        dense, sparse.densify(wide) - sparse.densify(b) + sparse.densify(a))
