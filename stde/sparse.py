"""Sparse lower coefficients: each direction a combination of a few basis vectors.

A sparse STDE sample ``e_i`` (or ``a e_i + b e_j``) touches a handful of the ``D``
coordinates of the flattened input. Held densely, its lower coefficient is an ``(R, D)``
array and the first layer of a network costs ``R·D·H`` per point; held as
``(indices, values)`` it costs ``R·P·H`` (a gather of ``P`` rows of the weight matrix).

:class:`SparseCoefficient` is that form of a lower coefficient ``(R, *S)``: direction ``r``
is ``Σ_p values[r, p] e_{indices[r, p]}`` in the flattened shape ``S``. Entries with equal
indices add up. It is a pytree (``indices`` and ``values`` are leaves, the shape is static),
so ``jit``, ``vmap`` and ``grad`` compose with it. The summed top coefficient is always
dense.

The coefficient arithmetic of :mod:`stde.rules.series` (products with a primal or with
another lower coefficient, sums, scaling, the sum over directions) dispatches to the
functions here for a sparse operand (:func:`times_array`, :func:`times_lower`,
:func:`plus`, :func:`scale`, :func:`scatter_sum`), so every rule written on that
arithmetic (products, quotients, powers, every unary elementwise rule) keeps a sparse
coefficient sparse. Index maps have their own rules (:mod:`stde.rules.sparse`);
everything else turns a coefficient into an array with :func:`densify`, the one place
that does, and the registry says why (:func:`stde.rules.registry.sparsity`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from stde import indexed
from stde.core import JetValue, gather_rows

Array = Any


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SparseCoefficient:
    """A lower coefficient ``(R, *shape)`` held as ``(indices, values)`` per direction.

    Attributes:
      indices: ``(R, P)`` integer positions in the flattened ``shape``.
      values: ``(R, P)`` the entries there (equal indices add up).
      shape: the primal's shape ``S`` (static).
      distinct: whether no two entries of one direction with nonzero values share an
        index (static). Products of coefficients need it; sums of differently indexed
        coefficients lose it, :func:`coalesce` restores it.

    Example:
      >>> import jax.numpy as jnp
      >>> c = SparseCoefficient(jnp.array([[2], [0]]), jnp.array([[1.0], [3.0]]), (3,))
      >>> densify(c).tolist()
      [[0.0, 0.0, 1.0], [3.0, 0.0, 0.0]]

    """

    indices: Array
    values: Array
    primal_shape: tuple[int, ...] = dataclasses.field(metadata={"static": True})
    distinct: bool = dataclasses.field(default=True, metadata={"static": True})

    @property
    def directions(self) -> int:
        """``R``."""
        return int(self.indices.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """The dense shape ``(R, *S)``."""
        return (self.directions, *self.primal_shape)

    @property
    def size(self) -> int:
        """The number of elements of ``S``."""
        return int(np.prod(self.primal_shape, dtype=np.int64))

    @property
    def dtype(self) -> Any:
        """The values' dtype."""
        return self.values.dtype

    def astype(self, dtype: Any) -> SparseCoefficient:
        """The coefficient with values cast to ``dtype``."""
        return dataclasses.replace(self, values=self.values.astype(dtype))

    def with_entries(self, indices: Array, values: Array, shape: tuple[int, ...] | None = None,
                     distinct: bool | None = None) -> SparseCoefficient:
        """A coefficient with new entries (and optionally a new shape / distinctness)."""
        shape = self.primal_shape if shape is None else tuple(shape)
        return SparseCoefficient(indices, values, shape,
                                 self.distinct if distinct is None else distinct)


def pays(entries: int, size: int) -> bool:
    """Whether ``entries`` per direction are worth keeping sparse over ``size`` elements.

    One rule for every place a sparse coefficient could grow (broadcasts, sums, the entry
    pairs of a product): fewer entries than elements. With as many or more, every later
    sum and product costs more than on the dense array (a one-element shape keeps one
    entry).

    Example:
      >>> pays(3, 10), pays(10, 10), pays(1, 1)
      (True, False, True)

    """
    return entries < max(size, 2)


def is_sparse(c: Any) -> bool:
    """Whether ``c`` is sparse: a :class:`SparseCoefficient` or an indexed one.

    The indexed layout is :class:`stde.indexed.IndexedCoefficient` (per element, the
    directions it depends on).
    """
    return isinstance(c, SparseCoefficient | indexed.IndexedCoefficient)


