"""Arithmetic and bilinear primitives: products (Leibniz), quotients and integer powers.

``mul``, ``dot_general``, ``ragged_dot_general`` (``lax.ragged_dot``) and
``conv_general_dilated`` of two jets use Leibniz' ``y_k = Σ_j C(k, j) a_j b_{k-j}`` with
the collapsed top of docs/design.md, "The interpreter and rule families"; with one
constant operand the same rule degenerates to a linear map of the other. JAX cannot
``vmap`` a ragged dot, so its rule folds the direction axis into the operands itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax._src.lax import lax as lax_internal

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


ragged_dot_general_p = getattr(lax_internal, "ragged_dot_general_p", None)
"""``lax.ragged_dot_general``'s primitive, or ``None`` on a JAX without it."""


def _fold(x: Any, axis: int | None) -> Any:
    """``x`` (``[R, *S]``) with ``R`` merged into primal axis ``axis`` as its inner part.

    Index ``i·R + r`` of the merged axis holds direction ``r`` of index ``i``. With
    ``axis=None``, ``R`` becomes a new last axis instead.
    """
    rank = x.ndim - 1
    if axis is None:
        return lax.transpose(x, (*range(1, rank + 1), 0))
    x = lax.transpose(x, (*range(1, axis + 2), 0, *range(axis + 2, rank + 1)))
    shape = x.shape
    return lax.reshape(x, (*shape[:axis], shape[axis] * shape[axis + 1], *shape[axis + 2:]))


