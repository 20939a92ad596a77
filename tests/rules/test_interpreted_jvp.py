"""``custom_jvp`` at order 2: the JVP rule differentiated by stde's rules, as jax.hessian does."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stde

pytestmark = pytest.mark.usefixtures("x64")


@jax.custom_jvp
def _softplus(x):
    return jnp.logaddexp(x, 0.0)


@_softplus.defjvp
def _softplus_jvp(primals, tangents):      # the derivative written as a stable sigmoid
    (x,), (t,) = primals, tangents
    return _softplus(x), jnp.where(x > 0, 1 / (1 + jnp.exp(-x)), jnp.exp(x) / (1 + jnp.exp(x))) * t


@jax.custom_jvp
def _recursive(x):
    return jnp.exp(x)


@_recursive.defjvp
def _recursive_jvp(primals, tangents):   # the rule calls the function itself
    (x,), (t,) = primals, tangents
    return _recursive(x), _recursive(x) * t


@jax.custom_jvp
def _pair(x, y):
    return jnp.sin(x) * y, jnp.cos(y) * x


@_pair.defjvp
def _pair_jvp(primals, tangents):
    (x, y), (tx, ty) = primals, tangents
    return _pair(x, y), (jnp.cos(x) * y * tx + jnp.sin(x) * ty,
                         -jnp.sin(y) * x * ty + 2 * jnp.cos(y) * tx)   # 2: not the truth


def _functions():
    yield lambda z: jnp.sum(_softplus(z) * z)
    yield lambda z: jnp.sum(_recursive(z[:2] * z[1:]))
    yield lambda z: jnp.sum(jnp.stack(_pair(z[0] * z[1], jnp.tanh(z[2]))) ** 2)
    yield lambda z: jnp.linalg.slogdet(jnp.outer(z, z) + jnp.diag(1.0 + z ** 2))[1]


@pytest.mark.parametrize("index", range(4))
def test_laplacian_follows_the_jvp_rule_like_jax_hessian(index):
    f = list(_functions())[index]
    x = jnp.array([0.3, -0.7, 1.1])
    want = jnp.trace(jax.hessian(f)(x))
    np.testing.assert_allclose(stde.laplacian(f)(x), want, rtol=1e-10)
    value, grad, lap = stde.value_grad_laplacian(f)(x)
    np.testing.assert_allclose(grad, jax.grad(f)(x), rtol=1e-10)
    np.testing.assert_allclose(lap, want, rtol=1e-10)
    grad_of_lap = jax.grad(lambda y: stde.value_grad_laplacian(f)(y)[2])(x)
    np.testing.assert_allclose(grad_of_lap, jax.grad(lambda y: jnp.trace(jax.hessian(f)(y)))(x),
                               rtol=1e-8)
