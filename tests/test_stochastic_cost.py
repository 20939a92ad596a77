"""Collapsing pays: XLA flops of the stochastic Laplacian vs vmap over jax.experimental.jet."""

import jax
import jax.numpy as jnp
from jax.experimental import jet

import stde
import stde.operators as ops


def mlp(dim, widths, seed=0):
    keys = jax.random.split(jax.random.key(seed), len(widths))
    params, fan_in = [], dim
    for key, width in zip(keys, widths):
        params.append((jax.random.normal(key, (fan_in, width)) / jnp.sqrt(fan_in),
                       jnp.zeros(width)))
        fan_in = width

    def f(x):
        for n, (w, b) in enumerate(params):
            x = x @ w + b
            if n < len(params) - 1:
                x = jnp.tanh(x)
        return x[0]

    return f


def flops(fun, *args):
    cost = jax.jit(fun).lower(*args).compile().cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0]
    return float(cost["flops"])


def test_collapsed_stochastic_laplacian_flops():
    dim, n_samples = 50, 16
    f = mlp(dim, [768, 768, 512, 512, 1])
    xs = 0.1 * jax.random.normal(jax.random.key(1), (2, dim), jnp.float32)
    key = jax.random.key(2)
    collapsed = jax.vmap(stde.stochastic_operator(f, ops.laplacian(), n_samples, method="dense"),
                         (0, None))

    def standard(x, key):  # the same Rademacher tangents, one jet per sample
        tangents = jax.random.rademacher(jax.random.split(key, 1)[0], (n_samples, dim),
                                         jnp.float32)
        second = jax.vmap(lambda v: jet.jet(f, (x,), ((v, jnp.zeros_like(v)),))[1][1])(tangents)
        return second.mean()

    standard_batched = jax.vmap(standard, (0, None))
    ratio = flops(collapsed, xs, key) / flops(standard_batched, xs, key)
    assert ratio <= 0.6, ratio
    # and the two estimators agree on the same tangents
    assert jnp.allclose(jax.jit(collapsed)(xs, key), jax.jit(standard_batched)(xs, key),
                        rtol=1e-4)
