"""Sparse variants of index-map rules, and the sparsity of the rules defined elsewhere.

Most rules take :class:`stde.sparse.SparseCoefficient` lower coefficients as they come:
they compute with the coefficient arithmetic of :mod:`stde.rules.series`, which
dispatches on the coefficient type (products, sums, quotients, powers, every unary
elementwise primitive; registered with ``sparse=True``). This module adds sparse
variants for the primitives whose dense rules fold the direction axis in by ``vmap``
but which only move entries, and declares why the remaining rules densify. Summed top
coefficients are always dense.

* Index maps (``reshape``, ``squeeze``, ``convert_element_type``, ``copy``,
  ``reduce_sum``, ``broadcast_in_dim``, ``slice``, ``concatenate``): the primal and the
  top go through the primitive, sparse entries move to their new positions.
* ``dot_general`` with a constant operand that contracts all of the sparse operand's
  axes (a network's first layer): ``y_k[r] = Σ_p values[r, p] W[indices[r, p]]``, a gather
  of ``P`` rows, so the cost does not depend on ``D``; or only its last axis (a per-row
  layer, e.g. per electron): each entry becomes a row of ``F`` entries.
* Calls (``jit``, ``custom_vjp_call``, ``checkpoint``): their ordinary rules, which
  interpret the body on the jets as given (a sparse coefficient is a pytree, so it
  crosses the ``jit`` boundary). ``custom_jvp_call`` takes its derivatives from its JVP
  rule, so its operands are densified.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import primitives as prims
from jax.lax import linalg as lax_linalg

from stde import indexed, sparse
from stde.core import Array, Context, JetValue, bind_equation, gather_rows, is_float
from stde.rules import control_flow
from stde.rules.fallback import rule_or_fallback
from stde.rules.registry import densifies, register_sparse
from stde.sparse import SparseCoefficient, is_sparse

Remap = Callable[[SparseCoefficient, tuple[int, ...], dict[str, Any]], SparseCoefficient | None]
"""``remap(c, out_shape, params)``: the entries' new positions, or ``None`` to densify."""


def densified(primitive: Any, ctx: Context, inputs: Sequence[JetValue], **params: Any) -> Any:
    """The ordinary rule of ``primitive`` on densified operands (the one dense path)."""
    return rule_or_fallback(primitive)(ctx, [sparse.densify_value(x) for x in inputs], **params)


def _bind(primitive: Any, params: dict[str, Any]) -> Callable[..., Any]:
    return functools.partial(bind_equation, primitive, params)


def _top(primitive: Any, params: dict[str, Any], inputs: Sequence[JetValue]) -> Array | None:
    """The (linear) primitive applied to the summed tops, zeros for operands without one."""
    tops = [x.summed for x in inputs]
    if all(t is None for t in tops):
        return None
    return bind_equation(primitive, params, *(
        jnp.zeros_like(x.primal) if t is None else t for x, t in zip(inputs, tops)))


def _unravel(c: SparseCoefficient) -> list[Array]:
    if not c.primal_shape:
        return []
    return list(jnp.unravel_index(c.indices, c.primal_shape))


def _ravel(multi: Sequence[Array], shape: tuple[int, ...], like: Array) -> Array:
    if not shape:
        return jnp.zeros_like(like)
    return jnp.ravel_multi_index(tuple(multi), shape, mode="clip").astype(like.dtype)


# ------------------------------------------------------------------------- index maps


def _same(c: SparseCoefficient, shape: tuple[int, ...], _: dict[str, Any]) -> SparseCoefficient:
    return c.with_entries(c.indices, c.values, shape)


def _reshape(c: SparseCoefficient, shape: tuple[int, ...], params: dict[str, Any]
             ) -> SparseCoefficient | None:
    return None if params.get("dimensions") is not None else _same(c, shape, params)


