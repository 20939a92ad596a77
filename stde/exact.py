"""Exact operators: every term as weighted collapsed jets (DESIGN §5).

* Laplacian, ``diagonal(k)``: directions ``e_1 .. e_D`` in one collapsed ``k``-jet.
* Weighted Laplacian: the columns of ``σ`` in the same collapsed 2-jet.
* Biharmonic: nested collapsed Laplacians (default), or the interpolation family
  ``Σ_i ∂_i⁴ + 2 Σ_{i<j} ∂_i²∂_j²`` in one collapsed 4-jet per sign.
* Mixed partials: per term the interpolation family (:mod:`stde.interpolation`) or the
  one-jet slot construction (:mod:`stde.slots`), whichever propagates less.

All terms of one jet order become one collapsed pass (two for even orders with weights of
both signs), after merging equal directions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp

from stde import passes, sparse
from stde.core import ARRAY_TYPES
from stde.interpolation import interpolation_coefficients
from stde.operators import Biharmonic, Diagonal, Operator, Partial, Weighted
from stde.slots import find_slots

Array = Any
BIHARMONIC_METHODS = ("nested", "interpolation")
PARTIAL_METHODS = ("auto", "interpolation", "slots")


def taylor_cost(order: int, count: int) -> int:
    """Products one nonlinear operation needs for ``count`` directions of an ``order``-jet."""
    return count * order * (order + 1) // 2


def flatten_argument(f: Callable[..., Any], args: tuple[Any, ...], argnums: int
                     ) -> tuple[Callable[[Array], Any], Array, Array]:
    """``(h, x, argument)``: ``h(x) = f(*args)`` as a function of the flattened argument ``x``."""
    if isinstance(argnums, bool) or not isinstance(argnums, int):
        raise TypeError(f"argnums must be one integer (the argument the operator acts on), "
                        f"got {argnums!r}.")
    if not -len(args) <= argnums < len(args):
        raise ValueError(f"argnums={argnums} is out of range for a call with {len(args)} "
                         f"positional arguments.")
    argnums %= len(args)
    if not isinstance(args[argnums], ARRAY_TYPES):
        raise TypeError(
            f"argument {argnums} is a {type(args[argnums]).__name__}; a differential operator "
            f"acts on one array argument. Pass the array to differentiate as its own "
            f"argument, e.g. stde.operator(lambda x, rest: f({{'x': x, **rest}}), op)(x, rest), "
            f"or flatten a pytree into one array with jax.flatten_util.ravel_pytree.")
    argument = jnp.asarray(args[argnums])
    if not jnp.issubdtype(argument.dtype, jnp.floating):
        raise TypeError(f"argument {argnums} has dtype {argument.dtype}; differential operators "
                        f"need a floating-point argument. Cast it, e.g. x.astype(jnp.float32).")
    shape = argument.shape

    def h(x: Array) -> Any:
        return f(*args[:argnums], x.reshape(shape), *args[argnums + 1:])

    return h, argument.reshape(-1), argument


def check_indices(op: Operator, dim: int, argnums: int) -> None:
    """Raises a ValueError naming the first partial index outside ``range(dim)``."""
    if not isinstance(op, Operator):
        raise TypeError(f"op must be a stde.operators.Operator (e.g. ops.laplacian()), got "
                        f"{type(op).__name__}.")
    for term, _ in op.terms:
        if isinstance(term, Partial) and term.indices and term.indices[-1] >= dim:
            raise ValueError(f"{term!r} refers to coordinate {term.indices[-1]}, but argument "
                             f"{argnums} has only {dim} flattened coordinates "
                             f"(indices 0..{dim - 1}).")


def add_partial(rows: passes.SparseRows, term: Partial, c: Fraction | float,
                method: str = "auto") -> None:
    """Adds ``c · ∂^α`` (order ≥ 1) to ``rows`` with the cheaper construction."""
    counts = term.multiplicities
    coordinates, q = tuple(counts), tuple(counts.values())
    order = term.order
    if len(q) == 1:
        rows.add(order, ((1, passes.basis(coordinates[0])),), c)
        return
    gammas = interpolation_coefficients(q)
    construction = find_slots(q) if method == "slots" else None
    if method == "auto":
        budget = taylor_cost(order, len(gammas))
        cheaper = max(k for k in range(order, budget + 1) if taylor_cost(k, 1) < budget)
        try:
            construction = find_slots(q, max_order=cheaper)
        except ValueError:  # no slot jet propagates fewer products than interpolation
            construction = None
    if construction is not None:
        row = tuple(sorted((slot, passes.basis(i)) for slot, i in zip(construction.slots,
                                                                       coordinates)))
        rows.add(construction.order, row, c * Fraction(1, construction.divisor))
        return
    for j, gamma in gammas.items():
        vector = passes.combination(coordinates, j)
        rows.add(order, ((1, vector),), c * gamma / math.factorial(order))


def add_biharmonic_interpolation(rows: passes.SparseRows, dim: int, c: Fraction | float) -> None:
    """``c · Δ² = c (Σ_i ∂_i⁴ + 2 Σ_{i<j} ∂_i²∂_j²)`` as interpolation rows of order 4."""
    for i in range(dim):
        rows.add(4, ((1, passes.basis(i)),), c)
        for j in range(i + 1, dim):
            add_partial(rows, Partial((i, i, j, j)), 2 * c, "interpolation")


def laplacian_directions(dim: int, dtype: Any, weight: Fraction | float = 1
                         ) -> list[passes.Directions]:
    """``weight · Δ`` as one collapsed 2-jet with directions ``e_1 .. e_D`` (held sparse)."""
    return passes.scaled(2, [sparse.from_indices(jnp.arange(dim), 1.0, dim, dtype)],
                         float(weight))


def _validate(method: str, allowed: tuple[str, ...], name: str) -> None:
    if method not in allowed:
        raise ValueError(f"unknown {name} {method!r}; choose one of {', '.join(allowed)}.")


def exact_value(h: Callable[[Array], Any], x: Array, argument: Array, op: Operator, *,
                biharmonic_method: str = "nested", partial_method: str = "auto"
                ) -> tuple[Any, Any]:
    """``(h(x), (op h)(x))`` for the flattened argument ``x``; see :func:`operator`."""
    dim = x.shape[0]
    rows = passes.SparseRows()
    dense: list[passes.Directions] = []
    identity: Fraction | float = 0
    nested: list[Fraction | float] = []
    for term, c in op.terms:
        if isinstance(term, Diagonal):
            for i in range(dim):
                rows.add(term.order, ((1, passes.basis(i)),), c)
        elif isinstance(term, Weighted):
            sigma = term.columns(argument, dim)
            dense.extend(passes.scaled(2, [sigma.T.astype(x.dtype)], float(c)))
        elif isinstance(term, Biharmonic):
            if biharmonic_method == "nested":
                nested.append(c)
            else:
                add_biharmonic_interpolation(rows, dim, c)
        elif term.order == 0:
            identity = identity + c
        else:
            add_partial(rows, term, c, partial_method)
    value, total = passes.evaluate(h, x, rows.directions(dim, x.dtype) + dense)
    if identity != 0:
        total = jax.tree_util.tree_map(lambda t, v: t + float(identity) * v, total, value)
    if nested:
        lap = laplacian_directions(dim, x.dtype)

        def laplacian_of_h(y: Array) -> Any:
            return passes.evaluate(h, y, lap)[1]

        weight = sum(nested[1:], nested[0])
        _, outer = passes.evaluate(laplacian_of_h, x, laplacian_directions(dim, x.dtype, weight))
        total = jax.tree_util.tree_map(jnp.add, total, outer)
    return value, total


def operator(f: Callable[..., Any], op: Operator, *, argnums: int = 0, with_value: bool = False,
             biharmonic_method: str = "nested", partial_method: str = "auto"
             ) -> Callable[..., Any]:
    """The exact ``L f`` as a function of ``f``'s arguments, by collapsed Taylor mode.

    Args:
      f: the function; its output may be any array (or pytree of arrays).
      op: a :class:`stde.operators.Operator` acting on the flattened argument ``argnums``.
      argnums: which positional argument the operator differentiates.
      with_value: return ``(f(*args), L f)`` instead of ``L f``.
      biharmonic_method: ``"nested"`` (collapsed Laplacian of a collapsed Laplacian, the
        faster one on MLPs) or ``"interpolation"`` (one collapsed 4-jet per sign).
      partial_method: for mixed partials: ``"auto"`` (fewest propagated products),
        ``"interpolation"`` or ``"slots"``.

    Returns:
      ``g(*args)`` returning ``L f`` with ``f``'s output structure. ``g`` composes with
      ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (w.r.t. anything ``f`` closes over).

    Raises:
      ValueError: unknown methods, indices out of range, ``σ`` of the wrong shape.
      TypeError: ``op`` not an operator, non-float argument, non-integer ``argnums``.

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> import stde.operators as ops
      >>> f = lambda x: jnp.sin(x).sum()
      >>> g = stde.operator(f, ops.laplacian() + 0.5 * ops.partial(0, 1))
      >>> x = jnp.array([0.1, 0.2, 0.3])
      >>> bool(jnp.allclose(g(x), -jnp.sin(x).sum()))
      True

    """
    _validate(biharmonic_method, BIHARMONIC_METHODS, "biharmonic_method")
    _validate(partial_method, PARTIAL_METHODS, "partial_method")
    if not isinstance(op, Operator):
        raise TypeError(f"op must be a stde.operators.Operator (e.g. ops.laplacian()), got "
                        f"{type(op).__name__}.")

    def g(*args: Any) -> Any:
        h, x, argument = flatten_argument(f, args, argnums)
        check_indices(op, x.shape[0], argnums)
        value, total = exact_value(h, x, argument, op, biharmonic_method=biharmonic_method,
                                   partial_method=partial_method)
        return (value, total) if with_value else total

    return g


__all__ = ["operator"]
