"""Indexed lower coefficients: each element lists the few directions it depends on.

With the basis directions ``e_1 .. e_D`` of a Laplacian, an element of a per-electron or
pair feature depends on a handful of coordinates (electron ``i``'s, or ``i``'s and
``j``'s). :class:`IndexedCoefficient` holds a lower coefficient ``(R, *S)`` in that
layout: ``values`` shaped ``(K, *S)`` and, per value, the direction it belongs to
(``slots``, a NumPy array fixed at trace time, ``-1`` for none). Direction ``r`` of the
coefficient at element ``s`` is ``Σ_k values[k, s] · [slots[k, s] = r]``.

Because the slots are static, every index computation (which entries meet in a sum,
where a reduction's entries go, how the dense form is gathered) is NumPy work at trace
time; what runs is dense arithmetic on ``(K, *S)`` arrays and gathers with constant
indices. Elementwise rules cost ``K`` instead of ``R`` per element, so the pair
features of a wavefunction (``K = 6`` against ``R = 3n``) stay cheap; where the entry
count would exceed :data:`DENSE_FRACTION` of ``R``, the coefficient becomes dense.

The module mirrors the hooks of :mod:`stde.sparse` (products with an array or another
lower coefficient, sums, scaling, the sum over directions, densifying) and the index
maps of :mod:`stde.rules.sparse`, which dispatch here for this layout.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from stde.core import bind_equation, gather_rows

Array = Any

UNROLLED_TERMS = 12
"""Up to this many rows in all, a static regrouping of rows is written as slices and
adds; beyond, as a product with a 0/1 matrix (the slices' transposes, in reverse mode,
would pad every row to the full size)."""

MAX_GATHERED_TERMS = 4
"""A static regrouping whose rows each sum at most this many rows is done by gathers."""

MAX_DEDUPLICATED_ROWS = 32
"""Coefficients with more rows than this keep duplicate slots (correct, but their
products read entries by slot instead of multiplying rows)."""

MAX_UNROLLED_PAIRS = 256
"""Up to this many (entry, contracted position) pairs, :func:`dot_general` sums the
merged entries' products one by one (elementwise work XLA fuses); beyond, it contracts
them against masked weights in one ``einsum``."""

DENSE_FRACTION = 0.5
"""An indexed coefficient with more than this fraction of ``R`` entries per element is
made dense (its arithmetic would then cost about as much as the dense form's)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Slots:
    """A static ``(K, *S)`` integer array of direction numbers (hashable by content)."""

    array: np.ndarray

    @functools.cached_property
    def _key(self) -> tuple[Any, ...]:
        return (self.array.shape, self.array.tobytes())

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Slots) and self._key == other._key

    @functools.cached_property
    def distinct(self) -> bool:
        """Whether no direction appears twice at one element."""
        ordered = np.sort(self.array.reshape(self.array.shape[0], -1), axis=0)
        return bool(np.all(_first_of_runs(ordered) | (ordered < 0)))


def _first_of_runs(ordered: np.ndarray) -> np.ndarray:
    """For slots sorted along axis 0: whether each is a present slot not seen above it."""
    return np.concatenate([ordered[:1] >= 0,
                           (ordered[1:] != ordered[:-1]) & (ordered[1:] >= 0)])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class IndexedCoefficient:
    """A lower coefficient ``(R, *S)`` held as ``(K, *S)`` values with static slots.

    Attributes:
      values: ``(K, *S)``; zero wherever the slot is ``-1``.
      slots: the direction of each value (static).
      directions: ``R`` (static).

    Example:
      >>> import jax.numpy as jnp
      >>> c = basis(3, jnp.float32)
      >>> densify(c).tolist()
      [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]

    """

    values: Array
    slots: Slots = dataclasses.field(metadata={"static": True})
    directions: int = dataclasses.field(metadata={"static": True})

    @property
    def primal_shape(self) -> tuple[int, ...]:
        """``S``."""
        return tuple(self.slots.array.shape[1:])

    @property
    def shape(self) -> tuple[int, ...]:
        """The dense shape ``(R, *S)``."""
        return (self.directions, *self.primal_shape)

    @property
    def entries(self) -> int:
        """``K``."""
        return int(self.slots.array.shape[0])

    @property
    def dtype(self) -> Any:
        """The values' dtype."""
        return self.values.dtype

    def astype(self, dtype: Any) -> IndexedCoefficient:
        """The coefficient with values cast to ``dtype``."""
        return dataclasses.replace(self, values=self.values.astype(dtype))

    def with_values(self, values: Array, slots: np.ndarray | None = None) -> IndexedCoefficient:
        """A coefficient of the same ``R`` with new values (and slots)."""
        return IndexedCoefficient(values, self.slots if slots is None else Slots(
            np.ascontiguousarray(slots, np.int32)), self.directions)