def has_sparse(value: JetValue) -> bool:
    """Whether any lower coefficient of ``value`` is sparse."""
    return any(is_sparse(c) for c in value.lower)


def from_indices(indices: Array, values: Array | float, dim: int, dtype: Any
                 ) -> SparseCoefficient:
    """Directions ``Σ_p values[r, p] e_{indices[r, p]}`` in ``R^dim``.

    Args:
      indices: ``(R, P)`` or ``(R,)`` (one basis vector per direction).
      values: like ``indices`` (or a scalar for all entries).
      dim: ``D``.
      dtype: the values' dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> densify(from_indices(jnp.array([1, 0]), 2.0, 2, jnp.float32)).tolist()
      [[0.0, 2.0], [2.0, 0.0]]

    """
    indices = jnp.asarray(indices, jnp.int32)
    if indices.ndim == 1:
        indices = indices[:, None]
    values = jnp.broadcast_to(jnp.asarray(values, dtype), indices.shape)
    return SparseCoefficient(indices, values, (int(dim),))


def densify(c: Any) -> Any:
    """The coefficient as an ``(R, *S)`` array (arrays and ``None`` pass through).

    This is the only place a sparse coefficient becomes dense.
    """
    if not is_sparse(c):
        return c
    if indexed.is_indexed(c):
        return indexed.densify(c)
    rows = jnp.arange(c.directions)[:, None]
    dense = jnp.zeros((c.directions, c.size), c.dtype).at[rows, c.indices].add(c.values)
    return dense.reshape(c.shape)


def densify_value(value: JetValue) -> JetValue:
    """``value`` with every sparse lower coefficient made dense."""
    if not has_sparse(value):
        return value
    return JetValue(value.primal, tuple(densify(c) for c in value.lower), value.summed)


def gather(array: Array, c: SparseCoefficient) -> Array:
    """``array`` read at ``c``'s entries: ``(R, P)``.

    ``array`` is either direction-free, broadcastable to ``S``, or per direction
    ``(R, *S)``.
    """
    if np.ndim(array) == len(c.shape) and np.shape(array)[0] == c.directions \
            and np.shape(array)[1:] == c.primal_shape:
        return jnp.take_along_axis(jnp.reshape(array, (c.directions, -1)), c.indices, axis=1)
    return gather_rows(jnp.broadcast_to(array, c.primal_shape).reshape(-1), c.indices)


def scatter_sum(c: SparseCoefficient) -> Array:
    """``Σ_r`` of the directions of ``c``: a dense array shaped ``S``."""
    if indexed.is_indexed(c):
        return indexed.sum_directions(c)
    flat = jnp.zeros((c.size,), c.dtype).at[c.indices.reshape(-1)].add(c.values.reshape(-1))
    return flat.reshape(c.primal_shape)


def values_at(c: SparseCoefficient, other: Any) -> Array:
    """The entries of direction ``r`` of ``other`` (sparse or ``(R, *S)``) at ``c``'s indices.

    Two sparse coefficients compare every pair of their entries, ``P_c · P_other`` per
    direction; where that is not fewer than the ``S`` entries of ``other`` written out
    (:func:`pays`; e.g. two scalars' jets broadcast over the same axis, ``P = S`` each),
    ``other`` is densified and read instead.
    """
    if not is_sparse(other):
        return gather(other, c)
    if not pays(c.indices.shape[1] * other.indices.shape[1], c.size):
        return gather(densify(other), c)
    match = c.indices[:, :, None] == other.indices[:, None, :]
    return jnp.sum(jnp.where(match, other.values[:, None, :], 0), axis=-1)


def times_array(c: SparseCoefficient, array: Array) -> SparseCoefficient:
    """``c`` times a direction-free ``array`` that broadcasts to ``c``'s shape ``S``.

    The product is zero off ``c``'s entries, so it stays sparse: ``array`` is read
    there (:func:`gather`).
    """
    if indexed.is_indexed(c):
        return indexed.times_array(c, array)
    return c.with_entries(c.indices, c.values * gather(array, c).astype(c.dtype))


