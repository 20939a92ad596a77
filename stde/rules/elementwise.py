"""Elementwise nonlinear primitives through ``O(K²)`` Taylor recurrences.

Each function maps the input series ``x`` (collapsed layout, see
:mod:`stde.rules.series`) to the output series. Most follow from an ODE
``y' = a · x'`` (:func:`series.ode`), e.g. ``exp``: ``a = y``; ``tanh``: ``a = 1 - y²``;
``log``: ``a = 1/x``. No Faà di Bruno enumeration anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import comb
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from stde.core import Context, JetValue
from stde.rules import series
from stde.rules.linear import broadcast_coefficient
from stde.rules.registry import register

Series = series.Series
SeriesFunction = Callable[[Sequence[Any], int], Series]


def unary_rule(function: SeriesFunction) -> Callable[..., JetValue]:
    """A rule for ``y = f(x)`` from ``function(x_series, order) -> y_series``."""
    def rule(ctx: Context, inputs: Sequence[JetValue], **_: Any) -> JetValue:
        (x,) = inputs
        return JetValue.from_coefficients(function(x.coefficients, ctx.order))
    return rule


def binary_rule(function: Callable[[Sequence[Any], Sequence[Any], int], Series]
                ) -> Callable[..., JetValue]:
    """A rule for ``z = f(a, b)`` from ``function(a_series, b_series, order)``."""
    def rule(ctx: Context, inputs: Sequence[JetValue], **_: Any) -> JetValue:
        a, b = inputs
        z = function(a.coefficients, b.coefficients, ctx.order)
        shape = np.shape(z[0])
        return JetValue.from_coefficients(
            [z[0], *(None if c is None else broadcast_coefficient(c, k, ctx.order, shape)
                     for k, c in enumerate(z[1:], start=1))])
    return rule


def exp(x: Sequence[Any], order: int) -> Series:
    """``exp``: ``y' = y x'``."""
    return series.ode(x, jnp.exp(x[0]), lambda y, m: y[m], order)


def log(x: Sequence[Any], order: int) -> Series:
    """``log``: ``y' = x'/x``."""
    one = [jnp.ones_like(x[0])] + [None] * order
    return series.ode(x, jnp.log(x[0]), series.fixed(series.quotient(one, x, order, last=order - 1)), order)


def tanh(x: Sequence[Any], order: int) -> Series:
    """``tanh``: ``y' = (1 - y²) x'``."""
    def slope(y: Series, m: int) -> Any:
        return 1 - y[0] ** 2 if m == 0 else series.sub(None, series.square(y, m, order))
    return series.ode(x, jnp.tanh(x[0]), slope, order)


def sin_cos(x: Sequence[Any], order: int) -> tuple[Series, Series]:
    """``(sin, cos)`` together: ``s' = c x'``, ``c' = -s x'``."""
    s: Series = [jnp.sin(x[0])]
    c: Series = [jnp.cos(x[0])]
    minus_s: Series = [-s[0]]
    for k in range(1, order + 1):
        terms = [(j, comb(k - 1, j - 1)) for j in range(1, k + 1)]
        s.append(series.convolve(x, c, k, order, terms))
        c.append(series.convolve(x, minus_s, k, order, terms))
        minus_s.append(series.sub(None, s[k]))
    return s, c


register(lax.exp_p, unary_rule(exp))
register(lax.log_p, unary_rule(log))
register(lax.tanh_p, unary_rule(tanh))
register(lax.sin_p, unary_rule(lambda x, order: sin_cos(x, order)[0]))
register(lax.cos_p, unary_rule(lambda x, order: sin_cos(x, order)[1]))
