"""Rules that keep sparse lower coefficients sparse (see :mod:`stde.sparse`).

The interpreter calls these when an operand carries a
:class:`stde.sparse.SparseCoefficient`. Each rule handles the sparse case where it is
cheap and otherwise hands the densified operands to the primitive's ordinary rule
(:func:`densified`, built on :func:`stde.sparse.densify`). Summed top coefficients are
always dense.

* Index maps (``reshape``, ``squeeze``, ``convert_element_type``, ``copy``,
  ``reduce_sum``, ``broadcast_in_dim``, ``slice``, ``concatenate``): the primal and the
  top go through the primitive, sparse entries move to their new positions.
* ``add``/``sub``/``neg``: index lists are merged (concatenated, or values added when
  the operands share one list).
* ``mul``: Leibniz' rule, where a product with a sparse factor reads the other factor
  at the sparse entries; the collapsed top scatter-adds the per-direction products.
* ``dot_general`` with a constant operand that contracts all of the sparse operand's
  axes (a network's first layer): ``y_k[r] = Σ_p values[r, p] W[indices[r, p]]``, a gather
  of ``P`` rows, so the cost does not depend on ``D``.
* Unary elementwise primitives: ``f^{(m)}(x_0)`` (from the primitive's own rule run on one
  unit direction) read at the entries, combined by Faà di Bruno's formula
  (:func:`stde.rules.series.bell_terms`); the top scatter-adds the per-direction terms.
* Calls (``jit``, ``custom_vjp_call``, ``checkpoint``): their ordinary rules, which
  interpret the body on the jets as given (a sparse coefficient is a pytree, so it
  crosses the ``jit`` boundary). ``custom_jvp_call`` takes its derivatives from its JVP
  rule, so its operands are densified.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import primitives as prims

from stde import sparse
from stde.core import Array, Context, JetValue, bind_equation, is_float
from stde.rules import control_flow, series
from stde.rules.fallback import rule_or_fallback
from stde.rules.registry import register_sparse
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
    dims = params["broadcast_dimensions"]
    multi = _unravel(c)
    strides = [int(np.prod(shape[o + 1:], dtype=np.int64)) for o in range(len(shape))]
    base = jnp.zeros_like(c.indices)
    expanded = []
    for o, size in enumerate(shape):
        a = dims.index(o) if o in dims else None
        if a is not None and c.primal_shape[a] == size:
            base = base + multi[a] * strides[o]
        elif size > 1:
            expanded.append(o)
    copies = int(np.prod([shape[o] for o in expanded], dtype=np.int64))
    if copies * c.indices.shape[1] > max(int(np.prod(shape, dtype=np.int64)), 1):
        return None  # denser than dense
    offsets = np.zeros(1, np.int64)
    for o in expanded:
        offsets = (offsets[:, None] + np.arange(shape[o]) * strides[o]).reshape(-1)
    indices = (base[:, :, None] + jnp.asarray(offsets, c.indices.dtype)[None, None, :]).reshape(
        c.directions, -1)
    values = jnp.repeat(c.values, copies, axis=1)
    return c.with_entries(indices, values, shape)


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
    lower = []
    for c in x.lower:
        moved = remap(c, shape, params) if is_sparse(c) else None
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


# ------------------------------------------------------------------- sums and products


def _sum(terms: Sequence[tuple[int, Any]]) -> Any:
    """``Σ sign · term`` of lower coefficients: sparse stays sparse unless a term is dense."""
    terms = [(s, t) for s, t in terms if t is not None]
    if not terms:
        return None
    if not all(is_sparse(t) for _, t in terms):
        return functools.reduce(
            lambda u, v: u + v, (s * sparse.densify(t) if s < 0 else sparse.densify(t)
                                 for s, t in terms))
    sign, total = terms[0]
    if sign < 0:
        total = sparse.scale(total, -1)
    for s, t in terms[1:]:
        total = sparse.add(total, t, s)
    return total


def signed_sum_rule(primitive: Any, signs: tuple[int, ...], ctx: Context,
                    inputs: Sequence[JetValue], **params: Any) -> JetValue:
    """``Σ_i signs[i] · operand_i`` (add, sub, neg) with index lists merged."""
    shape = np.broadcast_shapes(*(np.shape(x.primal) for x in inputs))
    if any(not x.is_constant and np.shape(x.primal) != shape for x in inputs):
        return densified(primitive, ctx, inputs, **params)
    primal = sum(s * jnp.broadcast_to(x.primal, shape) for s, x in zip(signs, inputs))
    lower = tuple(_sum([(s, x.lower[k]) for s, x in zip(signs, inputs)])
                  for k in range(ctx.order - 1))
    top = None
    for s, x in zip(signs, inputs):
        if x.summed is not None:
            t = jnp.broadcast_to(x.summed, shape)
            top = series.add(top, t) if s > 0 else series.sub(top, t)
    return JetValue(primal, lower, top)


def _times_primal(c: Any, primal: Array) -> Any:
    """A lower coefficient times a direction-free array of the primal's shape."""
    if is_sparse(c):
        return c.with_entries(c.indices, c.values * sparse.gather(primal, c))
    return series.multiply(c, primal, True, False)


