"""Fallback for primitives without a Taylor rule: nested JVPs of ``t ↦ prim(x(t))``.

Exponential in ``K`` but correct for any primitive JAX can differentiate. A primitive
without a JVP rule raises :class:`UnsupportedPrimitiveError` naming it.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax._src.interpreters import ad

from stde.core import Context, JetValue, bind_equation, is_float


class UnsupportedPrimitiveError(NotImplementedError):
    """A primitive has neither a Taylor rule nor a JVP rule."""


@functools.cache
def _warn_once(name: str) -> None:
    warnings.warn(
        f"stde: primitive '{name}' has no Taylor rule; using nested JVPs (cost exponential "
        f"in the order). Register a rule with stde.rules.register('{name}', rule).",
        stacklevel=4,
    )


def _derivatives(g: Callable[[Any], Any], t: Any, n: int) -> list[Any]:
    """``[g(t), g'(t), .., g^(n)(t)]`` by nesting ``jax.jvp`` ``n`` times."""
    def all_up_to(m: int) -> Callable[[Any], tuple[Any, ...]]:
        if m == 0:
            return lambda s: (g(s),)
        lower = all_up_to(m - 1)

        def f(s: Any) -> tuple[Any, ...]:
            values, tangents = jax.jvp(lower, (s,), (jnp.ones_like(s),))
            return (*values, tangents[-1])
        return f
    return list(all_up_to(n)(t))


def fallback_rule(primitive: Any) -> Callable[..., Any]:
    """The nested-JVP rule for ``primitive``, or an error naming it.

    Raises:
      UnsupportedPrimitiveError: ``primitive`` has no JVP rule either.
    """
    if primitive not in ad.primitive_jvps:
        raise UnsupportedPrimitiveError(
            f"stde has no Taylor rule for primitive '{primitive.name}', and JAX has no JVP "
            f"rule for it to fall back on. Register one with "
            f"stde.rules.register('{primitive.name}', rule); see stde.rules.registry."
        )
    _warn_once(primitive.name)
    return functools.partial(_nested_jvp_rule, primitive)


def _nested_jvp_rule(primitive: Any, ctx: Context, inputs: Sequence[JetValue],
                     **params: Any) -> Any:
    order = ctx.order
    moving = [i for i, x in enumerate(inputs) if not x.is_constant]
    primals = [x.primal for x in inputs]
    dtype = jnp.result_type(*(primals[i] for i in moving))

    def along_curve(lowers: Sequence[Sequence[Any]]) -> Callable[[Any], Any]:
        """``t ↦ prim(x(t))`` with ``x(t) = x0 + Σ_{k<K} x_k t^k/k!`` per moving input."""
        def g(t: Any) -> Any:
            args = list(primals)
            for i, coefficients in zip(moving, lowers):
                for k, c in enumerate(coefficients, start=1):
                    if c is not None:
                        args[i] = args[i] + c * (t ** k / math.factorial(k))
            return bind_equation(primitive, params, *args)
        return g

    def per_direction(*lowers_flat: Any) -> list[Any]:
        lowers = [lowers_flat[n * (order - 1):(n + 1) * (order - 1)] for n in range(len(moving))]
        return _derivatives(along_curve(lowers), jnp.zeros((), dtype), order)

    lowers_flat = [c for i in moving for c in inputs[i].lower]
    axes = [None if c is None else 0 for c in lowers_flat]
    derivs = jax.vmap(per_direction, in_axes=axes)(*lowers_flat) if order > 1 else [None]
    tangents = [
        x.summed if x.summed is not None
        else jnp.zeros_like(x.primal) if is_float(x.primal)
        else np.zeros(np.shape(x.primal), jax.dtypes.float0)
        for x in inputs
    ]
    out, linear_top = jax.jvp(lambda *a: bind_equation(primitive, params, *a), primals, tangents)
    outs, linear_tops = (out, linear_top) if primitive.multiple_results else ([out], [linear_top])
    results = []
    for n, (o, top) in enumerate(zip(outs, linear_tops)):
        if not is_float(o):
            results.append(JetValue.constant(o, order))
            continue
        pick = (lambda d: d[n]) if primitive.multiple_results else (lambda d: d)
        lower = tuple(pick(derivs[k]) for k in range(1, order)) if order > 1 else ()
        summed = top + pick(derivs[order]).sum(0) if order > 1 else top
        results.append(JetValue(o, lower, summed))
    return results if primitive.multiple_results else results[0]