def is_indexed(c: Any) -> bool:
    """Whether ``c`` is an :class:`IndexedCoefficient`."""
    return isinstance(c, IndexedCoefficient)


def basis(dim: int, dtype: Any) -> IndexedCoefficient:
    """The directions ``e_1 .. e_D`` of ``R^D``: one entry per element.

    Example:
      >>> import jax.numpy as jnp
      >>> basis(2, jnp.float32).values.shape
      (1, 2)

    """
    return IndexedCoefficient(jnp.ones((1, dim), dtype),
                              Slots(np.arange(dim, dtype=np.int32)[None]), int(dim))


# ------------------------------------------------------------------ static regrouping


def _flat(c: IndexedCoefficient) -> tuple[Array, np.ndarray]:
    """Values and slots as ``(K, P)``."""
    return c.values.reshape(c.entries, -1), c.slots.array.reshape(c.entries, -1)


def _combine(values: Array, matrix: np.ndarray) -> Array:
    """``matrix @ values`` for a static 0/1 ``matrix`` ``(M, K)`` and values ``(K, P)``.

    Consecutive rows are a slice; a few terms are slices and adds; rows that each sum
    at most :data:`MAX_GATHERED_TERMS` rows are that many row gathers; otherwise one
    matrix product. (Each form's transpose, in reverse mode, costs what it costs.)
    """
    rows, entries = matrix.shape
    counts = matrix.sum(1).astype(int)
    picks = np.argmax(matrix, axis=1)
    if np.all(counts == 1) and np.array_equal(picks, np.arange(picks[0], picks[0] + rows)):
        return values[int(picks[0]):int(picks[0]) + rows]
    if counts.sum() <= UNROLLED_TERMS:
        zero = jnp.zeros_like(values[:1])
        return jnp.concatenate([functools.reduce(jnp.add, (values[k:k + 1] for k in
                                                           np.nonzero(row)[0]), zero)
                                for row in matrix])
    if counts.max() <= MAX_GATHERED_TERMS:
        out = None
        remaining = matrix.copy()
        for _ in range(counts.max()):
            picks = np.argmax(remaining, axis=1)
            has = remaining[np.arange(rows), picks] > 0
            remaining[np.arange(rows)[has], picks[has]] = 0
            term = jnp.take(values, jnp.asarray(picks, np.int32), axis=0)
            term = term if has.all() else jnp.where(has[:, None], term, 0)
            out = term if out is None else out + term
        return out
    return jnp.einsum("mk,kp->mp", jnp.asarray(matrix, values.dtype), values,
                      precision=lax.Precision.HIGHEST)


def _selection(groups: Sequence[Sequence[int]], entries: int) -> np.ndarray:
    """The 0/1 matrix with ``matrix[m, k] = 1`` for ``k`` in ``groups[m]``."""
    matrix = np.zeros((len(groups), entries), np.float32)
    for m, group in enumerate(groups):
        matrix[m, list(group)] = 1
    return matrix


def _rows(values: Array, rows: Sequence[int]) -> Array:
    """``values[rows]`` for static ``rows``."""
    return _combine(values.reshape(values.shape[0], -1), _selection(
        [[int(k)] for k in rows], values.shape[0])).reshape(len(rows), *values.shape[1:])


