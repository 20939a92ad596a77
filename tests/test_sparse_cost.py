"""Sparse STDE costs what a sparse sample touches: deterministic XLA flops, no D² arrays."""

import jax
import jax.numpy as jnp
import numpy as np

import stde
import stde.operators as ops
from benchmarks.suites.scale import _dense_one_hot, _mean_square, _sparse
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
