"""Unbiased stochastic operators (STDE, Shi et al. 2024), every sample in one collapsed pass.

The operator is split into *components* that are sampled separately: each family term
(Laplacian, ``diagonal(k)``, weighted Laplacian, biharmonic) is one component, and the
explicit partials of one order form a pool. First-order and identity terms are cheap and
always exact. ``n_samples`` is shared out over the components (at least one each, then in
proportion to their number of members), and each component is estimated by

* ``"sparse"``: members drawn without replacement, rescaled by ``members / samples``
  (pools: terms drawn with probability ``|c_t| / Σ|c|`` and weighted ``sign(c_t) Σ|c| / S``),
  each member computed from basis-vector tangents. With at least as many samples as
  members the component is exact. Members are drawn by Floyd's algorithm
  (:mod:`stde.sampling`, ``O(S²)`` whatever ``D``; biharmonic pairs as row/column cells)
  and the tangents are held sparse (:class:`stde.sparse.SparseCoefficient`), so a
  sample costs what its few coordinates touch, not ``D``.
* ``"dense"``: Rademacher or normal tangents spanning all coordinates: ``y_2(v)`` for the
  Laplacian, ``y_2(σ v)`` for the weighted Laplacian, ``y_4(v) / 3`` with normal ``v``
  for the biharmonic. Other terms have no unbiased dense estimator.
* ``"auto"``: ``"sparse"`` where it is exact (enough samples), else ``"dense"`` where it
  exists (same cost per sample as sparse for second order, a fifth of it for the
  biharmonic), else ``"sparse"``.

All samples of one jet order go through one collapsed pass (two for even orders when
weights of both signs occur).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from stde import passes, sampling, sparse
from stde.exact import add_biharmonic_interpolation, add_partial, check_indices, flatten_argument
from stde.interpolation import interpolation_coefficients
from stde.operators import Biharmonic, Diagonal, Operator, Partial, Weighted

Array = Any
METHODS = ("auto", "sparse", "dense")
DISTRIBUTIONS = ("rademacher", "normal")


@dataclasses.dataclass
class Component:
    """One separately sampled part of the operator.

    Attributes:
      terms: ``[(term, coefficient)]``: one family term, or the partials of one pool.
      order: the jet order its samples propagate.
      size: the number of members (``D`` for diagonals, ``R`` for ``σ``, ``D²`` for the
        biharmonic, the number of terms for a pool).

    """

    terms: list[tuple[Any, Fraction | float]]
    order: int
    size: int

    @property
    def has_dense(self) -> bool:
        """Whether an unbiased dense (random tangent) estimator exists."""
        term = self.terms[0][0]
        return isinstance(term, Weighted | Biharmonic) or (
            isinstance(term, Diagonal) and term.order == 2)

    def __repr__(self) -> str:
        return " + ".join(repr(t) for t, _ in self.terms)


def split(op: Operator, dim: int, argument: Array) -> tuple[passes.SparseRows, list[Component]]:
    """The exact first-order/identity rows (order 0 is stored at order 0) and the components."""
    linear = passes.SparseRows()
    components: list[Component] = []
    pools: dict[int, Component] = {}
    for term, c in op.terms:
        if isinstance(term, Diagonal) and term.order == 1:
            for i in range(dim):
                linear.add(1, ((1, passes.basis(i)),), c)
        elif isinstance(term, Partial) and term.order <= 1:
            if term.order == 0:
                linear.rows.setdefault(0, {})[()] = linear.rows.get(0, {}).get((), 0) + c
            else:
                linear.add(1, ((1, passes.basis(term.indices[0])),), c)
        elif isinstance(term, Partial):
            pool = pools.get(term.order)
            if pool is None:
                pool = pools[term.order] = Component([], term.order, 0)
                components.append(pool)
            pool.terms.append((term, c))
            pool.size += 1
        elif isinstance(term, Weighted):
            components.append(Component([(term, c)], 2, term.size(dim, argument)))
        else:
            components.append(Component([(term, c)], term.order, term.size(dim)))
    return linear, components


def allocate(components: list[Component], n_samples: int, capped: list[bool]) -> list[int]:
    """Samples per component: one each, then in proportion to ``size`` (capped ones at ``size``).

    Raises:
      ValueError: fewer samples than components.

    """
    if n_samples < len(components):
        raise ValueError(
            f"n_samples={n_samples} is smaller than the number of separately sampled parts "
            f"of the operator ({len(components)}: {', '.join(map(repr, components))}); pass "
            f"n_samples >= {len(components)}.")
    counts = [1] * len(components)
    for _ in range(n_samples - len(components)):
        eligible = [i for i, c in enumerate(components) if not capped[i] or counts[i] < c.size]
        if not eligible:
            break
        best = max(eligible, key=lambda i: components[i].size / counts[i])
        counts[best] += 1
    return counts


def is_random_key(key: Any) -> bool:
    """Whether ``key`` is a JAX random key: typed (``jax.random.key``) or a raw ``uint32[2]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> is_random_key(jax.random.key(0)), is_random_key(jax.random.PRNGKey(0))
      (True, True)
      >>> is_random_key(jnp.ones(2))
      False

    """
    dtype = getattr(key, "dtype", None)
    if dtype is None:
        return False
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return True
    return dtype == jnp.uint32 and np.ndim(key) >= 1 and np.shape(key)[-1] == 2


def _tangents(key: Array, shape: tuple[int, ...], distribution: str, dtype: Any) -> Array:
    if distribution == "normal":
        return jax.random.normal(key, shape, dtype)
    return jax.random.rademacher(key, shape, dtype)


def _basis(indices: Array, dim: int, dtype: Any) -> sparse.SparseCoefficient:
    """The basis vectors ``e_i`` for ``i`` in ``indices``, held sparse."""
    return sparse.from_indices(indices, 1.0, dim, dtype)


def _exact_rows(component: Component, dim: int, dtype: Any) -> list[passes.Directions]:
    rows = passes.SparseRows()
    for term, c in component.terms:
        if isinstance(term, Diagonal):
            for i in range(dim):
                rows.add(term.order, ((1, passes.basis(i)),), c)
        elif isinstance(term, Biharmonic):
            add_biharmonic_interpolation(rows, dim, c)
        else:
            add_partial(rows, term, c, "interpolation")
    return rows.directions(dim, dtype)


SparseTable = tuple[np.ndarray, np.ndarray]
"""``(indices, values)``, each ``(N, P, W)``: ``P`` sparse rows of width ``W`` per term."""


def _pool_tables(component: Component) -> tuple[list[tuple[int, SparseTable]], float]:
    """Per-term interpolation rows, pre-scaled, split by sign, padded: ``[(sign, table)]``."""
    order = component.order
    groups: dict[int, list[list[list[tuple[int, float]]]]] = {}
    total = sum(abs(float(c)) for _, c in component.terms)
    for n, (term, c) in enumerate(component.terms):
        counts = term.multiplicities
        coordinates, q = tuple(counts), tuple(counts.values())
        for j, gamma in interpolation_coefficients(q).items():
            weight = math.copysign(1.0, float(c)) * float(gamma) / math.factorial(order)
            sign = 1 if order % 2 == 1 or weight > 0 else -1
            alpha = abs(weight) ** (1.0 / order) * (math.copysign(1.0, weight)
                                                    if order % 2 == 1 else 1.0)
            row = [(i, alpha * v) for i, v in passes.combination(coordinates, j)]
            table = groups.setdefault(sign, [[] for _ in component.terms])
            table[n].append(row)
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
    return out, total


def _sparse(component: Component, count: int, key: Array, dim: int, argument: Array,
            dtype: Any) -> list[passes.Directions]:
    """Sparse estimator (exact when ``count >= size``)."""
    term, c = component.terms[0]
    size, order = component.size, component.order
    if count >= size and not isinstance(term, Weighted):
        return _exact_rows(component, dim, dtype)
    if isinstance(term, Diagonal):
        picked = _basis(sampling.without_replacement(key, dim, count), dim, dtype)
        return passes.scaled(order, [picked] + [None] * (order - 2), float(c) * dim / count)
    if isinstance(term, Weighted):
        columns = term.columns(argument, dim).T.astype(dtype)
        if count >= size:
            return passes.scaled(2, [columns], float(c))
        picked = jnp.take(columns, sampling.without_replacement(key, size, count), axis=0)
        return passes.scaled(2, [picked], float(c) * size / count)
    if isinstance(term, Biharmonic):
        first, second = sampling.without_replacement_grid(key, dim, dim, count)
        indices = jnp.stack([first, second], axis=1)
        same = (first == second)[:, None]
        out = []
        for (a, b), gamma in interpolation_coefficients((2, 2)).items():
            weight = float(c) * float(gamma) / 24 * size / count
            values = jnp.where(same, jnp.asarray([a + b, 0], dtype), jnp.asarray([a, b], dtype))
            rows = sparse.from_indices(indices, values, dim, dtype)
            out.extend(passes.scaled(4, [rows, None, None], weight))
        return out
    tables, total = _pool_tables(component)
    picked = jax.random.choice(key, size, (count,), replace=True,
                               p=jnp.asarray([abs(float(c)) / total for _, c in component.terms]))
    out = []
    for sign, (indices, values) in tables:
        width = indices.shape[-1]
        picked_indices = jnp.take(jnp.asarray(indices), picked, axis=0).reshape(-1, width)
        picked_values = jnp.take(jnp.asarray(values, dtype), picked, axis=0).reshape(-1, width)
        rows = sparse.from_indices(picked_indices, picked_values, dim, dtype)
        out.extend(passes.scaled(order, [rows] + [None] * (order - 2), sign * total / count))
    return out


def _dense(component: Component, count: int, key: Array, dim: int, argument: Array,
           distribution: str, dtype: Any) -> list[passes.Directions]:
    """Dense estimator with tangents spanning every coordinate."""
    term, c = component.terms[0]
    if isinstance(term, Diagonal):
        return passes.scaled(2, [_tangents(key, (count, dim), distribution, dtype)],
                             float(c) / count)
    if isinstance(term, Weighted):
        sigma = term.columns(argument, dim).astype(dtype)
        v = _tangents(key, (count, sigma.shape[1]), distribution, dtype)
        return passes.scaled(2, [v @ sigma.T], float(c) / count)
    v = jax.random.normal(key, (count, dim), dtype)  # E[v⊗4] has 3 pairings; Rademacher's is biased
    return passes.scaled(4, [v, None, None], float(c) / (3 * count))


def stochastic_operator(f: Callable[..., Any], op: Operator, n_samples: int, *,
                        argnums: int = 0, method: str = "auto",
                        distribution: str = "rademacher", with_value: bool = False
                        ) -> Callable[..., Any]:
    """An unbiased estimate of ``L f`` from ``n_samples`` random jets in collapsed passes.

    Args:
      f: the function; its output may be any array (or pytree of arrays).
      op: a :class:`stde.operators.Operator` acting on the flattened argument ``argnums``.
      n_samples: the total number of sampled jets, shared over the operator's
        components (see the module docstring).
      argnums: which positional argument the operator differentiates.
      method: ``"sparse"``, ``"dense"`` or ``"auto"`` (module docstring).
      distribution: dense tangents for second-order terms: ``"rademacher"`` or
        ``"normal"``. The biharmonic's dense estimator always uses normal tangents.
      with_value: return ``(f(*args), estimate)``.

    Returns:
      ``g(*args, key)``; vmap it over points with a shared key or with keys split by
      the caller. Works under ``jit`` and ``grad``.

    Raises:
      ValueError: ``n_samples < 1`` or fewer than the components, unknown method or
        distribution, ``method="dense"`` for terms without a dense estimator, indices
        out of range.
      TypeError: ``op`` not an operator, non-integer ``n_samples``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import stde
      >>> import stde.operators as ops
      >>> f = lambda x: (x ** 2).sum()
      >>> g = stde.stochastic_operator(f, ops.laplacian(), 2)
      >>> round(float(g(jnp.ones(4), jax.random.key(0))), 4)
      8.0

    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer):
        raise TypeError(f"n_samples must be an integer >= 1, got {n_samples!r}.")
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; choose one of "
                         f"{', '.join(DISTRIBUTIONS)}.")
    if not isinstance(op, Operator):
        raise TypeError(f"op must be a stde.operators.Operator (e.g. ops.laplacian()), got "
                        f"{type(op).__name__}.")

    def g(*args_and_key: Any, key: Array | None = None) -> Any:
        args = list(args_and_key)
        if key is None and args and is_random_key(args[-1]):
            key = args.pop()
        if key is None or not is_random_key(key):
            raise TypeError(
                "g(*args, key): the random key is missing (or is not a key): call "
                "g(x, jax.random.key(0)) or g(x, key=jax.random.key(0)); split keys "
                "(jax.random.split) to get fresh samples per call.")
        h, x, argument = flatten_argument(f, tuple(args), argnums)
        dim = x.shape[0]
        check_indices(op, dim, argnums)
        linear, components = split(op, dim, argument)
        if method == "dense":
            for component in components:
                if not component.has_dense:
                    raise ValueError(
                        f"no unbiased dense estimator exists for {component!r} (random "
                        f"tangents mix in other partials); use method='sparse' or 'auto'.")
        capped = [method != "dense" or not c.has_dense for c in components]
        counts = allocate(components, int(n_samples), capped) if components else []
        keys = jax.random.split(key, max(len(components), 1))
        directions: list[passes.Directions] = []
        identity = linear.rows.pop(0, {}).get((), 0)
        directions.extend(linear.directions(dim, x.dtype))
        for n, (component, count) in enumerate(zip(components, counts)):
            dense = component.has_dense and (
                method == "dense" or (method == "auto" and count < component.size))
            if dense:
                directions.extend(_dense(component, count, keys[n], dim, argument,
                                         distribution, x.dtype))
            else:
                directions.extend(_sparse(component, count, keys[n], dim, argument, x.dtype))
        value, total = passes.evaluate(h, x, directions)
        if identity != 0:
            total = jax.tree_util.tree_map(lambda t, v: t + float(identity) * v, total, value)
        return (value, total) if with_value else total

    return g


__all__ = ["stochastic_operator"]