def _times_lower(u: Any, v: Any) -> Any:
    """Elementwise product of two lower coefficients (each direction with its own)."""
    if is_sparse(u):
        return u.with_entries(u.indices, u.values * sparse.values_at(u, v))
    if is_sparse(v):
        return v.with_entries(v.indices, v.values * sparse.values_at(v, u))
    return u * v


def _sum_directions(c: Any) -> Array:
    return sparse.scatter_sum(c) if is_sparse(c) else series.sum_directions(c)


def mul_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> JetValue:
    """``a · b`` by Leibniz' rule with sparse factors read off at their entries."""
    shape = np.broadcast_shapes(*(np.shape(x.primal) for x in inputs))
    if any(not x.is_constant and np.shape(x.primal) != shape for x in inputs):
        return densified(lax.mul_p, ctx, inputs, **params)
    order = ctx.order
    a, b = ([jnp.broadcast_to(x.primal, shape), *x.lower, x.summed] for x in inputs)
    out: list[Any] = [a[0] * b[0]]
    for k in range(1, order + 1):
        terms = []
        for j in range(k + 1):
            u, v = a[j], b[k - j]
            if u is None or v is None:
                continue
            weight = math.comb(k, j)
            if k == order and 0 < j < order:
                terms.append(weight * _sum_directions(_times_lower(u, v)))
            elif j == 0:
                terms.append(_weighted(_times_primal(v, u) if k < order else u * v, weight))
            elif j == k:
                terms.append(_weighted(_times_primal(u, v) if k < order else u * v, weight))
            else:
                terms.append(_weighted(_times_lower(u, v), weight))
        if k == order:
            out.append(functools.reduce(jnp.add, terms) if terms else None)
        else:
            out.append(_sum([(1, t) for t in terms]))
    return JetValue.from_coefficients(out)


def _weighted(c: Any, weight: int) -> Any:
    return c if weight == 1 else sparse.scale(c, weight)


def dot_general_rule(ctx: Context, inputs: Sequence[JetValue], *, dimension_numbers: Any,
                     **params: Any) -> JetValue:
    """``dot_general`` with a constant operand contracting every axis of the sparse one."""
    params = {"dimension_numbers": dimension_numbers, **params}
    (contract_a, contract_b), (batch_a, batch_b) = dimension_numbers
    a, b = inputs
    if sparse.has_sparse(a) and b.is_constant and not batch_a \
            and len(contract_a) == np.ndim(a.primal):
        x, weights, mine, theirs = a, b.primal, contract_a, contract_b
    elif sparse.has_sparse(b) and a.is_constant and not batch_b \
            and len(contract_b) == np.ndim(b.primal):
        x, weights, mine, theirs = b, a.primal, contract_b, contract_a
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
            gathered = rows[c.indices].astype(dtype)
            return jnp.einsum("rp,rp...->r...", c.values.astype(dtype), gathered)
        if x is a:
            return jax.vmap(lambda u: bind(u, weights))(c)
        return jax.vmap(lambda u: bind(weights, u))(c)

    top = None if x.summed is None else (bind(x.summed, weights) if x is a
                                         else bind(weights, x.summed))
    return JetValue(primal, tuple(linear(c) for c in x.lower), top)


# ------------------------------------------------------------------ unary elementwise


@dataclasses.dataclass(frozen=True)
class _OneDirection:
    """A rule context with one direction (for reading off ``f^{(m)}(x_0)``)."""

    outer: Any

    @property
    def order(self) -> int:
        return self.outer.order

    directions = 1

    def eval_jaxpr(self, closed_jaxpr: Any, inputs: Sequence[JetValue]) -> list[JetValue]:
        return self.outer.eval_jaxpr(closed_jaxpr, inputs)