def _row_sums(values: Array, groups: Sequence[Sequence[int]]) -> Array:
    """``out[m] = Σ_{k ∈ groups[m]} values[k]`` (rows of a ``(K, P)`` array)."""
    return _combine(values, _selection(groups, values.shape[0]))


def _constant_slot(slots: np.ndarray) -> np.ndarray:
    """Per row, its one slot if every present entry has it, else ``-2`` (``-1``: empty)."""
    present = slots >= 0
    lead = np.max(slots, axis=1)
    uniform = np.all((slots == lead[:, None]) | ~present, axis=1)
    return np.where(uniform, lead, -2)


def densify(c: Any) -> Any:
    """The coefficient as an ``(R, *S)`` array (anything else passes through).

    A row of values whose entries all belong to one direction is added to that
    direction's row; a row spread over several directions is expanded against them.
    """
    if not is_indexed(c):
        return c
    values, slots = _flat(c)
    constant = _constant_slot(slots)
    groups: list[list[int]] = [[] for _ in range(c.directions)]
    for k in np.nonzero(constant >= 0)[0]:
        groups[int(constant[k])].append(int(k))
    dense = _row_sums(values, groups) if any(groups) else jnp.zeros(
        (c.directions, values.shape[1]), c.dtype)
    dense = dense.reshape(c.shape)
    for k in np.nonzero(constant == -2)[0]:
        dense = dense + jnp.asarray(_one_hot(c.slots.array[k], c.directions), c.dtype
                                    ) * c.values[k][None]
    return dense


def _one_hot(slots: np.ndarray, directions: int) -> np.ndarray:
    """``[slots == r]`` as ``(R, *S')``, ``S'`` being ``S`` with size 1 where constant.

    A 0/1 factor rather than a select, so that XLA fuses the product into its consumer
    (jaxlib's YNNPACK fusions take no selects: at 64 electrons, the envelopes' selects
    each wrote an ``(R, *S)`` array: 99 of 750 ms for the orbital matrices); and only as
    large as the axes along which the slots vary (an electron's rows of a matrix:
    ``(R, 1, n, 1)``). A non-finite value makes its element's other directions NaN
    rather than 0.
    """
    for axis in range(slots.ndim):
        first = np.take(slots, [0], axis=axis)
        if np.all(slots == first):
            slots = first
    return (slots[None] == np.arange(directions).reshape(-1, *(1,) * slots.ndim)
            ).astype(np.float32)


def _distinct_count(slots: np.ndarray) -> int:
    """The largest number of distinct directions at one element."""
    return int(_first_of_runs(np.sort(slots, axis=0)).sum(0).max(initial=0))


def _compatible_rows(slots: np.ndarray) -> tuple[list[list[int]], np.ndarray]:
    """Rows grouped so that a group's rows agree wherever two of them are present.

    Returns the groups and their slots (``-1`` where no row of a group is present).
    Summing a group's rows merges entries of one direction and fills the gaps of one
    row with another's entries; empty rows are dropped.
    """
    groups: list[list[int]] = []
    merged_slots: list[np.ndarray] = []
    by_content: dict[bytes, int] = {}
    for k in range(slots.shape[0]):
        row = slots[k]
        present = row >= 0
        if not present.any():
            continue
        key = row.tobytes()
        if key in by_content:
            groups[by_content[key]].append(k)
            continue
        for m, target in enumerate(merged_slots):
            both = present & (target >= 0)
            if np.array_equal(row[both], target[both]):
                groups[m].append(k)
                merged_slots[m] = np.where(target >= 0, target, row)
                break
        else:
            groups.append([k])
            merged_slots.append(row)
            by_content[key] = len(groups) - 1
    if not groups:
        return [[]], np.full((1, slots.shape[1]), -1, np.int32)
    return groups, np.stack(merged_slots)


