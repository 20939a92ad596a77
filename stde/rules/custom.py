"""Primitives that carry their own JVP: ``custom_jvp_call`` and ``call_hi_primitive``.

Their derivatives are defined by the JVP rule, not by the primal body (``jax.hessian``
of ``jnp.sinc`` or of a straight-through estimator differentiates the rule). With
``y(t) = f(x(t))`` the rule gives ``y'(t) = g(x(t), x'(t))``, ``g`` the tangent output of
the JVP; the derivative-scaled coefficients of ``x'(t)`` are those of ``x(t)`` shifted
by one (``x_1 .. x_K``), so ``y_k`` (``k ≥ 1``) is coefficient ``k - 1`` of ``g``
Taylor-propagated on the curve ``(x(t), x'(t))``: an order-``K-1`` jet of the rule.

Collapsed layout: the primal ``x_{1,r}`` of ``x'(t)`` differs per direction, so the
lower coefficients and the top term without the top input are propagated per
direction (``vmap``). ``g`` is linear in the tangent and its top coefficient depends on
``x_{K,r}`` only through ``g(x_0, x_{K,r})``, so the summed top adds one JVP at the
primal with the summed top input. Where every tangent is a symbolic zero the
interpreter evaluates the primitive as JAX does; inputs without coefficients enter
the JVP as symbolic zeros (so ``symbolic_zeros=True`` rules see them as such).

This equals ``jax.hessian`` (nested ``jax.jvp``) whenever the rule's primal output is
the function itself (``f(x), ...`` or ``defjvps``, as in every ``jax.nn`` activation and
``jnp.sinc``). A rule whose primal output is computed by other code (``jnp.sin(x)`` for
a function whose derivative rule is not ``cos``) makes nested JAX differentiate that
code at the outer levels, which no single Taylor series reproduces; stde then follows
the rule at every order.

``custom_vjp_call`` is not here: its body is interpreted (:mod:`stde.rules.control_flow`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import primitives as prims

from stde.core import Context, JetValue, bind_equation, is_float
from stde.rules import params, series
from stde.rules.registry import register


def _tangent_function(primitive: Any, params: dict[str, Any], inputs: Sequence[JetValue],
                      moving: Sequence[int]) -> tuple[Callable[..., Any], list[bool]]:
    """``(f, floating)``: ``f(xs, dxs) -> (outputs, tangents of floating outputs)``."""
    fixed = [x.primal for x in inputs]

    def apply(*xs: Any) -> list[Any]:
        args = list(fixed)
        for i, x in zip(moving, xs, strict=True):
            args[i] = x
        out = bind_equation(primitive, params, *args)
        return list(out) if primitive.multiple_results else [out]

    shapes = jax.eval_shape(apply, *(fixed[i] for i in moving))
    floating = [is_float(jnp.zeros((), s.dtype)) for s in shapes]

    def jvp(xs: Sequence[Any], dxs: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        out, tangents = jax.jvp(apply, list(xs), list(dxs))
        return out, [t for t, f in zip(tangents, floating, strict=True) if f]

    return jvp, floating


def _coefficient_or_zeros(c: Any, shape_like: Any, lead: tuple[int, ...]) -> Any:
    if c is not None:
        return c
    return jnp.zeros((*lead, *np.shape(shape_like)), jnp.result_type(shape_like))


def custom_jvp_rule(ctx: Context, inputs: Sequence[JetValue], *, primitive: Any,
                    **params: Any) -> list[JetValue]:
    """Taylor coefficients of a primitive from its own JVP rule (see the module doc).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import stde
      >>> f = jax.custom_jvp(lambda x: x ** 3)
      >>> _ = f.defjvp(lambda p, t: (p[0] ** 3, jnp.sin(p[0]) * t[0]))  # not the body's
      >>> _, (d1, d2) = stde.jet(f, (1.0,), ((1.0, 0.0),))
      >>> round(float(d2), 4), round(float(jax.hessian(f)(1.0)), 4)  # cos(1), not 6
      (0.5403, 0.5403)

    """
    order, directions = ctx.order, ctx.directions
    moving = [i for i, x in enumerate(inputs) if not x.is_constant]
    jvp, floating = _tangent_function(primitive, params, inputs, moving)
    xs = [inputs[i] for i in moving]
    x0 = [x.primal for x in xs]

    tops = [_coefficient_or_zeros(x.summed, x.primal, ()) for x in xs]
    out, summed = jvp(x0, tops)
    lower_out: list[list[Any]] = [[] for _ in summed]
    if order > 1:
        from stde.interpreter import Interpreter  # the rule interprets the JVP's jaxpr

        inner = Interpreter(order=order - 1, directions=1)
        rule_jaxpr = jax.make_jaxpr(lambda p, t: jvp(p, t)[1])(x0, x0)

        def per_direction(lowers: list[list[Any]]) -> list[JetValue]:
            # x(t): x_0 .. x_{K-1}; x'(t): x_1 .. x_{K-1} (its top x_K enters linearly).
            values = []
            for x, cs in zip(xs, lowers, strict=True):
                values.append(JetValue(x.primal, tuple(c[None] for c in cs[:-1]), cs[-1]))
            for cs in lowers:
                values.append(JetValue(cs[0], tuple(c[None] for c in cs[1:]), None))
            return inner.eval_jaxpr(rule_jaxpr, values)

        lowers = [[_coefficient_or_zeros(c, x.primal, (directions,)) for c in x.lower]
                  for x in xs]
        per = jax.vmap(per_direction)(lowers)
        for k, value in enumerate(per):
            coefficients = value.coefficients
            lower_out[k] = [coefficients[0], *(None if c is None else c[:, 0]
                                                for c in coefficients[1:-1])]
            if coefficients[-1] is not None:
                summed[k] = summed[k] + series.sum_directions(coefficients[-1])
    results, tangents = [], iter(zip(summed, lower_out, strict=True))
    for o, f in zip(out, floating, strict=True):
        if not f:
            results.append(JetValue.constant(o, order))
            continue
        top, lower = next(tangents)
        results.append(JetValue(o, tuple(lower), top))
    return results if primitive.multiple_results else results[0]


def _bound(primitive: Any) -> Callable[..., Any]:
    def rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> Any:
        return custom_jvp_rule(ctx, inputs, primitive=primitive, **params)
    return rule


register(prims.custom_jvp_call_p, _bound(prims.custom_jvp_call_p))
if (_call_hi := params.call_hi_primitive()) is not None:
    register(_call_hi, _bound(_call_hi))
