"""Primitives new in JAX 0.11+ (polynomial, one_minus_square, log2, fma, fmuladd) against the
oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import stde
from tests import oracle
from tests.conftest import forbid_fallback

KEY = jax.random.PRNGKey(5)
X = np.array([0.3, -0.7, 0.45], np.float64)


def _needs(name):
    return pytest.mark.skipif(not hasattr(lax, f"{name}_p"),
                              reason=f"this JAX has no '{name}' primitive")


def _check_without_fallback(f, order, count):
    with forbid_fallback():
        oracle.check_collapsed(f, [X], order, count, KEY)


@_needs("polynomial")
@pytest.mark.parametrize("order, count", [(1, 2), (3, 2), (4, 1)])
def test_polynomial(x64, order, count):
    _check_without_fallback(
        lambda x: lax.polynomial(jnp.sin(x), [1.0, -2.0, 0.5, 3.0]) * x, order, count)


@_needs("polynomial")
def test_polynomial_with_moving_coefficients(x64):
    _check_without_fallback(lambda x: lax.polynomial(x[0], [x[1], jnp.exp(x[2]), x[1]]), 3, 2)


@_needs("one_minus_square")
def test_one_minus_square(x64):
    _check_without_fallback(lambda x: lax.one_minus_square_p.bind(jnp.tanh(x)), 3, 3)


def test_log2(x64):
    _check_without_fallback(lambda x: jnp.log2(jnp.exp(x) + 1.0), 4, 2)


@pytest.mark.parametrize("name", [pytest.param(name, marks=_needs(name))
                                  for name in ("fma", "fmuladd")])
def test_multiply_add(x64, name):
    multiply_add = getattr(lax, name)
    _check_without_fallback(lambda x: multiply_add(jnp.sin(x), x, jnp.exp(x[::-1])), 3, 2)
    _check_without_fallback(lambda x: jnp.tanh(multiply_add(x, x, x)), 4, 1)


@_needs("fma")
def test_fma_keeps_its_single_rounding():
    a = jnp.float32(1.0 + 2.0 ** -12)   # a² = 1 + 2^-11 + 2^-24: the last bit needs fma
    c = jnp.float32(-1.0)
    y0, _ = stde.jet(lambda a: lax.fma(a, a, c), (a,), ((jnp.float32(1.0),),))
    assert y0 == lax.fma(a, a, c) and y0 != a * a + c
