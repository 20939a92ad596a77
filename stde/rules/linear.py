"""Linear and structural primitives: one map applied to every coefficient.

A primitive here is jointly linear in its floating operands once its integer or
boolean operands (indices, predicates) are held fixed. Its Taylor rule applies the
primitive to the primal, to every lower coefficient with the direction axis folded in
by ``jax.vmap``, and to the summed top coefficient. Operands without a coefficient
contribute zero; indices and predicates contribute their primal.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax._src.ad_util import add_jaxvals_p

from stde.core import Context, JetValue, bind_equation, is_float
from stde.rules import series
from stde.rules.registry import register


def apply_linear(ctx: Context, primitive: Any, inputs: Sequence[JetValue],
                 params: dict[str, Any]) -> list[JetValue]:
    """Applies ``primitive`` coefficient by coefficient (see module docstring).

    Returns:
      One :class:`JetValue` per result of ``primitive``; non-float results are constants.

    """
    def bind(*args: Any) -> list[Any]:
        out = bind_equation(primitive, params, *args)
        return list(out) if primitive.multiple_results else [out]

    linear = [is_float(x.primal) for x in inputs]
    primals = bind(*(x.primal for x in inputs))
    per_order: list[list[Any] | None] = []
    for k in range(1, ctx.order + 1):
        coefficients = [x.coefficients[k] if lin else None for x, lin in zip(inputs, linear)]
        if all(c is None for c in coefficients):
            per_order.append(None)
            continue
        args = [
            x.primal if not lin else jnp.zeros_like(x.primal) if c is None else c
            for x, lin, c in zip(inputs, linear, coefficients)
        ]
        axes = [0 if c is not None and series.has_directions(k, ctx.order) else None
                for c in coefficients]
        per_order.append(jax.vmap(bind, in_axes=axes)(*args) if any(a == 0 for a in axes)
                         else bind(*args))
    return [
        JetValue.from_coefficients([p, *(None if c is None else c[n] for c in per_order)])
        if is_float(p) else JetValue.constant(p, ctx.order)
        for n, p in enumerate(primals)
    ]


def linear_rule(primitive: Any, ctx: Context, inputs: Sequence[JetValue],
                **params: Any) -> Any:
    """Rule for a primitive registered with :func:`register_linear`."""
    out = apply_linear(ctx, primitive, inputs, params)
    return out if primitive.multiple_results else out[0]


def register_linear(primitive: Any) -> None:
    """Registers ``primitive`` as linear in its floating operands."""
    register(primitive, functools.partial(linear_rule, primitive))


def broadcast_coefficient(c: Any, k: int, order: int, shape: tuple[int, ...]) -> Any:
    """Broadcasts coefficient ``k`` (with its direction axis, if any) to ``shape``."""
    if series.has_directions(k, order):
        c = series.lift(c, True, len(shape))
        return jnp.broadcast_to(c, (c.shape[0], *shape))
    return jnp.broadcast_to(c, shape)


def signed_sum_rule(*signs: int) -> Any:
    """Rule for ``Σ_i signs[i] · operand_i`` (add, sub, neg) that never adds a zero."""
    def rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> JetValue:
        shape = np.broadcast_shapes(*(np.shape(x.primal) for x in inputs))
        primal = sum(s * x.primal for s, x in zip(signs, inputs))
        coefficients: list[Any] = [primal]
        for k in range(1, ctx.order + 1):
            total = None
            for s, x in zip(signs, inputs):
                c = x.coefficients[k]
                if c is not None:  # aligned first: a scalar's (R,) must not meet (R, *S)
                    c = broadcast_coefficient(c, k, ctx.order, shape)
                total = series.add(total, c) if s > 0 else series.sub(total, c)
            coefficients.append(total)
        return JetValue.from_coefficients(coefficients)
    return rule


register(lax.add_p, signed_sum_rule(1, 1))
register(add_jaxvals_p, signed_sum_rule(1, 1))
register(lax.sub_p, signed_sum_rule(1, -1))
register(lax.neg_p, signed_sum_rule(-1))

for _primitive in (
    lax.convert_element_type_p, lax.reshape_p, lax.broadcast_in_dim_p, lax.squeeze_p,
    lax.transpose_p, lax.slice_p, lax.dynamic_slice_p, lax.dynamic_update_slice_p,
    lax.concatenate_p, lax.pad_p, lax.rev_p, lax.reduce_sum_p, lax.cumsum_p, lax.copy_p,
    lax.select_n_p, lax.gather_p, lax.scatter_add_p, lax.scatter_sub_p,
    lax.reduce_window_sum_p, lax.real_p, lax.imag_p, lax.complex_p, lax.conj_p,
    lax.split_p, lax.device_put_p, lax.reduce_precision_p, lax.sharding_constraint_p,
    lax.tile_p, lax.fft_p, lax.optimization_barrier_p,
):
    register_linear(_primitive)
