"""Deterministic cost check (core issue): collapsed Taylor mode vs jax.experimental.jet."""

import jax
import jax.numpy as jnp

from benchmarks import methods
from benchmarks.common import PAPER_HIDDEN, compile_stats
from stde.pinn.harness import init_mlp, mlp


def test_collapsed_exact_laplacian_flops_vs_standard_taylor():
    """tanh MLP 50→768→768→512→512→1, exact Laplacian (R = D = 50, K = 2), batch 2:
    the collapsed jet costs at most 0.55× the XLA flops of vmap over jax.experimental.jet."""
    dim = 50
    params = init_mlp(jax.random.PRNGKey(0), [dim, *PAPER_HIDDEN, 1])
    points = jax.random.normal(jax.random.PRNGKey(1), (2, dim))
    eye = jnp.eye(dim)

    def flops(method):
        g = methods.directional_sum(method, mlp, eye, None, 2)
        fn = jax.vmap(g, in_axes=(None, 0))
        return compile_stats(jax.jit(fn).lower(params, points).compile())[0]

    collapsed, standard = flops("stde_collapsed"), flops("taylor")
    assert collapsed <= 0.55 * standard, (collapsed, standard, collapsed / standard)
