"""Fallback for primitives without a Taylor rule: nested JVPs of ``t ↦ prim(x(t))``.

For each direction ``r`` the moving operands follow the curve
``x_r(t) = x0 + Σ_{k<K} x_{k,r} t^k / k!`` (without the top coefficient). Its
derivatives ``D_k = d^k/dt^k prim(x_r(t))`` at ``t = 0`` (the lower coefficients, and
the non-linear part ``T_K`` of the top one) come from ``K`` nested ``jax.jvp`` in the
curve's coefficients: ``D_k(x0, .., x_k)`` is the JVP of ``D_{k-1}`` at
``(x0, .., x_{k-1})`` along ``(x1, .., x_k)``. Every nesting level has the shared point
``x0`` as its innermost primal, so under ``vmap`` over directions the primal work (a
factorisation, say) is done once, not once per direction. The linear part is one JVP at
``x0`` along the summed top coefficients, so the result is collapsed (docs/design.md,
"Conventions"). The cost is exponential in ``K`` but the result is exact for any
primitive JAX can differentiate; a one-time warning names the primitive when nested JVPs
run (not for a primitive without floating results, such as ``jax.debug.print``'s,
which is only evaluated). A primitive without a JVP rule raises
:class:`UnsupportedPrimitiveError` naming it.

Operands without coefficients (weights, integer indices) stay at their primal values;
integer and boolean results are constants; primitives without a batching rule are
evaluated one direction at a time.
"""

from __future__ import annotations

import contextvars
import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax._src.interpreters import ad, batching
from jax.extend.core import Primitive

from stde.core import Context, JetValue, bind_at, is_float, on_gathered_directions
from stde.rules import registry, series


class UnsupportedPrimitiveError(NotImplementedError):
    """A primitive has neither a Taylor rule nor a JVP rule."""


@functools.cache
def _warn_once(name: str) -> None:
    warnings.warn(
        f"stde: primitive '{name}' has no Taylor rule; using nested JVPs (cost exponential "
        f"in the order). Register a rule with stde.rules.register('{name}', rule).",
        stacklevel=5,
    )


def _dispatches_to_traces(primitive: Primitive) -> bool:
    """Whether ``primitive``'s JVP and batching live on the traces, not in rule tables.

    True for higher-order primitives with their own ``bind_with_trace`` (``call``,
    ``custom_jvp_call``, ``shard_map``).
    """
    return type(primitive).bind_with_trace is not Primitive.bind_with_trace


def has_jvp(primitive: Primitive) -> bool:
    """Whether JAX can differentiate ``primitive`` (so the fallback applies).

    Example:
      >>> from jax.extend.core import primitives
      >>> has_jvp(primitives.lgamma_p), has_jvp(primitives.zeta_p)
      (True, False)
    """
    return primitive in ad.primitive_jvps or _dispatches_to_traces(primitive)


def _is_batchable(primitive: Primitive) -> bool:
    return primitive in batching.fancy_primitive_batchers or _dispatches_to_traces(primitive)


def fallback_rule(primitive: Primitive) -> Callable[..., Any]:
    """The nested-JVP rule for ``primitive``, warning once per primitive name when it runs.

    Raises:
      UnsupportedPrimitiveError: ``primitive`` has no JVP rule either.

    Example:
      >>> import warnings
      >>> from jax import lax
      >>> with warnings.catch_warnings():
      ...     warnings.simplefilter("ignore")
      ...     rule = fallback_rule(lax.lgamma_p)
      >>> callable(rule)
      True
    """
    if not has_jvp(primitive):
        raise UnsupportedPrimitiveError(
            f"stde has no Taylor rule for primitive '{primitive.name}', and JAX has no JVP "
            f"rule for it to fall back on. Register a Taylor rule with "
            f"stde.rules.register(primitive, rule), passing the Primitive object or its "
            f"name '{primitive.name}' (see stde.rules.registry), or "
            f"give the primitive a JVP rule (jax.interpreters.ad.primitive_jvps) to use "
            f"the nested-JVP fallback."
        )
    return functools.partial(_nested_jvp_rule, primitive, True)


def rule_or_fallback(primitive: Primitive) -> Callable[..., Any]:
    """The Taylor rule registered for ``primitive``, else :func:`fallback_rule`'s."""
    return registry.lookup(primitive) or fallback_rule(primitive)


