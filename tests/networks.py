"""Small networks shared by the tests."""

import jax
import jax.numpy as jnp
import numpy as np


def mlp_params(key, sizes):
    """Weights ``(m, n)`` scaled by ``1/sqrt(m)`` and biases ``0.1`` for layer sizes ``sizes``."""
    keys = jax.random.split(key, len(sizes))
    return [(jax.random.normal(k, (m, n)) / np.sqrt(m), 0.1 * jnp.ones(n))
            for k, m, n in zip(keys, sizes[:-1], sizes[1:])]


def tanh_mlp(params, x):
    """A tanh MLP with a scalar output."""
    for w, b in params[:-1]:
        x = jnp.tanh(x @ w + b)
    w, b = params[-1]
    return (x @ w + b)[0]