def _reduce_sum(c: SparseCoefficient, shape: tuple[int, ...], params: dict[str, Any]
                ) -> SparseCoefficient:
    axes = set(params["axes"])
    multi = _unravel(c)
    kept = [m for d, m in enumerate(multi) if d not in axes]
    collapses = any(c.primal_shape[d] > 1 for d in axes)
    return c.with_entries(_ravel(kept, shape, c.indices), c.values, shape,
                          c.distinct and not collapses)


def _broadcast_in_dim(c: SparseCoefficient, shape: tuple[int, ...], params: dict[str, Any]
                      ) -> SparseCoefficient | None:
    return sparse.broadcast_in_dim(c, shape, params["broadcast_dimensions"])


def _slice(c: SparseCoefficient, shape: tuple[int, ...], params: dict[str, Any]
           ) -> SparseCoefficient:
    strides = params["strides"] or (1,) * len(shape)
    inside = jnp.ones(c.indices.shape, bool)
    multi = []
    for m, start, limit, stride in zip(_unravel(c), params["start_indices"],
                                       params["limit_indices"], strides):
        inside &= (m >= start) & (m < limit) & ((m - start) % stride == 0)
        multi.append((m - start) // stride)
    indices = jnp.where(inside, _ravel(multi, shape, c.indices), 0)
    return c.with_entries(indices, jnp.where(inside, c.values, 0), shape)


def index_rule(primitive: Any, remap: Remap, ctx: Context, inputs: Sequence[JetValue],
               **params: Any) -> JetValue:
    """Rule for a primitive of one operand that moves entries (see module docstring)."""
    if len(inputs) != 1:
        return densified(primitive, ctx, inputs, **params)
    (x,) = inputs
    bind = _bind(primitive, params)
    primal = bind(x.primal)
    if not is_float(primal):
        return JetValue.constant(primal, ctx.order)
    shape = tuple(np.shape(primal))
    # An empty result has no positions to move entries to: its coefficients are dense.
    empty = not np.size(primal)
    lower = []
    for c in x.lower:
        if indexed.is_indexed(c) and not empty:
            lower.append(indexed.index_map(primitive, c, params).astype(jnp.result_type(primal)))
            continue
        moved = remap(c, shape, params) if is_sparse(c) and not empty else None
        if moved is not None:
            lower.append(moved.astype(jnp.result_type(primal)))
        else:
            lower.append(None if c is None else jax.vmap(bind)(sparse.densify(c)))
    return JetValue(primal, tuple(lower), _top(primitive, params, inputs))


def concatenate_rule(ctx: Context, inputs: Sequence[JetValue], *, dimension: int,
                     **params: Any) -> JetValue:
    """``concatenate``: sparse operands' entries shifted into place, index lists joined."""
    params = {"dimension": dimension, **params}
    if any(not is_sparse(c) and c is not None for x in inputs for c in x.lower):
        return densified(lax.concatenate_p, ctx, inputs, **params)
    primal = bind_equation(lax.concatenate_p, params, *(x.primal for x in inputs))
    if any(indexed.is_indexed(c) for x in inputs for c in x.lower):
        return _concatenate_indexed(ctx, inputs, primal, params)
    shape = tuple(np.shape(primal))
    offsets = np.cumsum([0] + [np.shape(x.primal)[dimension] for x in inputs])
    lower = []
    for k in range(ctx.order - 1):
        parts = []
        for x, offset in zip(inputs, offsets):
            c = x.lower[k]
            if c is not None:
                multi = _unravel(c)
                multi[dimension] = multi[dimension] + int(offset)
                parts.append(c.with_entries(_ravel(multi, shape, c.indices), c.values, shape))
        if not parts:
            lower.append(None)
            continue
        lower.append(parts[0].with_entries(
            jnp.concatenate([c.indices for c in parts], axis=1),
            jnp.concatenate([c.values for c in parts], axis=1),
            distinct=all(c.distinct for c in parts)))
    return JetValue(primal, tuple(lower), _top(lax.concatenate_p, params, inputs))


def _concatenate_indexed(ctx: Context, inputs: Sequence[JetValue], primal: Array,
                         params: dict[str, Any]) -> JetValue:
    """``concatenate`` of indexed coefficients (zero parts take no entries)."""
    dimension = params["dimension"]
    lower = []
    for k in range(ctx.order - 1):
        present = [x.lower[k] for x in inputs if x.lower[k] is not None]
        if not present:
            lower.append(None)
            continue
        template = present[0]
        parts = [x.lower[k] if x.lower[k] is not None else template.with_values(
            jnp.zeros((1, *np.shape(x.primal)), template.dtype),
            np.full((1, *np.shape(x.primal)), -1)) for x in inputs]
        lower.append(indexed.concatenate(parts, dimension))
    return JetValue(primal, tuple(lower), _top(lax.concatenate_p, params, inputs))


# ------------------------------------------------------------------------ dot_general


def dot_general_rule(ctx: Context, inputs: Sequence[JetValue], *, dimension_numbers: Any,
                     **params: Any) -> JetValue:
    """``dot_general`` with a constant operand contracting every axis of the sparse one."""
    params = {"dimension_numbers": dimension_numbers, **params}
    (contract_a, contract_b), (batch_a, batch_b) = dimension_numbers
    a, b = inputs
    for x, other, first in ((a, b, True), (b, a, False)):
        if any(indexed.is_indexed(c) for c in x.lower) and other.is_constant \
                and not batch_a and not batch_b:
            return _dot_general_indexed(x, other.primal, params, first)
    if sparse.has_sparse(a) and b.is_constant and not batch_a \
            and len(contract_a) == np.ndim(a.primal):
        x, weights, mine, theirs = a, b.primal, contract_a, contract_b
    elif sparse.has_sparse(b) and a.is_constant and not batch_b \
            and len(contract_b) == np.ndim(b.primal):
        x, weights, mine, theirs = b, a.primal, contract_b, contract_a
    elif sparse.has_sparse(a) and b.is_constant and not batch_a and len(contract_a) == 1 \
            and contract_a[0] == np.ndim(a.primal) - 1:
        return _per_row_rule(ctx, a, b, params)
    else:
        return densified(lax.dot_general_p, ctx, inputs, **params)
    bind = _bind(lax.dot_general_p, params)
    primal = bind(a.primal, b.primal)
    contracted = [theirs[list(mine).index(axis)] for axis in range(len(mine))]
    free = [d for d in range(np.ndim(weights)) if d not in theirs]
    rows = jnp.transpose(weights, contracted + free).reshape(-1, *(np.shape(weights)[d]
                                                                   for d in free))
    dtype = jnp.result_type(primal)

    def linear(c: Any) -> Any:
        if c is None:
            return None
        if is_sparse(c):
            gathered = gather_rows(rows, c.indices).astype(dtype)
            return jnp.einsum("rp,rp...->r...", c.values.astype(dtype), gathered)
        if x is a:
            return jax.vmap(lambda u: bind(u, weights))(c)
        return jax.vmap(lambda u: bind(weights, u))(c)

    top = None if x.summed is None else (bind(x.summed, weights) if x is a
                                         else bind(weights, x.summed))
    return JetValue(primal, tuple(linear(c) for c in x.lower), top)


def _dot_general_indexed(x: JetValue, weights: Array, params: dict[str, Any],
                         indexed_first: bool) -> JetValue:
    """``dot_general`` of an indexed operand with a constant one (:func:`indexed.dot_general`)."""
    bind = _bind(lax.dot_general_p, params)
    primal = bind(x.primal, weights) if indexed_first else bind(weights, x.primal)
    dtype = jnp.result_type(primal)

    def linear(c: Any) -> Any:
        if c is None:
            return None
        if indexed.is_indexed(c):
            out = indexed.dot_general(c.astype(dtype), weights, params, indexed_first)
        else:
            out = jax.vmap(lambda u: bind(u, weights) if indexed_first else bind(weights, u))(c)
        return out.astype(dtype)

    top = None if x.summed is None else (bind(x.summed, weights) if indexed_first
                                         else bind(weights, x.summed))
    return JetValue(primal, tuple(linear(c) for c in x.lower), top)


def _per_row_rule(ctx: Context, a: JetValue, b: JetValue, params: dict[str, Any]) -> JetValue:
    """``a @ W``-like ``dot_general`` contracting the last axis of a sparse ``a``.

    A per-row layer (each electron's, each pair's features times a constant weight):
    an entry at row ``i``, column ``c`` becomes the row ``i`` of the output, ``value ·
    W[c, :]``. The entry count grows by the weight's free size ``F``; where that would
    exceed the dense size, the coefficient is densified.
    """
    (_, (contract_b,)), _ = params["dimension_numbers"]
    bind = _bind(lax.dot_general_p, params)
    primal = bind(a.primal, b.primal)
    dtype = jnp.result_type(primal)
    width = np.shape(a.primal)[-1]
    rows = jnp.moveaxis(b.primal, contract_b, 0).reshape(width, -1).astype(dtype)
    features = rows.shape[1]
    out_shape = tuple(np.shape(primal))

    def linear(c: Any) -> Any:
        if c is None:
            return None
        if not is_sparse(c) or c.indices.shape[1] * features > max(np.prod(out_shape), 1):
            return jax.vmap(lambda u: bind(u, b.primal))(sparse.densify(c))
        row, column = c.indices // width, c.indices % width
        offsets = jnp.arange(features, dtype=c.indices.dtype)
        indices = (row[:, :, None] * features + offsets[None, None, :]).reshape(c.directions, -1)
        values = (c.values.astype(dtype)[:, :, None] * rows[column]).reshape(c.directions, -1)
        return c.with_entries(indices, values, out_shape, distinct=False)

    top = None if a.summed is None else bind(a.summed, b.primal)
    return JetValue(primal, tuple(linear(c) for c in a.lower), top)


# ------------------------------------------------------------------------ registration

for _primitive, _remap in (
    (lax.reshape_p, _reshape), (lax.squeeze_p, _same), (lax.convert_element_type_p, _same),
    (lax.copy_p, _same), (lax.reduce_sum_p, _reduce_sum),
    (lax.broadcast_in_dim_p, _broadcast_in_dim), (lax.slice_p, _slice),
    (lax.transpose_p, lambda *_: None),
):
    register_sparse(_primitive, functools.partial(index_rule, _primitive, _remap))
register_sparse(lax.concatenate_p, concatenate_rule)
register_sparse(lax.dot_general_p, dot_general_rule)
# Calls interpret their body on the jets as they come (a SparseCoefficient is a pytree,
# so the jit boundary and checkpointing stay): their ordinary rules serve.
for _call in control_flow.BODY_CALLS:
    register_sparse(_call, control_flow.call_rule)
register_sparse(prims.jit_p, control_flow.jit_rule)
register_sparse(prims.remat_p, control_flow.remat_rule)

# Why the rules of control_flow and linalg densify sparse operands.
for _with_jvp in (prims.custom_jvp_call_p, control_flow.call_hi_primitive()):
    if _with_jvp is not None:
        densifies(_with_jvp, "its derivatives come from its JVP rule, differentiated by "
                             "nested jvp on dense tangents")
for _primitive in (prims.cond_p, prims.scan_p, prims.while_p):
    densifies(_primitive, "branches and loop bodies must return the coefficient structure "
                          "they take; dense coefficients keep it fixed")
densifies(prims.linear_solve_p, "solves for dense coefficients")
for _primitive in (lax_linalg.lu_p, lax_linalg.triangular_solve_p, lax_linalg.cholesky_p,
                   lax_linalg.eigh_p, lax_linalg.qr_p, lax_linalg.svd_p):
    densifies(_primitive, "a matrix factorisation mixes every entry of its matrix")
densifies(lax_linalg.tridiagonal_solve_p, "a tridiagonal solve mixes every entry of its "
                                          "right-hand side's columns")