def jvp_rule(primitive: Primitive) -> Callable[..., Any]:
    """A Taylor rule that takes every derivative from ``primitive``'s own JVP rule.

    This is what ``jax.hessian`` does: the first derivative comes from the JVP rule, and
    higher ones from differentiating that rule again. ``custom_jvp_call`` and JAX 0.11's
    ``call_hi_primitive`` (``lax.custom_root``) use it, so that user-defined derivative
    rules are respected. The cost is that of :func:`fallback_rule`, without its warning.

    Args:
      primitive: the primitive the rule binds.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import stde
      >>> f = jax.custom_jvp(jnp.sin)
      >>> f.defjvp(lambda x, t: (jnp.sin(x[0]), 2 * t[0]))  # a rule that is not sin's
      <function <lambda> at ...>
      >>> _, (y1, y2) = stde.jet(f, (0.5,), ((1.0, 0.0),))
      >>> float(y1), float(y2)
      (2.0, 0.0)

    """
    return functools.partial(_nested_jvp_rule, primitive, False)


_interpreting_jvp_rule = contextvars.ContextVar("stde_interpreting_jvp_rule", default=False)
"""Whether an :func:`interpreted_jvp_rule` interpretation is under way in this thread (one
level only: a JVP rule that calls its own function would otherwise unfold without end).
A context variable, so that a thread tracing beside another does not see its level."""


def interpreted_jvp_rule(primitive: Primitive) -> Callable[..., Any]:
    """:func:`jvp_rule`, with the JVP rule itself interpreted by stde at order 2.

    With ``h(x, v)`` the primitive's JVP rule (linear in ``v``), the 2-jet of
    ``y = prim(x)`` along ``x0 + t x_1 + t²/2 x_2`` is ``y_1 = h(x0, x_1)``,
    ``y_2 = ∂_x h(x0, x_1)[x_1] + h(x0, x_2)``. Both are read off the 2-jet of
    ``φ(t) = h(x0 + t x_1, t x_1)`` (``φ_1 = y_1``, ``φ_2 = 2 ∂_x h[x_1, x_1]``),
    which stde's own rules compute on the jaxpr of ``h``: the tangent's primal is marked
    a known zero (:attr:`stde.core.JetValue.zero_primal`), collapsed over directions and
    keeping sparse coefficients, where nested JVPs would run once per direction (for
    ``slogdet``: linear solves with every direction as a right-hand side). The
    derivatives are still those of the JVP rule, as ``jax.hessian`` takes them. Other
    orders, and a JVP rule met while interpreting another, use :func:`jvp_rule`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import stde
      >>> f = jax.custom_jvp(jnp.sin)
      >>> f.defjvp(lambda x, t: (jnp.sin(x[0]), 2 * x[0] * t[0]))  # not sin's rule
      <function <lambda> at ...>
      >>> float(stde.laplacian(lambda x: f(x).sum())(jnp.array([0.5, 1.0])))   # 2 + 2
      4.0

    """
    nested = jvp_rule(primitive)

    def rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> Any:
        moving = [i for i, x in enumerate(inputs) if x.lower and x.lower[0] is not None]
        if ctx.order != 2 or not moving or _interpreting_jvp_rule.get():
            return nested(ctx, inputs, **params)
        primals = [x.primal for x in inputs]
        outs, linear_tops, floating = _linear_part(primitive, params, inputs)
        on_moving = bind_at(primitive, params, primals, moving)

        def h(*points_and_tangents: Any) -> list[Any]:
            points, along = points_and_tangents[:len(moving)], points_and_tangents[len(moving):]
            tangents = jax.jvp(on_moving, points, along)[1]
            return [tangents[n] for n in floating]

        points = [primals[i] for i in moving]
        closed = jax.make_jaxpr(h)(*points, *points)
        level = _interpreting_jvp_rule.set(True)
        try:
            jets = ctx.eval_jaxpr(closed, [
                *(JetValue(primals[i], inputs[i].lower, None) for i in moving),
                *(JetValue(jnp.zeros_like(primals[i]), inputs[i].lower, None, True)
                  for i in moving)])
        finally:
            _interpreting_jvp_rule.reset(level)
        results = [JetValue.constant(o, 2) for o in outs]
        for jet, n in zip(jets, floating):
            top = linear_tops[n] if any(x.summed is not None for x in inputs) else None
            if jet.summed is not None:
                half = series.times_number(jet.summed, 0.5)
                top = half if top is None else top + half
            results[n] = JetValue(outs[n], jet.lower, top)
        return results if primitive.multiple_results else results[0]
    return rule