def times_lower(u: Any, v: Any) -> Any:
    """Elementwise product of two lower coefficients of one shape, direction by direction.

    Either may be dense ``(R, *S)``; the product is sparse on the entries of a sparse one.
    Two coefficients sharing one distinct index list multiply their values; otherwise a
    sparse factor's entries read the other factor there (:func:`values_at`).
    """
    if indexed.is_indexed(u) or indexed.is_indexed(v):
        return indexed.times_lower(u, v)
    if not is_sparse(u):
        u, v = v, u
    if is_sparse(v) and v.indices is u.indices and u.distinct and v.distinct:
        return u.with_entries(u.indices, u.values * v.values)
    return u.with_entries(u.indices, u.values * values_at(u, v))


def plus(u: Any, v: Any, sign: int = 1) -> Any:
    """``u + sign · v`` of lower coefficients of one shape, at least one sparse.

    Two sparse ones merge their index lists (:func:`add`) while the merged list has fewer
    entries than elements (:func:`pays`; e.g. a sum of scalars sliced out of ``x`` one by
    one, ``Σ_i c_i x[i]``, would grow its list with every term); otherwise, or with a
    dense one, the sum is dense.
    """
    if indexed.is_indexed(u) or indexed.is_indexed(v):
        return indexed.plus(u, v, sign)
    if is_sparse(u) and is_sparse(v) and (
            u.indices is v.indices or pays(u.indices.shape[1] + v.indices.shape[1], u.size)):
        return add(u, v, sign)
    u, v = densify(u), densify(v)
    return u + v if sign > 0 else u - v


def broadcast_in_dim(c: SparseCoefficient, shape: tuple[int, ...],
                     dimensions: Sequence[int]) -> SparseCoefficient | None:
    """``c`` broadcast as ``lax.broadcast_in_dim`` does (``None`` when as dense as dense).

    Each entry is repeated along the new and the expanded (size-1) axes. A result with an
    entry per element or more (a scalar's jet broadcast to a vector) is ``None``
    (:func:`pays`).
    """
    multi = list(jnp.unravel_index(c.indices, c.primal_shape)) if c.primal_shape else []
    strides = [int(np.prod(shape[o + 1:], dtype=np.int64)) for o in range(len(shape))]
    base = jnp.zeros_like(c.indices)
    expanded = []
    for o, size in enumerate(shape):
        a = list(dimensions).index(o) if o in dimensions else None
        if a is not None and c.primal_shape[a] == size:
            base = base + multi[a] * strides[o]
        elif size > 1:
            expanded.append(o)
    copies = int(np.prod([shape[o] for o in expanded], dtype=np.int64))
    if not pays(copies * c.indices.shape[1], int(np.prod(shape, dtype=np.int64))):
        return None
    offsets = np.zeros(1, np.int64)
    for o in expanded:
        offsets = (offsets[:, None] + np.arange(shape[o]) * strides[o]).reshape(-1)
    indices = (base[:, :, None] + jnp.asarray(offsets, c.indices.dtype)[None, None, :]).reshape(
        c.directions, -1)
    values = jnp.repeat(c.values, copies, axis=1)
    return c.with_entries(indices, values, shape)


def broadcast_to(c: SparseCoefficient, shape: tuple[int, ...]) -> SparseCoefficient | None:
    """``c`` broadcast to ``shape`` by NumPy's rules (``None`` when denser than dense).

    Example:
      >>> import jax.numpy as jnp
      >>> c = SparseCoefficient(jnp.array([[1]]), jnp.array([[2.0]]), (2, 1))
      >>> densify(broadcast_to(c, (2, 3))).tolist()
      [[[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]]]

    """
    shape = tuple(shape)
    if shape == c.primal_shape:
        return c
    if indexed.is_indexed(c):
        return indexed.broadcast_to(c, shape)
    lead = len(shape) - len(c.primal_shape)
    return broadcast_in_dim(c, shape, tuple(range(lead, len(shape))))


def add(a: SparseCoefficient, b: SparseCoefficient, sign: int = 1) -> SparseCoefficient:
    """``a + sign · b`` for two sparse coefficients of one shape (index lists merged)."""
    values = b.values if sign > 0 else -b.values
    if a.indices is b.indices:
        return a.with_entries(a.indices, a.values + values, distinct=a.distinct and b.distinct)
    return a.with_entries(jnp.concatenate([a.indices, b.indices], axis=1),
                          jnp.concatenate([a.values, values], axis=1), distinct=False)