def _deduplicated(values: Array, slots: np.ndarray) -> tuple[Array, np.ndarray]:
    """Entries of one direction at one element moved into the first row holding it.

    ``r_i - r_j`` has, on its diagonal, the direction of ``r_i`` twice; with the
    duplicate merged, the slots are distinct and products of coefficients on them
    multiply values (:func:`times_lower`'s fast path).
    """
    rows = slots.shape[0]
    if rows > MAX_DEDUPLICATED_ROWS or Slots(slots).distinct:
        return values, slots
    order = np.argsort(slots, axis=0, kind="stable")
    ordered = np.take_along_axis(slots, order, axis=0)
    start = np.concatenate([np.ones((1, slots.shape[1]), bool),
                            (ordered[1:] != ordered[:-1]) | (ordered[1:] < 0)])
    run = np.maximum.accumulate(np.where(start, np.arange(rows)[:, None], 0), axis=0)
    first = np.take_along_axis(order, run, axis=0)
    moved, position = np.nonzero(~start)
    source, target = order[moved, position], first[moved, position]
    kept = np.ones(slots.shape, bool)
    kept[source, position] = False
    new_slots = np.where(kept, slots, -1)
    out = jnp.where(kept, values, 0)
    additions = []
    for row in range(rows):
        term = jnp.zeros_like(values[0])
        for src in np.unique(source[target == row]):
            mask = np.zeros(slots.shape[1], bool)
            mask[position[(target == row) & (source == src)]] = True
            term = term + jnp.where(mask, values[src], 0)
        additions.append(term[None])
    return out + jnp.concatenate(additions), new_slots


def merged(c: IndexedCoefficient) -> IndexedCoefficient | Array:
    """Rows that agree wherever both are present summed into one; empty rows dropped.

    Returns the dense array instead when some element depends on more than
    :data:`DENSE_FRACTION` of the ``R`` directions.
    """
    values, slots = _flat(c)
    if _distinct_count(slots) > DENSE_FRACTION * c.directions:
        return densify(c)
    values, slots = _deduplicated(values, slots)
    groups, new_slots = _compatible_rows(slots)
    if len(groups) == c.entries and all(g == [k] for k, g in enumerate(groups)):
        return c.with_values(values.reshape(c.values.shape), slots.reshape(c.slots.array.shape))
    shape = (len(groups), *c.primal_shape)
    return c.with_values(_row_sums(values, groups).reshape(shape), new_slots.reshape(shape))


def read_at(v: Any, slots: np.ndarray) -> Array:
    """Direction ``slots[k, s]`` of ``v`` (dense ``(R, *S)`` or indexed) at element ``s``.

    Zero where ``slots`` is ``-1``.
    """
    flat = slots.reshape(slots.shape[0], -1)
    present = flat >= 0
    if not is_indexed(v):
        source = v.reshape(v.shape[0], -1)
        constant = _constant_slot(flat)
        if np.all(constant >= -1):
            groups = [[int(r)] if r >= 0 else [] for r in constant]
            out = _combine(source, _selection(groups, source.shape[0]))
        else:
            index = jnp.asarray(np.where(present, flat, 0), np.int32)
            out = jnp.take_along_axis(source, index, axis=0)
        return (out if present.all() else jnp.where(present, out, 0)).reshape(slots.shape)
    source, own = _flat(v)
    exact = np.zeros((flat.shape[0], own.shape[0]), np.float32)
    partial = []
    for b in range(own.shape[0]):
        match = (own[b][None] == flat) & present
        whole = np.all(match == (own[b] >= 0)[None], axis=1)
        exact[whole, b] = 1
        masked = match & ~whole[:, None]
        if masked.any():
            partial.append(jnp.where(masked, source[b][None], 0))
    out = _combine(source, exact)
    for term in partial:
        out = out + term
    return out.reshape(slots.shape)


# ------------------------------------------------------------------ the series hooks


def times_array(c: IndexedCoefficient, array: Array) -> IndexedCoefficient:
    """``c`` times a direction-free ``array`` that broadcasts to ``S``."""
    factor = jnp.broadcast_to(jnp.asarray(array), c.primal_shape).astype(c.dtype)
    return c.with_values(c.values * factor[None])