def _curve_derivatives(g: Callable[[list[Any]], list[Any]], coefficients: list[list[Any]]
                       ) -> list[list[Any]]:
    """``[D_0, .., D_n]``: derivatives of ``t ↦ g(x(t))`` at 0 for ``x(t) = Σ_k x_k t^k/k!``.

    ``coefficients[k]`` holds ``x_k`` (one array per operand) for ``k = 0 .. n``.
    ``D_k`` is the JVP of ``D_{k-1}`` at ``(x_0, .., x_{k-1})`` along ``(x_1, .., x_k)``
    (the chain rule), so the primal of every level is ``x_0`` alone.
    """
    def all_up_to(m: int) -> Callable[..., tuple[Any, ...]]:
        if m == 0:
            return lambda x0: (g(x0),)
        lower = all_up_to(m - 1)

        def f(*xs: Any) -> tuple[Any, ...]:
            values, tangents = jax.jvp(lower, xs[:m], xs[1:])
            return (*values, tangents[-1])
        return f
    return list(all_up_to(len(coefficients) - 1)(*coefficients))


def _map_directions(f: Callable[..., list[Any]], args: Sequence[Any], batchable: bool
                    ) -> list[Any]:
    """``f`` mapped over the leading (direction) axis of the non-``None`` ``args``.

    Directions sharded over an explicit mesh are gathered for the map
    (:func:`stde.core.on_gathered_directions`): JAX's JVP rules batch some primitives
    over tangents alone by folding the batch into a reshape, which a sharded axis does
    not allow.
    """
    axes = [None if a is None else 0 for a in args]
    if batchable:
        return on_gathered_directions(jax.vmap(f, in_axes=axes), *args)
    count = next(np.shape(a)[0] for a in args if a is not None)
    per_direction = [f(*(a if a is None else a[r] for a in args)) for r in range(count)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *per_direction)


def _linear_part(primitive: Primitive, params: dict[str, Any], inputs: Sequence[JetValue]
                 ) -> tuple[list[Any], list[Any], list[int]]:
    """What both JVP rules start from.

    Returns the primitive's outputs, one JVP along the summed top coefficients (the
    linear part of the top; in the operands that have one only) and the floating outputs.
    """
    primals = [x.primal for x in inputs]
    with_top = [n for n, x in enumerate(inputs) if x.summed is not None]
    if with_top:
        outs, linear_tops = jax.jvp(bind_at(primitive, params, primals, with_top),
                                    [primals[n] for n in with_top],
                                    [inputs[n].summed for n in with_top])
    else:
        outs = bind_at(primitive, params, primals, [])()
        linear_tops = [None] * len(outs)
    return outs, linear_tops, [n for n, o in enumerate(outs) if is_float(o)]


def _nested_jvp_rule(primitive: Primitive, warn: bool, ctx: Context,
                     inputs: Sequence[JetValue], **params: Any) -> Any:
    order = ctx.order
    primals = [x.primal for x in inputs]
    outs, linear_tops, floating = _linear_part(primitive, params, inputs)

    # The non-linear part, per direction, from the lower coefficients.
    moving = [i for i, x in enumerate(inputs) if any(c is not None for c in x.lower)]
    lowers_flat = [c for i in moving for c in inputs[i].lower]
    derivatives: list[list[Any]] | None = None
    if moving and floating:
        if warn:
            _warn_once(primitive.name)
        on_moving = bind_at(primitive, params, primals, moving)

        def along_curve(*lowers: Any) -> list[list[Any]]:
            def g(points: list[Any]) -> list[Any]:
                return [o for o in on_moving(*points) if is_float(o)]
            zeros = [jnp.zeros_like(primals[i]) for i in moving]
            coefficients = [[primals[i] for i in moving]]
            for k in range(1, order):   # lowers: operand-major, order - 1 per operand
                coefficients.append([zero if c is None else c
                                     for zero, c in zip(zeros, lowers[k - 1::order - 1])])
            coefficients.append(zeros)   # x_K = 0: its linear part is added below
            return _curve_derivatives(g, coefficients)
        derivatives = _map_directions(along_curve, lowers_flat, _is_batchable(primitive))

    results = [JetValue.constant(o, order) for o in outs]
    for position, n in enumerate(floating):
        top = linear_tops[n] if any(x.summed is not None for x in inputs) else None
        lower: tuple[Any, ...] = (None,) * (order - 1)
        if derivatives is not None:
            lower = tuple(derivatives[k][position] for k in range(1, order))
            nonlinear_top = series.sum_directions(derivatives[order][position])
            top = nonlinear_top if top is None else top + nonlinear_top
        results[n] = JetValue(outs[n], lower, top)
    return results if primitive.multiple_results else results[0]
