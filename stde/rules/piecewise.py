"""Piecewise primitives: selections (max, min, clamp, abs) and zero-derivative ones.

On each piece the output is one of the operands (or a fixed linear map of them), so
its coefficients are the selected operand's; the piece is chosen by the primals. Where
pieces meet, the coefficients follow JAX's JVP rules, so that they equal
``jax.hessian``'s derivatives there too: ``max``/``min`` take the mean of tied
operands, ``clamp`` has none at a bound, ``|x|`` has slope ``+1`` at ``0``.
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
from stde.core import Array, Context, JetValue, bind_equation
from stde.rules import elementwise, series
from stde.rules.linear import broadcast_coefficient
from stde.rules.registry import register


def blend(ctx: Context, primal: Array, weighted: Sequence[tuple[Array, JetValue]]) -> JetValue:
    """``primal`` with coefficients ``y_k = Σ_j w_j x_{j,k}``, each weight read off the primals.

    This is how JAX differentiates a selection: its JVP multiplies each operand's
    tangent by a weight that depends on the primals only (``1`` on the operand's piece,
    ``½`` at a tie of ``max``/``min``, ``0`` elsewhere), so nested JVPs, and
    ``jax.hessian``, see the same weights at every order. Where ``w_j = 0`` operand
    ``j`` contributes nothing, not even a non-finite coefficient.

    Example:
      >>> import jax.numpy as jnp
      >>> from stde.interpreter import Interpreter
      >>> a = JetValue(jnp.array(1.0), (), jnp.array(4.0))
      >>> b = JetValue(jnp.array(1.0), (), jnp.array(jnp.inf))
      >>> float(blend(Interpreter(1, 1), a.primal, [(jnp.array(1.0), a),
      ...                                            (jnp.array(0.0), b)]).summed)
      4.0

    """
    shape = np.shape(primal)
    weights = [jnp.broadcast_to(weight, shape) for weight, _ in weighted]
    coefficients: list[Any] = [primal]
    for k in range(1, ctx.order + 1):
        directions = series.has_directions(k, ctx.order)
        parts = []
        for weight, (_, x) in zip(weights, weighted):
            c = x.coefficients[k]
            if c is None:
                continue
            c = broadcast_coefficient(c, k, ctx.order, shape)
            w = weight.astype(c.dtype)
            w = w[None] if directions else w
            parts.append(jnp.where(w != 0, w * c, jnp.zeros((), c.dtype)))
        coefficients.append(functools.reduce(jnp.add, parts) if parts else None)
    return JetValue.from_coefficients(coefficients)


def balanced(a: Array, b: Array) -> Array:
    """``max(a, b)``'s weight on ``a``: ``1`` where ``a > b``, ``½`` at ties, else ``0``.

    Example:
      >>> import jax.numpy as jnp
      >>> balanced(jnp.array([2.0, 1.0, 0.0]), jnp.array([1.0, 1.0, 1.0])).tolist()
      [1.0, 0.5, 0.0]

    """
    return jnp.where(a > b, 1.0, jnp.where(a == b, 0.5, 0.0))


def max_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> JetValue:
    """``max(a, b)``: the larger operand's coefficients, their mean at ties (as JAX's JVP)."""
    a, b = inputs
    return blend(ctx, bind_equation(lax.max_p, params, a.primal, b.primal),
                 [(balanced(a.primal, b.primal), a), (balanced(b.primal, a.primal), b)])


def min_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> JetValue:
    """``min(a, b)``: the smaller operand's coefficients, their mean at ties (as JAX's JVP)."""
    a, b = inputs
    return blend(ctx, bind_equation(lax.min_p, params, a.primal, b.primal),
                 [(balanced(b.primal, a.primal), a), (balanced(a.primal, b.primal), b)])


def clamp_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> JetValue:
    """``clamp(lo, x, hi)``: the coefficients of the operand XLA's ``min(max(x, lo), hi)`` returns.

    ``x``'s strictly inside the bounds, ``lo``'s strictly below, ``hi``'s strictly
    above, and none where ``x`` equals a bound: there ``jax.hessian`` (JAX's JVP of
    ``clamp``) has zero derivatives. Where ``lo > hi`` the output is ``hi`` whatever
    ``x`` is, so the coefficients are ``hi``'s (JAX's JVP keeps them only for ``x > hi``).
    """
    lo, x, hi = inputs
    ordered = lo.primal < hi.primal
    return blend(ctx, bind_equation(lax.clamp_p, params, lo.primal, x.primal, hi.primal), [
        ((lo.primal < x.primal) & (x.primal < hi.primal), x),
        ((x.primal < lo.primal) & ordered, lo),
        ((hi.primal < x.primal) | (hi.primal < lo.primal), hi)])


def abs_rule(ctx: Context, inputs: Sequence[JetValue], **_: Any) -> JetValue:
    """``|x|``: ``±x_k``, ``+`` where ``x0 ≥ 0`` (JAX's JVP at ``0``); ``(z z̄)^{1/2}`` if complex.

    Sparse coefficients stay sparse for real ``x``; complex ones are densified (the
    conjugate products of :func:`stde.rules.elementwise.complex_abs` need arrays).
    """
    (x,) = inputs
    if jnp.iscomplexobj(x.primal):
        x = sparse.densify_value(x)
        return JetValue.from_coefficients(elementwise.complex_abs(x.coefficients, ctx.order))
    sign = jnp.where(x.primal >= 0, 1.0, -1.0).astype(x.primal.dtype)
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
