"""Arithmetic and bilinear primitives: products (Leibniz), quotients and integer powers.

``mul``, ``dot_general`` and ``conv_general_dilated`` of two jets use Leibniz'
``y_k = Σ_j C(k, j) a_j b_{k-j}`` with the collapsed top of docs/design.md, "The
interpreter and rule families"; with one constant operand the same rule degenerates to a
linear map of the other.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax import lax

from stde.core import Context, JetValue, bind_equation
from stde.rules import series
from stde.rules.registry import register


def vmapped_product(bilinear: Callable[[Any, Any], Any]) -> series.Product:
    """A :data:`series.Product` for any bilinear map, folding direction axes by ``vmap``."""
    def product(u: Any, v: Any, u_directions: bool, v_directions: bool) -> Any:
        if not (u_directions or v_directions):
            return bilinear(u, v)
        return jax.vmap(bilinear, in_axes=(0 if u_directions else None,
                                           0 if v_directions else None))(u, v)
    return product


def leibniz_rule(ctx: Context, inputs: Sequence[JetValue], product: series.Product) -> JetValue:
    """Leibniz rule ``y_k = Σ_j C(k, j) a_j b_{k-j}`` for a bilinear ``product``."""
    a, b = (x.coefficients for x in inputs)
    return JetValue.from_coefficients(
        [series.leibniz(a, b, k, ctx.order, product) for k in range(ctx.order + 1)])


def bilinear_rule(primitive: Any, ctx: Context, inputs: Sequence[JetValue],
                  **params: Any) -> JetValue:
    """Leibniz rule for a (non-elementwise) primitive bilinear in its two operands."""
    bilinear = functools.partial(bind_equation, primitive, params)
    return leibniz_rule(ctx, inputs, vmapped_product(bilinear))


def power(x: Sequence[Any], n: int, order: int) -> series.Series:
    """Series of ``x**n`` for an integer ``n ≥ 1`` by binary powering."""
    result: series.Series | None = None
    base = list(x)
    while True:
        if n & 1:
            result = base if result is None else [
                series.leibniz(result, base, k, order) for k in range(order + 1)]
        n >>= 1
        if not n:
            return result
        base = [series.square(base, k, order) for k in range(order + 1)]


def div_rule(ctx: Context, inputs: Sequence[JetValue]) -> JetValue:
    """``a / b``: ``z_k = (a_k - Σ_{j≥1} C(k, j) b_j z_{k-j}) / b_0``."""
    a, b = (x.coefficients for x in inputs)
    return JetValue.from_coefficients(series.quotient(a, b, ctx.order))


def integer_pow_rule(ctx: Context, inputs: Sequence[JetValue], *, y: int) -> JetValue:
    """``x ** y`` for an integer ``y`` (any sign), exact at ``x = 0`` for ``y ≥ 0``."""
    (x,) = inputs
    if y == 0:
        return JetValue.constant(lax.integer_pow(x.primal, 0), ctx.order)
    positive = power(x.coefficients, abs(y), ctx.order)
    if y > 0:
        return JetValue.from_coefficients(positive)
    one = [lax.full_like(x.primal, 1)] + [None] * ctx.order
    return JetValue.from_coefficients(series.quotient(one, positive, ctx.order))


def square_rule(ctx: Context, inputs: Sequence[JetValue]) -> JetValue:
    """``x²`` with symmetric Leibniz terms computed once."""
    (x,) = inputs
    return JetValue.from_coefficients(
        [series.square(x.coefficients, k, ctx.order) for k in range(ctx.order + 1)])


def dot_general_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> JetValue:
    """Leibniz rule for ``dot_general``, binding the operand with directions on the left.

    A product of a constant (direction-free) coefficient with one that carries the
    direction axis folds that axis into the free axes of the latter. XLA's CPU dot
    wants ``[M, K] @ [K, N]`` in row-major order, so directions on the right (``N``
    gathers the direction axis and the free axes around ``K``) cost a transposing copy
    of the large coefficient: ``einsum("iw,dwj->dij", h, W)`` binds ``W`` first, as
    does ``q @ k.T``. Bound on the left, the coefficient is already ``[M, K]`` when it
    contracts its trailing axes (and a preceding ``transpose`` cancels); the output
    is permuted back, a copy XLA usually fuses into the consumer (docs/design.md,
    "Where the direction axis goes in a product").

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> import stde
      >>> w = np.ones((2, 3, 4))
      >>> f = lambda h: jnp.einsum("iw,dwj->dij", jnp.sin(h), w).sum()   # binds w first
      >>> round(float(stde.laplacian(f)(jnp.ones((2, 3)))), 3)           # -48 sin(1)
      -40.391

    """
    bind = functools.partial(bind_equation, lax.dot_general_p, params)
    swappable = params.get("out_sharding") is None
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = params["dimension_numbers"]
    precision = params.get("precision")
    swapped = dict(params, dimension_numbers=((rhs_contract, lhs_contract),
                                              (rhs_batch, lhs_batch)),
                   precision=precision[::-1] if isinstance(precision, tuple) else precision)

    def bilinear(u: Any, v: Any, u_directions: bool, v_directions: bool) -> Any:
        if swappable and v_directions and not u_directions:
            batch = len(lhs_batch)
            u_free = u.ndim - batch - len(lhs_contract)
            v_free = v.ndim - 1 - batch - len(rhs_contract)
            out = jax.vmap(functools.partial(bind_equation, lax.dot_general_p, swapped),
                           in_axes=(0, None))(v, u)
            order = (list(range(batch + 1)) + [1 + batch + v_free + i for i in range(u_free)]
                     + [1 + batch + i for i in range(v_free)])
            return lax.transpose(out, order)
        return vmapped_product(bind)(u, v, u_directions, v_directions)

    return leibniz_rule(ctx, inputs, bilinear)


register(lax.mul_p, lambda ctx, inputs, **_: leibniz_rule(ctx, inputs, series.multiply),
         sparse=True)
register(lax.dot_general_p, dot_general_rule,
         sparse="a product of two moving operands folds directions in by vmap (the sparse "
                "variant covers a constant operand contracting the sparse one)")
register(lax.conv_general_dilated_p, functools.partial(bilinear_rule, lax.conv_general_dilated_p),
         sparse="a convolution mixes neighbouring entries; dense coefficients")
register(lax.div_p, lambda ctx, inputs, **_: div_rule(ctx, inputs), sparse=True)
register(lax.integer_pow_p, integer_pow_rule, sparse=True)
register(lax.square_p, lambda ctx, inputs, **_: square_rule(ctx, inputs), sparse=True)