def times_lower(u: Any, v: Any) -> IndexedCoefficient:
    """Direction-wise product of two lower coefficients of one shape, one indexed."""
    if not is_indexed(u):
        u, v = v, u
    if is_indexed(v) and v.slots == u.slots and u.slots.distinct:
        return u.with_values(u.values * v.values.astype(u.dtype))
    return u.with_values(u.values * read_at(v, u.slots.array).astype(u.dtype))


def plus(u: Any, v: Any, sign: int = 1) -> Any:
    """``u + sign · v`` of lower coefficients of one shape, at least one indexed."""
    if not (is_indexed(u) and is_indexed(v)):
        u, v = densify(u), densify(v)
        return u + v if sign > 0 else u - v
    values = v.values if sign > 0 else -v.values
    if u.slots == v.slots:
        return u.with_values(u.values + values)
    joined = u.with_values(jnp.concatenate([u.values, values.astype(u.dtype)]),
                           np.concatenate([u.slots.array, v.slots.array]))
    return merged(joined)


def scale(c: IndexedCoefficient, factor: Any) -> IndexedCoefficient:
    """``c`` times a scalar."""
    return c.with_values(c.values * jnp.asarray(factor, c.dtype))


def sum_directions(c: IndexedCoefficient) -> Array:
    """``Σ_r`` of the directions of ``c``: the sum of its entries, shaped ``S``."""
    return jnp.sum(c.values, axis=0)


def broadcast_to(c: IndexedCoefficient, shape: tuple[int, ...]) -> IndexedCoefficient:
    """``c`` broadcast to ``shape`` by NumPy's rules (entries repeat, ``K`` is kept)."""
    shape = tuple(shape)
    lead = len(shape) - len(c.primal_shape)
    values = c.values.reshape(c.entries, *(1,) * lead, *c.primal_shape)
    slots = c.slots.array.reshape(values.shape)
    return c.with_values(jnp.broadcast_to(values, (c.entries, *shape)),
                         np.broadcast_to(slots, (c.entries, *shape)))


# ----------------------------------------------------------------------- index maps


def _eager(fn: Any, slots: np.ndarray) -> np.ndarray:
    """``fn`` (a JAX index map) applied to static slots at trace time."""
    with jax.ensure_compile_time_eval():
        return np.asarray(fn(jnp.asarray(slots)))


def index_map(primitive: Any, c: IndexedCoefficient, params: dict[str, Any]
              ) -> IndexedCoefficient | Array:
    """``primitive`` (one operand, moves elements) applied to every entry of ``c``."""
    if primitive is lax.reduce_sum_p:
        return reduce_sum(c, tuple(params["axes"]))
    if primitive in (lax.convert_element_type_p, lax.copy_p):
        return c
    bind = jax.vmap(functools.partial(bind_equation, primitive, params))
    return c.with_values(bind(c.values), _eager(bind, c.slots.array))


def reduce_sum(c: IndexedCoefficient, axes: Sequence[int]) -> IndexedCoefficient | Array:
    """``Σ`` over primal ``axes``, one axis at a time.

    Along each axis, entries whose slot is constant along it are summed; the others
    become entries of their own. (Summing the pair features of ``r_i - r_j`` over both
    particles: ``r_i``'s entries are summed over ``j`` first, then each ``i`` becomes an
    entry.) Entries are merged at the end (:func:`merged`).
    """
    spread = False
    for axis in sorted(axes, reverse=True):
        c, moved = _reduce_axis(c, axis + 1)
        spread = spread or moved
    return merged(c) if spread else c


def _reduce_axis(c: IndexedCoefficient, axis: int) -> tuple[IndexedCoefficient, bool]:
    """:func:`reduce_sum` along values axis ``axis``; whether entries became new entries."""
    slots = c.slots.array
    first = np.max(slots, axis=axis, keepdims=True)    # the slot, where any is present
    constant = np.all((slots == first) | (slots < 0), axis=axis).reshape(c.entries, -1).all(1)
    values, new_slots = [], []
    if constant.any():
        values.append(jnp.sum(_rows(c.values, np.nonzero(constant)[0]), axis=axis))
        new_slots.append(np.squeeze(first[constant], axis))
    if not constant.all():
        moving = (0, axis, *(d for d in range(1, slots.ndim) if d != axis))
        varying = np.transpose(slots[~constant], moving)
        new_slots.append(varying.reshape(-1, *varying.shape[2:]))
        values.append(jnp.transpose(_rows(c.values, np.nonzero(~constant)[0]),
                                    moving).reshape(new_slots[-1].shape))
    return c.with_values(jnp.concatenate(values), np.concatenate(new_slots)), \
        not constant.all()


