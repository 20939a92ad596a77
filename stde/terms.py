"""The operator terms and what each lowers to (exact rows, sparse sample, dense sample).

Every term is a :class:`stde.lowering.Term`; :mod:`stde.exact` and
:mod:`stde.stochastic` only loop over them.

* :class:`Diagonal` ``Σ_i ∂_i^k``: exact, the ``D`` basis vectors in one collapsed
  ``k``-jet; sparse, ``S`` of them drawn without replacement and weighted ``D/S``; dense
  (``k = 2`` only), ``y_2(v)`` for Rademacher or normal ``v``.
* :class:`Weighted` ``Σ_r σ_rᵀ ∇² σ_r``: exact, the columns of ``σ``; sparse, ``S`` of
  them; dense, ``y_2(σ v)``.
* :class:`Biharmonic` ``Σ_{i,j} ∂_i²∂_j²``: exact, a collapsed Laplacian of a collapsed
  Laplacian (``"nested"``) or ``Σ_i ∂_i⁴ + 2 Σ_{i<j} ∂_i²∂_j²`` by interpolation; sparse,
  ``S`` of the ``D²`` pairs ``(i, j)``; dense, ``y_4(v) / 3`` with normal ``v``
  (``E[v⊗4]`` has three pairings; Rademacher's fourth moment would bias it).
* :class:`Partial` ``∂^α``: exact, the interpolation family (:mod:`stde.interpolation`)
  or the one-jet slot construction (:mod:`stde.slots`), whichever propagates less.
  The partials of one order are sampled together as a :class:`Pool`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Hashable
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from stde import passes, sampling, sparse
from stde.interpolation import interpolation_coefficients
from stde.lowering import Coefficient, Plan, Term, basis_vectors, random_tangents, taylor_cost
from stde.slots import find_slots

Array = Any


def _laplacian(plan: Plan, weight: Coefficient) -> list[passes.Directions]:
    """``weight · Δ`` as one collapsed 2-jet with directions ``e_1 .. e_D`` (held sparse)."""
    return passes.scaled(2, [basis_vectors(jnp.arange(plan.dim), plan.dim, plan.dtype)],
                         float(weight))


@dataclasses.dataclass(frozen=True)
class Diagonal(Term):
    """``Σ_i ∂_i^order``; ``order == 2`` is the Laplacian."""

    order: int

    def size(self, dim: int, argument: Array) -> int:
        """Number of members (``D``)."""
        return dim

    def exact(self, c: Coefficient, plan: Plan) -> None:
        """``c · ∂_i^order`` for every ``i``, as sparse rows."""
        for i in range(plan.dim):
            plan.rows.add(self.order, ((1, passes.basis(i)),), c)

    def sample_sparse(self, c: Coefficient, count: int, key: Array, plan: Plan) -> None:
        """``(D/S) Σ_s ∂_{i_s}^order`` over ``S`` coordinates drawn without replacement."""
        picked = basis_vectors(sampling.without_replacement(key, plan.dim, count), plan.dim,
                               plan.dtype)
        plan.add_directional(self.order, picked, float(c) * plan.dim / count)

    def has_dense(self) -> bool:
        """Only the Laplacian (``order == 2``) has a dense estimator."""
        return self.order == 2

    def sample_dense(self, c: Coefficient, count: int, key: Array, plan: Plan,
                     distribution: str) -> None:
        """``(1/S) Σ_s y_2(v_s)``."""
        tangents = random_tangents(key, (count, plan.dim), distribution, plan.dtype)
        plan.add_directional(2, tangents, float(c) / count)

    def __repr__(self) -> str:
        return "laplacian()" if self.order == 2 else f"diagonal({self.order})"


@dataclasses.dataclass(frozen=True)
class Partial(Term):
    """The mixed partial ``∂^{len(indices)} / Π ∂x_i`` (indices sorted, repeats allowed)."""

    indices: tuple[int, ...]

    @property
    def order(self) -> int:
        """The derivative order ``len(indices)``."""
        return len(self.indices)

    @property
    def multiplicities(self) -> dict[int, int]:
        """``{coordinate: how often it is differentiated}`` in increasing coordinate order."""
        counts: dict[int, int] = {}
        for i in self.indices:
            counts[i] = counts.get(i, 0) + 1
        return counts

    def pool_key(self) -> Hashable:
        """Partials of one order are sampled as one :class:`Pool`."""
        return ("partial", self.order)

    def check(self, dim: int, argnums: int) -> None:
        """Raises a ValueError when an index is outside ``range(dim)``."""
        if self.indices and self.indices[-1] >= dim:
            raise ValueError(f"{self!r} refers to coordinate {self.indices[-1]}, but argument "
                             f"{argnums} has only {dim} flattened coordinates "
                             f"(indices 0..{dim - 1}).")

    def interpolation_rows(self) -> list[tuple[passes.SparseVector, Fraction]]:
        """``[(v_j, γ_j)]`` with ``∂^α = Σ_j (γ_j / K!) y_K(x_1 = v_j)`` (interpolation)."""
        counts = self.multiplicities
        return [(passes.combination(tuple(counts), j), gamma)
                for j, gamma in interpolation_coefficients(tuple(counts.values())).items()]

    def exact(self, c: Coefficient, plan: Plan) -> None:
        """The identity for ``partial()``, else sparse rows by ``plan.partial_method``."""
        if self.order == 0:
            plan.identity = plan.identity + c
        else:
            self.add_rows(plan.rows, c, plan.partial_method)

    def add_rows(self, rows: passes.SparseRows, c: Coefficient, method: str) -> None:
        """Adds ``c · ∂^α`` (order ≥ 1) to ``rows`` by ``method`` (``"auto"``: the cheaper one)."""
        counts = self.multiplicities
        coordinates, q = tuple(counts), tuple(counts.values())
        order = self.order
        if len(q) == 1:
            rows.add(order, ((1, passes.basis(coordinates[0])),), c)
            return
        interpolation = self.interpolation_rows()
        construction = find_slots(q) if method == "slots" else None
        if method == "auto":
            budget = taylor_cost(order, len(interpolation))
            cheaper = max(k for k in range(order, budget + 1) if taylor_cost(k, 1) < budget)
            try:
                construction = find_slots(q, max_order=cheaper)
            except ValueError:  # no slot jet propagates fewer products than interpolation
                construction = None
        if construction is not None:
            row = tuple(sorted((slot, passes.basis(i))
                               for slot, i in zip(construction.slots, coordinates)))
            rows.add(construction.order, row, c * Fraction(1, construction.divisor))
            return
        for vector, gamma in interpolation:
            rows.add(order, ((1, vector),), c * gamma / math.factorial(order))

    def __repr__(self) -> str:
        return f"partial({', '.join(map(str, self.indices))})"


@dataclasses.dataclass(frozen=True)
class Biharmonic(Term):
    """``Δ² = Σ_{i,j} ∂_i² ∂_j²``."""

    @property
    def order(self) -> int:
        """The derivative order, 4."""
        return 4

    def size(self, dim: int, argument: Array) -> int:
        """Number of members (``D²`` pairs)."""
        return dim * dim

    def exact(self, c: Coefficient, plan: Plan) -> None:
        """Nested collapsed Laplacians, or interpolation rows (``plan.biharmonic_method``)."""
        if plan.biharmonic_method == "nested":
            plan.nested.append((_laplacian(plan, 1), _laplacian(plan, c)))
            return
        for i in range(plan.dim):
            plan.rows.add(4, ((1, passes.basis(i)),), c)
            for j in range(i + 1, plan.dim):
                Partial((i, i, j, j)).add_rows(plan.rows, 2 * c, "interpolation")

    def sample_sparse(self, c: Coefficient, count: int, key: Array, plan: Plan) -> None:
        """``(D²/S) Σ_s ∂_{i_s}²∂_{j_s}²`` over ``S`` distinct pairs, by interpolation."""
        dim, dtype = plan.dim, plan.dtype
        first, second = sampling.without_replacement_grid(key, dim, dim, count)
        indices = jnp.stack([first, second], axis=1)
        same = (first == second)[:, None]
        for (a, b), gamma in interpolation_coefficients((2, 2)).items():
            weight = float(c) * float(gamma) / 24 * self.size(dim, plan.argument) / count
            values = jnp.where(same, jnp.asarray([a + b, 0], dtype), jnp.asarray([a, b], dtype))
            plan.add_directional(4, sparse.from_indices(indices, values, dim, dtype), weight)

    def has_dense(self) -> bool:
        """``y_4(v) / 3`` with normal ``v`` is unbiased."""
        return True

    def sample_dense(self, c: Coefficient, count: int, key: Array, plan: Plan,
                     distribution: str) -> None:
        """``(1/(3S)) Σ_s y_4(v_s)``, ``v_s`` standard normal whatever ``distribution``."""
        v = jax.random.normal(key, (count, plan.dim), plan.dtype)
        plan.add_directional(4, v, float(c) / (3 * count))

    def __repr__(self) -> str:
        return "biharmonic()"


@dataclasses.dataclass(frozen=True, eq=False)
class Weighted(Term):
    """``tr(σσᵀ ∇²) = Σ_r σ_rᵀ ∇² σ_r``; ``sigma`` is ``(D, R)`` or a callable ``x -> (D, R)``.

    Two weighted terms are equal only if they are the same object.
    """

    sigma: Array | Callable[[Array], Array]

    @property
    def order(self) -> int:
        """The derivative order, 2."""
        return 2

    def columns(self, argument: Array, dim: int) -> Array:
        """``σ`` at ``argument``, checked to be ``(dim, R)``."""
        sigma = self.sigma(argument) if callable(self.sigma) else self.sigma
        sigma = jnp.asarray(sigma)
        if sigma.ndim != 2 or sigma.shape[0] != dim:
            raise ValueError(f"weighted_laplacian: sigma must have shape (D, R) = ({dim}, R) for "
                             f"an argument with {dim} flattened coordinates; got {sigma.shape}.")
        return sigma

    def size(self, dim: int, argument: Array) -> int:
        """Number of members (the columns ``R`` of ``σ``)."""
        return int(self.columns(argument, dim).shape[1])

    def _directions(self, plan: Plan) -> Array:
        return self.columns(plan.argument, plan.dim).T.astype(plan.dtype)

    def exact(self, c: Coefficient, plan: Plan) -> None:
        """The columns of ``σ`` as dense directions of a collapsed 2-jet."""
        plan.add_directional(2, self._directions(plan), c)

    def sample_sparse(self, c: Coefficient, count: int, key: Array, plan: Plan) -> None:
        """``(R/S) Σ_s σ_{r_s}ᵀ ∇² σ_{r_s}`` over ``S`` columns drawn without replacement."""
        columns = self._directions(plan)
        size = columns.shape[0]
        picked = jnp.take(columns, sampling.without_replacement(key, size, count), axis=0)
        plan.add_directional(2, picked, float(c) * size / count)

    def has_dense(self) -> bool:
        """``y_2(σ v)`` is unbiased."""
        return True

    def sample_dense(self, c: Coefficient, count: int, key: Array, plan: Plan,
                     distribution: str) -> None:
        """``(1/S) Σ_s y_2(σ v_s)``."""
        sigma = self.columns(plan.argument, plan.dim).astype(plan.dtype)
        v = random_tangents(key, (count, sigma.shape[1]), distribution, plan.dtype)
        plan.add_directional(2, v @ sigma.T, float(c) / count)

    def __repr__(self) -> str:
        if callable(self.sigma):
            return f"weighted_laplacian({getattr(self.sigma, '__name__', 'sigma')})"
        return f"weighted_laplacian(sigma{tuple(getattr(self.sigma, 'shape', ()))})"


SparseTable = tuple[np.ndarray, np.ndarray]
"""``(indices, values)``, each ``(N, P, W)``: ``P`` sparse rows of width ``W`` per member."""


@dataclasses.dataclass(frozen=True)
class Pool(Term):
    """``Σ_t c_t ∂^{α_t}``: the partials of one order, sampled as one term.

    A sample draws a member with probability ``|c_t| / Σ|c|`` and weights it
    ``sign(c_t) Σ|c| / S``; each member is computed from its interpolation rows.

    Attributes:
      members: ``((partial, coefficient), ...)``, all of one order.

    """

    members: tuple[tuple[Partial, Coefficient], ...]

    @property
    def order(self) -> int:
        """The members' derivative order."""
        return self.members[0][0].order

    def size(self, dim: int, argument: Array) -> int:
        """Number of members."""
        return len(self.members)

    def exact(self, c: Coefficient, plan: Plan) -> None:
        """Every member, scaled by ``c``."""
        for term, member_c in self.members:
            term.exact(c * member_c, plan)

    def _tables(self) -> list[tuple[int, SparseTable]]:
        """Per member its interpolation rows, weights folded in, split by sign, padded."""
        order = self.order
        groups: dict[int, list[list[list[tuple[int, float]]]]] = {}
        for n, (term, c) in enumerate(self.members):
            for vector, gamma in term.interpolation_rows():
                weight = math.copysign(1.0, float(c)) * float(gamma) / math.factorial(order)
                sign, alpha = (float(v) for v in passes.fold_weight(weight, order))
                table = groups.setdefault(int(sign), [[] for _ in self.members])
                table[n].append([(i, alpha * v) for i, v in vector])
        out = []
        for sign, table in sorted(groups.items()):
            count = max(len(rows) for rows in table)
            width = max(len(row) for rows in table for row in rows)
            indices = np.zeros((len(table), count, width), np.int32)
            values = np.zeros((len(table), count, width))
            for n, rows in enumerate(table):
                for p, row in enumerate(rows):
                    for w, (i, v) in enumerate(row):
                        indices[n, p, w], values[n, p, w] = i, v
            out.append((sign, (indices, values)))
        return out

    def sample_sparse(self, c: Coefficient, count: int, key: Array, plan: Plan) -> None:
        """``S`` members drawn with replacement by ``|c_t|``, each by its interpolation rows."""
        total = sum(abs(float(member_c)) for _, member_c in self.members)
        picked = jax.random.choice(
            key, len(self.members), (count,), replace=True,
            p=jnp.asarray([abs(float(member_c)) / total for _, member_c in self.members]))
        for sign, (indices, values) in self._tables():
            width = indices.shape[-1]
            picked_indices = jnp.take(jnp.asarray(indices), picked, axis=0).reshape(-1, width)
            picked_values = jnp.take(jnp.asarray(values, plan.dtype), picked,
                                     axis=0).reshape(-1, width)
            rows = sparse.from_indices(picked_indices, picked_values, plan.dim, plan.dtype)
            plan.add_directional(self.order, rows, float(c) * sign * total / count)

    def __repr__(self) -> str:
        return " + ".join(repr(term) for term, _ in self.members)


__all__ = ["Biharmonic", "Diagonal", "Partial", "Pool", "Term", "Weighted"]