def _unfold(y: Any, axis: int, count: int, merged: bool) -> Any:
    """Inverse of :func:`_fold` on a result: ``R`` out of its ``axis``, moved to the front."""
    if merged:
        shape = y.shape
        y = lax.reshape(y, (*shape[:axis], shape[axis] // count, count, *shape[axis + 1:]))
        axis += 1
    return lax.transpose(y, (axis, *(i for i in range(y.ndim) if i != axis)))


def _with_axis(sharding: Any, position: int) -> Any:
    """``sharding`` (``None`` or a ``NamedSharding``) with an unsharded axis at ``position``."""
    if sharding is None:
        return None
    spec = tuple(sharding.spec)
    spec += (None,) * (position - len(spec))
    return sharding.update(spec=jax.sharding.PartitionSpec(
        *spec[:position], None, *spec[position:]))


def ragged_dot_general_rule(ctx: Context, inputs: Sequence[JetValue],
                            **params: Any) -> JetValue:
    """Leibniz rule for ``ragged_dot_general`` (bilinear in ``lhs`` and ``rhs``).

    The group sizes (the third operand) are integers, fixed. JAX has no usable batching
    rule for this primitive (vmap fails for every ``in_axes``), so the direction axis
    ``R`` of a coefficient is folded into the operand without ``vmap``:

    * ``lhs`` with directions, ``rhs`` without: when the ragged dimension is a free
      (non-contracting) one, as in ``lax.ragged_dot``, ``R`` is merged into it as its
      inner part (``[R, m, k]`` becomes ``[m·R, k]``: the ``R`` directions of row ``i``
      are rows ``i·R .. i·R + R - 1``) and the group sizes are multiplied by ``R``, so
      each group keeps its rows and rows past the last group stay past it. When
      the ragged dimension is contracting or batch, ``R`` is merged into the last free
      dimension of ``lhs`` (a new one if there is none), which no group size refers to.
    * ``rhs`` with directions, ``lhs`` without: ``R`` is merged into the last free
      (non-contracting, non-batch, non-group) dimension of ``rhs`` (a new one if there
      is none). Neither the dimension numbers nor the group sizes change.
    * Both with directions: ``R`` is merged into the first batch dimension of both
      (group sizes given per batch element repeat along it), or, without batch
      dimensions, becomes a new leading one (the other dimension numbers shift by one).
      Merging keeps the number of batch dimensions: jaxlib 0.10's CPU compiler rejects
      a ragged contracting dimension with two or more of them.

    An operand's rank only changes where it needs a new axis, so with one moving
    operand ``lax.ragged_dot``'s dimension numbers stay as they are (the form ragged
    dot kernels implement); a merged output axis is split and ``R`` moved to the front
    afterwards. ``precision``, ``preferred_element_type`` and ``group_offset`` pass
    through; an ``out_sharding`` keeps its spec, with an unsharded entry for a new
    output axis.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> from jax import lax
      >>> import stde
      >>> w = np.ones((2, 3, 1))                      # two groups of 3 -> 1 weights
      >>> sizes = jnp.array([1, 2])                   # row 0 in group 0, rows 1-2 in 1
      >>> f = lambda x: (lax.ragged_dot(x, w, sizes) ** 2).sum()
      >>> float(stde.laplacian(f)(jnp.ones((3, 3))))  # 2 · 3 rows · 3 columns
      18.0

    """
    dims = params["ragged_dot_dimension_numbers"]
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dims.dot_dimension_numbers
    (ragged,) = dims.lhs_ragged_dimensions
    groups = tuple(dims.rhs_group_dimensions)
    lhs, rhs, sizes = inputs
    group_sizes = sizes.primal
    lhs_free = [d for d in range(lhs.primal.ndim)
                if d not in lhs_contract and d not in lhs_batch]
    rhs_free = [d for d in range(rhs.primal.ndim)
                if d not in rhs_contract and d not in rhs_batch and d not in groups]
    lead = int(ragged in lhs_contract)   # the group axis that leads a contracting mode's result
    out_sharding = params.get("out_sharding")

    def bind(u: Any, v: Any, group_sizes: Any, new_axis: int | None = None,
             **changes: Any) -> Any:
        if new_axis is not None and out_sharding is not None:
            changes["out_sharding"] = _with_axis(out_sharding, new_axis)
        return bind_equation(ragged_dot_general_p, dict(params, **changes), u, v, group_sizes)

    def shift(dimensions: Sequence[int]) -> tuple[int, ...]:
        return tuple(d + 1 for d in dimensions)

    def both(u: Any, v: Any) -> Any:
        count = u.shape[0]
        if lhs_batch:
            # R merged into the first batch dimension. Group sizes given per batch
            # element ([b.., x.., g]) repeat along it; when it is the ragged dimension
            # (no sizes per batch element then), each group grows R-fold instead.
            if lhs_batch[0] == ragged:
                sizes = group_sizes * count
            elif group_sizes.ndim > 1:
                sizes = jnp.repeat(group_sizes, count, axis=0)
            else:
                sizes = group_sizes
            y = bind(_fold(u, lhs_batch[0]), _fold(v, rhs_batch[0]), sizes)
            return _unfold(y, lead, count, True)
        batched = lax.RaggedDotDimensionNumbers(
            dot_dimension_numbers=((shift(lhs_contract), shift(rhs_contract)),
                                   ((0, *shift(lhs_batch)), (0, *shift(rhs_batch)))),
            lhs_ragged_dimensions=shift(dims.lhs_ragged_dimensions),
            rhs_group_dimensions=shift(groups))
        # Group sizes per outer row ([x.., g]) lead with the new batch axis.
        sizes = group_sizes if group_sizes.ndim == 1 else lax.broadcast(group_sizes, (count,))
        y = bind(u, v, sizes, new_axis=lead, ragged_dot_dimension_numbers=batched)
        return _unfold(y, lead, count, False)

    def product(u: Any, v: Any, u_directions: bool, v_directions: bool) -> Any:
        if u_directions and v_directions:
            return both(u, v)
        if u_directions:
            count = u.shape[0]
            if ragged in lhs_free:
                axis, sizes = ragged, group_sizes * count
            else:
                axis, sizes = (lhs_free[-1] if lhs_free else None), group_sizes
            position = lead + len(lhs_batch) + (
                len(lhs_free) if axis is None else lhs_free.index(axis))
            y = bind(_fold(u, axis), v, sizes, new_axis=position if axis is None else None)
            return _unfold(y, position, count, axis is not None)
        if v_directions:
            count = v.shape[0]
            axis = rhs_free[-1] if rhs_free else None
            position = lead + len(lhs_batch) + len(lhs_free) + len(rhs_free)
            y = bind(u, _fold(v, axis), group_sizes, new_axis=position if axis is None else None)
            return _unfold(y, y.ndim - 1, count, axis is not None)
        return bind(u, v, group_sizes)

    return leibniz_rule(ctx, (lhs, rhs), product)


register(lax.mul_p, lambda ctx, inputs, **_: leibniz_rule(ctx, inputs, series.multiply),
         sparse=True)
register(lax.dot_general_p, dot_general_rule,
         sparse="a product of two moving operands folds directions in by vmap (the sparse "
                "variant covers a constant operand contracting the sparse one)")
if ragged_dot_general_p is not None:
    register(ragged_dot_general_p, ragged_dot_general_rule,
             sparse="the direction axis is folded into an operand's rows or columns "
                    "(JAX cannot vmap it); dense coefficients")
register(lax.conv_general_dilated_p, functools.partial(bilinear_rule, lax.conv_general_dilated_p),
         sparse="a convolution mixes neighbouring entries; dense coefficients")
register(lax.div_p, lambda ctx, inputs, **_: div_rule(ctx, inputs), sparse=True)
register(lax.integer_pow_p, integer_pow_rule, sparse=True)
register(lax.square_p, lambda ctx, inputs, **_: square_rule(ctx, inputs), sparse=True)
