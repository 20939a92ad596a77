"""Linear and structural primitives: one map applied to every coefficient.

A primitive here is jointly linear in its floating operands once its integer or
boolean operands (indices, predicates) are held fixed. Its Taylor rule applies the
primitive to the primal, to every lower coefficient with the direction axis folded in
by ``jax.vmap``, and to the summed top coefficient. Operands without a coefficient
contribute zero; indices and predicates contribute their primal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax._src.ad_util import add_jaxvals_p

from stde import sparse
from stde.core import Array, Context, JetValue, bind_at, is_float
from stde.rules import series
from stde.rules.params import linear_call_primitive
from stde.rules.registry import register

LinearMap = Callable[..., Sequence[Array | None]]
"""A linear function of one array per operand, returning one array per result."""


def map_coefficients(ctx: Context, linear_map: LinearMap, inputs: Sequence[JetValue],
                     primals_out: Sequence[Array], zero_primal: bool = False,
                     over_directions: Callable[..., Any] = jax.vmap) -> list[JetValue]:
    """Applies a linear map to every coefficient order of ``inputs``.

    Coefficient ``k`` of result ``n`` is ``linear_map(x_k of each input)[n]``: the
    direction axis of lower coefficients is folded in by ``jax.vmap``, and the summed
    top goes through the map directly (the map is linear, so the top stays collapsed).
    An input without coefficient ``k`` contributes zeros; when no input has one the
    results' coefficient ``k`` is a symbolic zero.

    Args:
      ctx: the rule context (order ``K``, directions ``R``).
      linear_map: a linear function of one array per input (shaped like its primal),
        returning one array per result, or ``None`` for a result without coefficients.
      inputs: the operands the map acts on.
      primals_out: the results' primals; non-float ones become constants.
      zero_primal: the float results' primals are known zeros (the caller's primitive
        is linear and all its floating operands' primals are known zeros; a map that is
        linear only piecewise, such as a padded ``reduce_window_max``, can send zeros
        to ``-inf``).
      over_directions: how the map is applied along the direction axis, with
        ``jax.vmap``'s signature (:func:`map_sequentially` for a map JAX cannot batch).

    Returns:
      One :class:`JetValue` per result.

    Example:
      >>> import jax.numpy as jnp
      >>> from stde.core import JetValue
      >>> from stde.interpreter import Interpreter
      >>> x = JetValue(jnp.array([3.0, 1.0, 2.0]), (jnp.ones((2, 3)),), jnp.arange(3.0))
      >>> reverse = lambda c: [c[::-1]]
      >>> (y,) = map_coefficients(Interpreter(2, 2), reverse, [x], [x.primal[::-1]])
      >>> y.summed.tolist()
      [2.0, 1.0, 0.0]

    """
    per_order: list[Sequence[Array | None] | None] = []
    for k in range(1, ctx.order + 1):
        coefficients = [x.coefficients[k] for x in inputs]
        if all(c is None for c in coefficients):
            per_order.append(None)
            continue
        args = [jnp.zeros_like(x.primal) if c is None else c
                for x, c in zip(inputs, coefficients)]
        if series.has_directions(k, ctx.order):
            axes = [None if c is None else 0 for c in coefficients]
            per_order.append(over_directions(linear_map, in_axes=axes)(*args))
        else:
            per_order.append(linear_map(*args))
    return [
        JetValue.from_coefficients([p, *(None if c is None else c[n] for c in per_order)],
                                   zero_primal)
        if is_float(p) else JetValue.constant(p, ctx.order)
        for n, p in enumerate(primals_out)
    ]


def map_sequentially(f: Callable[..., Any], in_axes: Sequence[int | None]
                     ) -> Callable[..., Any]:
    """``jax.vmap(f, in_axes)`` by ``lax.map``: one call per entry of the mapped axis 0.

    Example:
      >>> import jax.numpy as jnp
      >>> scaled = map_sequentially(lambda a, s: [a * s], in_axes=[0, None])
      >>> scaled(jnp.arange(3.0), jnp.array(2.0))[0].tolist()
      [0.0, 2.0, 4.0]

    """
    def mapped(*args: Any) -> Any:
        moving = [a for a, axis in zip(args, in_axes) if axis is not None]

        def one(entries: Sequence[Any]) -> Any:
            entry = iter(entries)
            return f(*(a if axis is None else next(entry) for a, axis in zip(args, in_axes)))
        return lax.map(one, moving)
    return mapped


def linear_call_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any
                     ) -> list[JetValue]:
    """``jax.custom_derivatives.linear_call``: the call applied to every coefficient.

    The callee is linear in its linear arguments with the residuals fixed, so
    ``y_k = callee(residuals, x_k)``: the primitive itself is bound on each coefficient
    (the callee's transpose serves reverse mode, as in JAX), one direction after another
    since JAX has no batching rule for it.

    Raises:
      NotImplementedError: residuals (or the callee's constants) that depend on the input.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import stde
      >>> def tripled(x):
      ...     f = lambda _, t: 3.0 * t
      ...     return jax.custom_derivatives.linear_call(f, f, (), x)
      >>> float(stde.laplacian(lambda x: jnp.sum(tripled(x) ** 2))(jnp.ones(2)))
      36.0

    """
    fixed = params["num_callee_consts"] + params["num_res"]
    if any(not x.is_constant for x in inputs[:fixed]):
        raise NotImplementedError(
            "stde: linear_call is linear in its linear arguments only, and its residuals "
            "here depend on the input (JAX's JVP asserts they do not); pass the moving "
            "values as linear arguments, or write the function without linear_call.")
    call = bind_at(linear_call_primitive(), params, [x.primal for x in inputs],
                   range(fixed, len(inputs)))
    linear = inputs[fixed:]
    return map_coefficients(ctx, call, linear, call(*(x.primal for x in linear)),
                            over_directions=map_sequentially)


def apply_linear(ctx: Context, primitive: Any, inputs: Sequence[JetValue],
                 params: dict[str, Any]) -> list[JetValue]:
    """Applies ``primitive`` coefficient by coefficient (see module docstring).

    Returns:
      One :class:`JetValue` per result of ``primitive``; non-float results are constants.
      Float results are marked known zeros (:attr:`stde.core.JetValue.zero_primal`) when
      every floating operand is: the primitive is linear in them.

    """
    floats = [n for n, x in enumerate(inputs) if is_float(x.primal)]
    operands = [inputs[n] for n in floats]
    # Indices and predicates stay at their primal.
    linear_map = bind_at(primitive, params, [x.primal for x in inputs], floats)
    return map_coefficients(ctx, linear_map, operands, linear_map(*(x.primal for x in operands)),
                            bool(operands) and all(x.zero_primal for x in operands))


def linear_rule(primitive: Any, ctx: Context, inputs: Sequence[JetValue],
                **params: Any) -> Any:
    """Rule for a primitive registered with :func:`register_linear`."""
    out = apply_linear(ctx, primitive, inputs, params)
    return out if primitive.multiple_results else out[0]


VMAPPED = ("applied to each direction by vmap on dense coefficients (index maps that "
           "only move entries have a sparse variant)")
"""Why a linear primitive densifies sparse operands, when it does."""


def register_linear(primitive: Any) -> None:
    """Registers ``primitive`` as linear in its floating operands."""
    register(primitive, functools.partial(linear_rule, primitive), sparse=VMAPPED)


def broadcast_coefficient(c: Any, k: int, order: int, shape: tuple[int, ...]) -> Any:
    """Broadcasts coefficient ``k`` (with its direction axis, if any) to ``shape``.

    A sparse coefficient repeats its entries (:func:`stde.sparse.broadcast_to`), or is
    densified when that would hold more entries than the dense array.
    """
    if sparse.is_sparse(c):
        broadcast = sparse.broadcast_to(c, shape)
        if broadcast is not None:
            return broadcast
        c = sparse.densify(c)
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
        return JetValue.from_coefficients(coefficients,
                                          all(x.zero_primal for x in inputs))
    return rule


register(lax.add_p, signed_sum_rule(1, 1), sparse=True)
register(add_jaxvals_p, signed_sum_rule(1, 1), sparse=True)
register(lax.sub_p, signed_sum_rule(1, -1), sparse=True)
register(lax.neg_p, signed_sum_rule(-1), sparse=True)

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
_linear_call = linear_call_primitive()
if _linear_call is not None:
    register(_linear_call, linear_call_rule,
             sparse="the call is bound on dense coefficients, one direction at a time")