def derivatives(primitive: Any, ctx: Context, x0: Array, params: dict[str, Any]
                ) -> list[Array | None]:
    """``f(x_0), f'(x_0), .., f^{(K)}(x_0)`` from ``primitive``'s rule on a unit direction."""
    order = ctx.order
    unit = jnp.ones((1, *np.shape(x0)), jnp.result_type(x0))
    value = JetValue(x0, (unit,) + (None,) * (order - 2), None)
    y = rule_or_fallback(primitive)(_OneDirection(ctx), [value], **params)
    return [y.primal, *(None if c is None else c[0] for c in y.lower), y.summed]


def unary_rule(primitive: Any, ctx: Context, inputs: Sequence[JetValue],
               **params: Any) -> JetValue:
    """``f(x)`` elementwise by Faà di Bruno at the sparse entries (module docstring)."""
    (x,) = inputs
    carried = [c for c in x.lower if c is not None]
    if not all(is_sparse(c) for c in carried):
        return densified(primitive, ctx, inputs, **params)
    order = ctx.order
    aligned = iter(sparse.coalesce(carried))
    lower = [None if c is None else next(aligned) for c in x.lower]
    entries = next(c for c in lower if c is not None)
    d = derivatives(primitive, ctx, x.primal, params)
    at = [None if dm is None else sparse.gather(dm, entries) for dm in d]
    values = [None] + [None if c is None else c.values for c in lower]
    monomials: dict[tuple[int, ...], Any] = {}

    def monomial(parts: tuple[int, ...]) -> Any:
        if parts not in monomials:
            factors = [values[p] for p in parts]
            monomials[parts] = None if any(f is None for f in factors) else functools.reduce(
                jnp.multiply, factors)
        return monomials[parts]

    out: list[Any] = [d[0]]
    for k in range(1, order + 1):
        top = k == order
        total = None
        for m, partitions in series.bell_terms(k):
            if (top and m == 1) or at[m] is None:
                continue
            for parts, weight in partitions:
                u = monomial(parts)
                if u is not None:
                    total = series.add(total, at[m] * (u if weight == 1 else u * weight))
        if top:
            direct = None if x.summed is None or d[1] is None else d[1] * x.summed
            spread = None if total is None else sparse.scatter_sum(entries.with_entries(
                entries.indices, total))
            out.append(series.add(direct, spread))
        else:
            out.append(None if total is None else entries.with_entries(entries.indices, total))
    return JetValue.from_coefficients(out)


# ------------------------------------------------------------------------ registration

for _primitive, _remap in (
    (lax.reshape_p, _reshape), (lax.squeeze_p, _same), (lax.convert_element_type_p, _same),
    (lax.copy_p, _same), (lax.reduce_sum_p, _reduce_sum),
    (lax.broadcast_in_dim_p, _broadcast_in_dim), (lax.slice_p, _slice),
):
    register_sparse(_primitive, functools.partial(index_rule, _primitive, _remap))
register_sparse(lax.concatenate_p, concatenate_rule)
register_sparse(lax.add_p, functools.partial(signed_sum_rule, lax.add_p, (1, 1)))
register_sparse(lax.sub_p, functools.partial(signed_sum_rule, lax.sub_p, (1, -1)))
register_sparse(lax.neg_p, functools.partial(signed_sum_rule, lax.neg_p, (-1,)))
register_sparse(lax.mul_p, mul_rule)
register_sparse(lax.dot_general_p, dot_general_rule)
for _primitive in (
    lax.exp_p, lax.exp2_p, lax.expm1_p, lax.log_p, lax.log1p_p, lax.tanh_p, lax.tan_p,
    lax.logistic_p, lax.sin_p, lax.cos_p, lax.sinh_p, lax.cosh_p, lax.atan_p, lax.atanh_p,
    lax.asin_p, lax.acos_p, lax.asinh_p, lax.acosh_p, lax.erf_p, lax.erfc_p, lax.erf_inv_p,
    lax.sqrt_p, lax.rsqrt_p, lax.cbrt_p, lax.integer_pow_p, lax.square_p,
):
    register_sparse(_primitive, functools.partial(unary_rule, _primitive))
# Calls interpret their body on the jets as they come (a SparseCoefficient is a pytree,
# so the jit boundary and checkpointing stay): their ordinary rules serve.
for _call in control_flow.BODY_CALLS:
    register_sparse(_call, control_flow.call_rule)
register_sparse(prims.jit_p, control_flow.jit_rule)
register_sparse(prims.remat_p, control_flow.remat_rule)
