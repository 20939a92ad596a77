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