def coalesce(coefficients: Sequence[SparseCoefficient]) -> list[SparseCoefficient]:
    """Coefficients of one shape rewritten on one shared, distinct index list.

    The entries of all of them are put side by side (each coefficient zero at the
    others' entries), then sorted by index per direction and equal indices summed into
    the first of their run (the rest keep value zero). ``O(R·P log P)``.

    Example:
      >>> import jax.numpy as jnp
      >>> a = SparseCoefficient(jnp.array([[1, 1]]), jnp.array([[2.0, 3.0]]), (2,), False)
      >>> (b,) = coalesce([a])
      >>> b.distinct, densify(b).tolist()
      (True, [[0.0, 5.0]])

    """
    first = coefficients[0]
    if indexed.is_indexed(first):
        return indexed.on_shared_slots(coefficients)
    if all(c.indices is first.indices for c in coefficients) and first.distinct:
        return list(coefficients)
    indices = jnp.concatenate([c.indices for c in coefficients], axis=1)
    widths = [c.indices.shape[1] for c in coefficients]
    offsets = np.cumsum([0, *widths])
    columns = []
    for n, c in enumerate(coefficients):
        pad = [(0, 0), (int(offsets[n]), int(offsets[-1] - offsets[n + 1]))]
        columns.append(jnp.pad(c.values, pad))
    order = jnp.argsort(indices, axis=1)
    indices = jnp.take_along_axis(indices, order, axis=1)
    starts = jnp.concatenate([jnp.ones_like(indices[:, :1], bool),
                              indices[:, 1:] != indices[:, :-1]], axis=1)
    segment = jnp.cumsum(starts, axis=1) - 1
    rows = jnp.arange(indices.shape[0])[:, None]
    out = []
    for values in columns:
        values = jnp.take_along_axis(values, order, axis=1)
        summed = jnp.zeros_like(values).at[rows, segment].add(values)
        out.append(first.with_entries(indices, jnp.take_along_axis(summed, segment, axis=1)
                                      * starts.astype(values.dtype), distinct=True))
    return out


def take_rows(c: Any, rows: Array) -> Any:
    """Directions ``rows`` of a (sparse or dense) lower coefficient."""
    c = indexed.densify(c)
    if not is_sparse(c):
        return jnp.take(c, rows, axis=0)
    return c.with_entries(jnp.take(c.indices, rows, axis=0), jnp.take(c.values, rows, axis=0))


def scale_rows(c: Any, factors: Array) -> Any:
    """Direction ``r`` of a (sparse or dense) lower coefficient times ``factors[r]``."""
    factors = jnp.asarray(factors)
    c = indexed.densify(c)
    if not is_sparse(c):
        return c * factors.astype(c.dtype).reshape((-1,) + (1,) * (c.ndim - 1))
    return c.with_entries(c.indices, c.values * factors.astype(c.dtype).reshape(-1, 1))


def scale(c: Any, factor: Any) -> Any:
    """A (sparse or dense) lower coefficient times a scalar."""
    if indexed.is_indexed(c):
        return indexed.scale(c, factor)
    if not is_sparse(c):
        return c * jnp.asarray(factor, c.dtype)
    return c.with_entries(c.indices, c.values * jnp.asarray(factor, c.dtype))


def concatenate_rows(parts: Sequence[Any]) -> Any:
    """Directions of several lower coefficients stacked in order.

    Sparse parts stay sparse (padded to a common ``P``); a dense part densifies all.
    """
    if len(parts) == 1:
        return parts[0]
    parts = [indexed.densify(c) for c in parts]
    if all(is_sparse(c) for c in parts):
        width = max(c.indices.shape[1] for c in parts)
        indices, values = [], []
        for c in parts:
            pad = [(0, 0), (0, width - c.indices.shape[1])]
            indices.append(jnp.pad(c.indices, pad))
            values.append(jnp.pad(c.values, pad))
        return parts[0].with_entries(jnp.concatenate(indices), jnp.concatenate(values),
                                     distinct=all(c.distinct for c in parts))
    return jnp.concatenate([densify(c) for c in parts], axis=0)


def zeros_rows_like(c: Any) -> Any:
    """A zero lower coefficient with the directions and shape of ``c``."""
    c = indexed.densify(c)
    if not is_sparse(c):
        return jnp.zeros_like(c)
    return c.with_entries(jnp.zeros_like(c.indices[:, :1]), jnp.zeros_like(c.values[:, :1]),
                          distinct=True)


__all__ = ["SparseCoefficient", "densify", "from_indices"]