def concatenate(parts: Sequence[IndexedCoefficient], dimension: int
                ) -> IndexedCoefficient:
    """Indexed coefficients concatenated along primal axis ``dimension`` (``K`` padded)."""
    entries = max(c.entries for c in parts)
    values, slots = [], []
    for c in parts:
        pad = entries - c.entries
        values.append(jnp.pad(c.values, [(0, pad)] + [(0, 0)] * len(c.primal_shape)))
        slots.append(np.pad(c.slots.array, [(0, pad)] + [(0, 0)] * len(c.primal_shape),
                            constant_values=-1))
    return parts[0].with_values(jnp.concatenate(values, axis=dimension + 1),
                                np.concatenate(slots, axis=dimension + 1))


def dot_general(c: IndexedCoefficient, weights: Array, params: dict[str, Any],
                indexed_first: bool) -> IndexedCoefficient | Array:
    """``dot_general`` of ``c`` with a constant operand (no batch axes).

    Where every entry's slot is constant along the contracted axes, the values are
    contracted as they are. Otherwise each pair (entry ``k``, contracted position ``c``)
    is an entry of the output, ``values[k, ..., c] · W[c, ...]``; pairs whose slots agree
    are merged (:func:`_compatible_rows`) inside one contraction against the weights
    masked per merged entry, so the pairs are never formed.
    """
    (contract_a, contract_b), _ = params["dimension_numbers"]
    mine, theirs = (contract_a, contract_b) if indexed_first else (contract_b, contract_a)
    bind = functools.partial(bind_equation, lax.dot_general_p, params)
    ndim = len(c.primal_shape)
    free = [d for d in range(ndim) if d not in mine]
    their_free = [d for d in range(np.ndim(weights)) if d not in theirs]
    slots = c.slots.array
    out_free = [c.primal_shape[d] for d in free]
    weight_free = [np.shape(weights)[d] for d in their_free]

    def out_slots(s: np.ndarray) -> np.ndarray:
        s = s.reshape(*s.shape, *(1,) * len(weight_free)) if indexed_first else \
            s.reshape(s.shape[0], *(1,) * len(weight_free), *s.shape[1:])
        shape = (s.shape[0], *out_free, *weight_free) if indexed_first else \
            (s.shape[0], *weight_free, *out_free)
        return np.broadcast_to(s, shape)

    def operate(u: Array) -> Array:
        return bind(u, weights) if indexed_first else bind(weights, u)

    along = np.max(slots, axis=tuple(1 + d for d in mine), keepdims=True)
    first = np.squeeze(along, tuple(1 + d for d in mine))
    if np.all((slots == along) | (slots < 0)):
        return c.with_values(jax.vmap(operate)(c.values), out_slots(first))
    contracted = int(np.prod([c.primal_shape[d] for d in mine], dtype=np.int64))
    positions = int(np.prod(out_free, dtype=np.int64))
    spread = np.transpose(slots, (0, *(1 + d for d in mine), *(1 + d for d in free)))
    spread = spread.reshape(c.entries * contracted, positions)
    rows = jnp.transpose(weights, (*theirs, *their_free)).reshape(contracted, -1).astype(c.dtype)
    values = jnp.transpose(c.values, (0, *(1 + d for d in free), *(1 + d for d in mine)))
    values = values.reshape(c.entries, positions, contracted)

    def summed_pairs(groups: Sequence[Sequence[int]]) -> Array:
        """``out[m] = Σ_{p ∈ groups[m]} pairs[p] ⊗ rows[p mod contracted]``.

        One layer of gathers per group member: elementwise work that XLA fuses.
        """
        pairs = jnp.transpose(values, (0, 2, 1)).reshape(c.entries * contracted, positions)
        out = None
        for layer in range(max(map(len, groups))):
            has = np.array([layer < len(g) for g in groups])
            pick = np.array([g[layer] if layer < len(g) else 0 for g in groups], np.int32)
            weight = gather_rows(rows, jnp.asarray(pick % contracted))
            weight = weight if has.all() else jnp.where(has[:, None], weight, 0)
            term = jnp.take(pairs, jnp.asarray(pick), axis=0)[:, :, None] * weight[:, None]
            out = term if out is None else out + term
        return out

    def oriented(out: Array, leading: int) -> Array:
        out = out.reshape(leading, *out_free, *weight_free)
        if indexed_first:
            return out
        return jnp.transpose(out, (0, *range(1 + len(out_free), out.ndim),
                                   *range(1, 1 + len(out_free))))

    if _distinct_count(spread) > DENSE_FRACTION * c.directions:
        by_direction = _pairs_by_direction(spread, c.directions)
        if by_direction is None or max(map(len, by_direction)) >= contracted:
            return jax.vmap(operate)(densify(c))
        return oriented(summed_pairs(by_direction), c.directions)
    groups, group_slots = _compatible_rows(spread)
    if sum(map(len, groups)) <= MAX_UNROLLED_PAIRS:
        out = summed_pairs(groups)
    else:
        selection = _selection(groups, c.entries * contracted)
        combined = (jnp.asarray(selection.reshape(len(groups), c.entries, contracted),
                                c.dtype)[..., None] * rows[None, None])
        out = jnp.einsum("kac,mkcf->maf", values, combined, precision=params.get("precision"))
    return c.with_values(oriented(out, len(groups)),
                         out_slots(group_slots.reshape(len(groups), *out_free)))


