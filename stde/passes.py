"""Weighted sums of jets, grouped into collapsed passes.

Every construction of :mod:`stde.exact` and :mod:`stde.stochastic` reduces an operator
to ``Σ_r w_r y_K(r)``: weighted top coefficients of order-``K`` jets whose input has
lower coefficients ``x_{1..K-1,r}`` (the top input is zero). Reparametrising time
``t → α t`` multiplies slot ``j`` by ``α^j`` and ``y_K`` by ``α^K``, so the weight moves
into the input with ``α = |w|^{1/K}`` (``sign(w)|w|^{1/K}`` for odd ``K``). What is left
is a sum over directions, which is what one collapsed pass computes. Even orders need
one pass per sign of the weights.

Directions built from basis vectors are kept sparse (:class:`SparseRows`) so equal
directions of different terms merge before any array exists, and they reach the
interpreter as :class:`stde.sparse.SparseCoefficient` (indices and values per direction),
so a pass over ``D`` basis vectors never builds a ``D × D`` array.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from stde import sparse
from stde.core import JetValue
from stde.jets import evaluate_jets

Array = Any
SparseVector = tuple[tuple[int, int], ...]
"""``((index, integer value), ...)`` sorted by index."""
Row = tuple[tuple[int, SparseVector], ...]
"""``((slot, vector), ...)``: a jet input with ``vector`` at order ``slot``."""


@dataclasses.dataclass
class Directions:
    """Inputs of one collapsed pass: ``sign · Σ_r y_K(x_{1..K-1,r})``.

    Attributes:
      order: ``K``.
      lower: ``K-1`` coefficients, each ``(R, D)`` (an array or a
        :class:`stde.sparse.SparseCoefficient`) or ``None`` (zero in every direction).
      sign: ``+1`` or ``-1``, applied to the summed output.
      top: for ``K = 1`` only: the summed first-order input ``(D,)``.

    """

    order: int
    lower: tuple[Array | None, ...]
    sign: int = 1
    top: Array | None = None

    @property
    def count(self) -> int:
        """``R``."""
        return next((int(c.shape[0]) for c in self.lower if c is not None), 0)


class SparseRows:
    """Weighted sparse directions per jet order, with equal directions merged."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[Row, Coefficient]] = {}

    def add(self, order: int, row: Row, weight: Fraction | float) -> None:
        """Adds ``weight · y_order(row)``; single-slot rows are normalised before merging."""
        if len(row) == 1 and row[0][0] == 1:
            vector = row[0][1]
            divisor = math.gcd(*(abs(v) for _, v in vector))
            if vector[0][1] < 0:
                divisor = -divisor
            weight = weight * Fraction(divisor) ** order
            row = ((1, tuple((i, v // divisor) for i, v in vector)),)
        table = self.rows.setdefault(order, {})
        table[row] = table.get(row, 0) + weight

    def directions(self, dim: int, dtype: Any) -> list[Directions]:
        """Sparse :class:`Directions` (one per order and sign), weights moved into the inputs."""
        out = []
        for order, table in sorted(self.rows.items()):
            items = [(row, w) for row, w in table.items() if w != 0]
            if not items:
                continue
            if order == 1:
                top = np.zeros(dim)
                for row, w in items:
                    for i, v in row[0][1]:
                        top[i] += float(w) * v
                out.append(Directions(1, (), 1, jnp.asarray(top, dtype)))
                continue
            slots = sorted({s for row, _ in items for s, _ in row})
            width = max(len(vector) for row, _ in items for _, vector in row)
            indices = {s: np.zeros((len(items), width), np.int32) for s in slots}
            values = {s: np.zeros((len(items), width)) for s in slots}
            for r, (row, _) in enumerate(items):
                for s, vector in row:
                    for p, (i, v) in enumerate(vector):
                        indices[s][r, p], values[s][r, p] = i, v
            lower = [sparse.from_indices(indices[s], values[s], dim, dtype) if s in indices
                     else None for s in range(1, order)]
            weights = np.array([float(w) for _, w in items])
            out.extend(weighted(order, lower, weights))
        return out


Coefficient = Fraction | float


def basis(index: int, value: int = 1) -> SparseVector:
    """The sparse vector ``value · e_index``."""
    return ((index, value),)


def combination(indices: Sequence[int], values: Sequence[int]) -> SparseVector:
    """``Σ_p values_p e_{indices_p}`` as a sparse vector (zeros dropped, repeats added)."""
    acc: dict[int, int] = {}
    for i, v in zip(indices, values):
        acc[i] = acc.get(i, 0) + int(v)
    return tuple(sorted((i, v) for i, v in acc.items() if v != 0))


def fold_weight(weight: float | np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """``(sign, α)`` with ``w · y_K(x_1, x_2, ..) = sign · y_K(α x_1, α² x_2, ..)``, elementwise.

    ``α = |w|^{1/K}`` and ``sign = sign(w)`` for even ``K``; ``α = sign(w)|w|^{1/K}`` and
    ``sign = +1`` for odd ``K`` (module docstring). ``weight`` is a number or a NumPy array.

    Example:
      >>> [float(v) for v in fold_weight(-8.0, 3) + fold_weight(-4.0, 2)]
      [1.0, -2.0, -1.0, 2.0]

    """
    magnitude = np.abs(weight) ** (1.0 / order)
    if order % 2 == 1:
        return np.ones_like(magnitude), np.sign(weight) * magnitude
    return np.where(np.asarray(weight) < 0, -1.0, 1.0), magnitude


def weighted(order: int, lower: Sequence[Array | None], weights: Array) -> list[Directions]:
    """``Σ_r w_r y_K(lower_r)`` as sign-grouped :class:`Directions` (zero weights dropped).

    ``weights`` must be concrete (a NumPy array): rows are split by sign for even ``K``.
    """
    weights = np.asarray(weights, dtype=float)
    if order == 1:
        raise ValueError("weighted() handles orders >= 2; first-order terms are linear.")
    signs, alpha = fold_weight(weights, order)
    out = []
    for sign in (1, -1):
        rows = np.flatnonzero((signs == sign) & (weights != 0))
        if not rows.size:
            continue
        out.append(Directions(order, tuple(
            None if c is None else sparse.scale_rows(sparse.take_rows(c, rows), alpha[rows] ** s)
            for s, c in enumerate(lower, start=1)), sign))
    return out


def scaled(order: int, lower: Sequence[Array | None], weight: float) -> list[Directions]:
    """``weight · Σ_r y_K(lower_r)`` for one concrete scalar ``weight`` (no row splitting)."""
    if weight == 0:
        return []
    sign, alpha = (float(v) for v in fold_weight(weight, order))
    return [Directions(order, tuple(None if c is None else sparse.scale(c, alpha ** s)
                                    for s, c in enumerate(lower, start=1)), int(sign))]


def merge(directions: Sequence[Directions]) -> list[Directions]:
    """Concatenates directions of equal order and sign, so each becomes ONE collapsed pass."""
    groups: dict[tuple[int, int], list[Directions]] = {}
    for d in directions:
        groups.setdefault((d.order, d.sign if d.order > 1 else 1), []).append(d)
    out = []
    for (order, sign), members in sorted(groups.items()):
        if order == 1:
            tops = [d.top for d in members if d.top is not None]
            out.append(Directions(1, (), 1, sum(tops[1:], tops[0]) if tops else None))
            continue
        lower = []
        for s in range(order - 1):
            if all(d.lower[s] is None for d in members):
                lower.append(None)
                continue
            parts = []
            for d in members:
                c = d.lower[s]
                if c is None:
                    c = sparse.zeros_rows_like(next(x for x in d.lower if x is not None))
                parts.append(c)
            lower.append(sparse.concatenate_rows(parts))
        out.append(Directions(order, tuple(lower), sign))
    return out


def _zeros_like_output(value: Any) -> Any:
    return jnp.zeros(jnp.shape(value), jnp.result_type(value))


def evaluate(h: Callable[[Array], Any], x: Array, directions: Sequence[Directions]
             ) -> tuple[Any, Any]:
    """``(h(x), Σ_passes sign · Σ_r y_K)`` with every pass collapsed.

    Args:
      h: a function of the flattened argument ``x`` (shape ``(D,)``).
      x: the point.
      directions: the passes; equal orders and signs are merged first.

    Returns:
      ``h``'s output and the summed operator value, both with ``h``'s output structure.

    """
    value = None
    total = None
    for d in merge(directions):
        if d.order == 1:
            inputs = [JetValue(x, (), d.top)]
            count = 1
        else:
            count = d.count
            inputs = [JetValue(x, tuple(None if c is None else c.astype(x.dtype)
                                        for c in d.lower), None)]
        outputs, out_tree = evaluate_jets(h, (x,), inputs, d.order, count)
        primal = jax.tree_util.tree_unflatten(out_tree, [o.primal for o in outputs])
        top = jax.tree_util.tree_unflatten(
            out_tree, [_zeros_like_output(o.primal) if o.summed is None
                       else (o.summed if d.sign > 0 else -o.summed) for o in outputs])
        value = primal
        total = top if total is None else jax.tree_util.tree_map(jnp.add, total, top)
    if value is None:
        value = h(x)
    if total is None:
        total = jax.tree_util.tree_map(_zeros_like_output, value)
    return value, total
