"""Piecewise primitives: selections (max, min, clamp, abs) and zero-derivative ones.

On each piece the output is one of the operands (or a fixed linear map of them), so
its coefficients are the selected operand's; the piece is chosen by the primals.
Comparisons, rounding and other locally constant primitives have all-zero
coefficients; their (often boolean or integer) outputs are constants.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from stde import sparse
from stde.core import Context, JetValue, bind_equation
from stde.rules import elementwise, series
from stde.rules.linear import broadcast_coefficient
from stde.rules.registry import register


def select(ctx: Context, condition: Any, if_true: JetValue, if_false: JetValue) -> JetValue:
    """Coefficients of ``where(condition, if_true, if_false)`` for a primal ``condition``."""
    shape = np.broadcast_shapes(np.shape(condition), np.shape(if_true.primal),
                                np.shape(if_false.primal))
    coefficients: list[Any] = [jnp.where(condition, if_true.primal, if_false.primal)]
    for k in range(1, ctx.order + 1):
        t, f = if_true.coefficients[k], if_false.coefficients[k]
        if t is None and f is None:
            coefficients.append(None)
            continue
        directions = series.has_directions(k, ctx.order)
        branches = [
            jnp.zeros((), coefficients[0].dtype) if c is None
            else series.lift(c, directions, len(shape)) for c in (t, f)
        ]
        out = jnp.where(condition, *branches)
        coefficients.append(broadcast_coefficient(out, k, ctx.order, shape))
    return JetValue.from_coefficients(coefficients)


def max_rule(ctx: Context, inputs: Sequence[JetValue], **_: Any) -> JetValue:
    """``max(a, b)``: the larger operand's coefficients (``b``'s at ties)."""
    a, b = inputs
    return select(ctx, a.primal > b.primal, a, b)


def min_rule(ctx: Context, inputs: Sequence[JetValue], **_: Any) -> JetValue:
    """``min(a, b)``: the smaller operand's coefficients (``b``'s at ties)."""
    a, b = inputs
    return select(ctx, a.primal < b.primal, a, b)


def clamp_rule(ctx: Context, inputs: Sequence[JetValue], **_: Any) -> JetValue:
    """``clamp(lo, x, hi) = min(max(x, lo), hi)``, the branches XLA's clamp takes.

    The primal is ``lax.clamp``'s own; the coefficients are those of the operand it
    selects: ``x``'s inside, the bound's outside, and ``hi``'s wherever ``lo > hi``
    (where the output is ``hi`` whatever ``x`` is).
    """
    lo, x, hi = inputs
    raised = select(ctx, x.primal > lo.primal, x, lo)
    clamped = select(ctx, raised.primal < hi.primal, raised, hi)
    return JetValue(lax.clamp(lo.primal, x.primal, hi.primal), clamped.lower, clamped.summed)


def abs_rule(ctx: Context, inputs: Sequence[JetValue], **_: Any) -> JetValue:
    """``|x|``: ``sign(x0) · x_k`` (zero coefficients at ``x0 = 0``); ``(z z̄)^{1/2}`` if complex.

    Sparse coefficients stay sparse for real ``x``; complex ones are densified (the
    conjugate products of :func:`stde.rules.elementwise.complex_abs` need arrays).
    """
    (x,) = inputs
    if jnp.iscomplexobj(x.primal):
        x = sparse.densify_value(x)
        return JetValue.from_coefficients(elementwise.complex_abs(x.coefficients, ctx.order))
    sign = jnp.sign(x.primal)
    return JetValue.from_coefficients(
        [jnp.abs(x.primal), *(series.scale(c, sign, k, ctx.order)
                              for k, c in enumerate(x.coefficients[1:], start=1))])


def sign_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> JetValue:
    """``sign``: locally constant for real ``x``; ``z / |z|`` for complex ``z``."""
    (x,) = inputs
    if jnp.iscomplexobj(x.primal):
        x = sparse.densify_value(x)  # complex: conjugate products need arrays
        return JetValue.from_coefficients(elementwise.complex_sign(x.coefficients, ctx.order))
    return constant_rule(lax.sign_p, ctx, inputs, **params)


def rem_rule(ctx: Context, inputs: Sequence[JetValue], **_: Any) -> JetValue:
    """``rem(a, b) = a - trunc(a/b)·b``, linear on each piece."""
    a, b = inputs
    quotient = jnp.trunc(a.primal / b.primal)
    coefficients: list[Any] = [lax.rem(a.primal, b.primal)]
    shape = np.shape(coefficients[0])
    for k in range(1, ctx.order + 1):
        terms = [None if c is None else broadcast_coefficient(c, k, ctx.order, shape)
                 for c in (a.coefficients[k], series.scale(b.coefficients[k], quotient, k,
                                                            ctx.order))]
        coefficients.append(series.sub(*terms))
    return JetValue.from_coefficients(coefficients)


def constant_rule(primitive: Any, ctx: Context, inputs: Sequence[JetValue],
                  **params: Any) -> Any:
    """Rule for a locally constant primitive: the primal output, no coefficients."""
    out = bind_equation(primitive, params, *(x.primal for x in inputs))
    if primitive.multiple_results:
        return [JetValue.constant(o, ctx.order) for o in out]
    return JetValue.constant(out, ctx.order)


_SELECTS = "selects between operands' coefficients with jnp.where on dense arrays"
register(lax.max_p, max_rule, sparse=_SELECTS)
register(lax.min_p, min_rule, sparse=_SELECTS)
register(lax.clamp_p, clamp_rule, sparse=_SELECTS)
register(lax.abs_p, abs_rule, sparse=True)
register(lax.rem_p, rem_rule, sparse=True)
register(lax.sign_p, sign_rule, sparse=True)
for _primitive in (
    lax.floor_p, lax.ceil_p, lax.round_p, lax.is_finite_p, lax.stop_gradient_p,
    lax.eq_p, lax.ne_p, lax.lt_p, lax.le_p, lax.gt_p, lax.ge_p, lax.argmax_p, lax.argmin_p,
    lax.eq_to_p, lax.le_to_p, lax.lt_to_p,  # total-order comparisons (jnp.searchsorted)
    lax.and_p, lax.or_p, lax.not_p, lax.xor_p, lax.nextafter_p, lax.iota_p,
    lax.bitcast_convert_type_p, lax.population_count_p, lax.reduce_and_p, lax.reduce_or_p,
    lax.shift_left_p, lax.shift_right_arithmetic_p, lax.shift_right_logical_p,
):
    register(_primitive, functools.partial(constant_rule, _primitive), sparse=True)