def _pairs_by_direction(spread: np.ndarray, directions: int) -> list[list[int]] | None:
    """Per direction, the (entry, contracted position) pairs of :func:`dot_general` in it.

    ``None`` unless each pair belongs to one direction at every output position. Then
    the dense product is ``out[r] = Σ_{p ∈ pairs[r]} pair_p ⊗ weights_p``: for the
    basis directions through a dense layer (``W @ x`` with ``x``'s coefficient ``e_r``),
    ``W``'s columns placed in their directions' rows, not ``W`` times a one-hot matrix
    (``R`` times the flops).

    Example:
      >>> _pairs_by_direction(np.array([[1], [0], [-1], [1]]), 3)
      [[1], [0, 3], []]
      >>> _pairs_by_direction(np.array([[0, 1]]), 2) is None   # two directions in a pair
      True

    """
    first = spread[:, :1]
    if not np.all((spread == first) | (np.all(spread < 0, axis=1, keepdims=True))):
        return None
    by_direction: list[list[int]] = [[] for _ in range(directions)]
    for p in np.nonzero(first[:, 0] >= 0)[0]:
        by_direction[int(first[p, 0])].append(int(p))
    return by_direction


def on_shared_slots(coefficients: Sequence[IndexedCoefficient]) -> list[IndexedCoefficient]:
    """Coefficients of one shape rewritten on one shared slot array, distinct per element.

    A single coefficient is returned as it is: its products read entries by slot
    (:func:`read_at`), duplicates included.
    """
    first = coefficients[0]
    if len(coefficients) == 1 or (all(c.slots == first.slots for c in coefficients)
                                  and first.slots.distinct):
        return list(coefficients)
    union = np.concatenate([c.slots.array for c in coefficients]).reshape(
        -1, int(np.prod(first.primal_shape, dtype=np.int64)))
    ordered = np.sort(union, axis=0)
    shared = np.where(_first_of_runs(ordered), ordered, -1)
    shared = shared[shared.max(1) >= 0].reshape(-1, *first.primal_shape)
    return [c.with_values(read_at(c, shared), shared) for c in coefficients]
