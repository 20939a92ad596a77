"""A small algebra of linear differential operators on the flattened coordinates of one argument.

An :class:`Operator` is a finite sum ``Σ c · term`` where a term is a *family*
(:func:`laplacian`, :func:`diagonal`, :func:`weighted_laplacian`, :func:`biharmonic`)
or an explicit mixed partial (:func:`partial`, :func:`from_terms`). Operators are closed
under ``+``, ``-``, unary ``-`` and multiplication by a real scalar. Indices refer to the
flattened argument (``x.ravel()``); the dimension ``D`` of a family is read off the
argument's shape when the operator is applied (:func:`stde.operator`,
:func:`stde.stochastic_operator`).

The terms are :class:`Term` subclasses (:mod:`stde.terms`); each one says how it lowers
to jets, so a new operator is one new class, e.g. ``Operator([(MyTerm(), 1.0)])`` (see
docs/design.md, "Recipe: a new operator").

Example:
  >>> import stde.operators as ops
  >>> ops.laplacian() - 2 * ops.partial(0, 1, 1)
  laplacian() - 2 * partial(0, 1, 1)

"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import Any

from stde.lowering import Coefficient, Term
from stde.terms import Biharmonic, Diagonal, Partial, Weighted

Array = Any


def _coefficient(value: Any) -> Coefficient:
    """``value`` as an exact :class:`Fraction` (ints, fractions) or a float."""
    if isinstance(value, bool | str | bytes | complex):
        raise TypeError(f"operator coefficients must be concrete real numbers, got {value!r}.")
    if not isinstance(value, numbers.Real):
        try:
            value = float(value)
        except Exception:  # noqa: BLE001 - tracers and arrays raise many kinds of errors
            raise TypeError(f"operator coefficients must be concrete real numbers, got "
                            f"{type(value).__name__}; scale sigma or the result instead.") from None
    if isinstance(value, int | Fraction):
        return Fraction(value)
    return float(value)


def _format(c: Coefficient) -> str:
    if isinstance(c, Fraction):
        return str(c.numerator) if c.denominator == 1 else f"({c})"
    return repr(c)


class Operator:
    """``Σ c_t · term_t``: a linear differential operator (see the module docstring).

    Attributes:
      terms: ``((term, coefficient), ...)`` with equal terms merged and zeros dropped.

    """

    __array_priority__ = 1000  # so that ``np.float64(2) * op`` calls ``op.__rmul__``

    def __init__(self, terms: Iterable[tuple[Term, Any]] = ()):
        merged: dict[Any, list[Any]] = {}
        for term, c in terms:
            if not isinstance(term, Term):
                raise TypeError(f"an operator term must be a stde.operators.Term, got "
                                f"{type(term).__name__}.")
            if term in merged:
                merged[term][1] = merged[term][1] + _coefficient(c)
            else:
                merged[term] = [term, _coefficient(c)]
        self.terms: tuple[tuple[Term, Coefficient], ...] = tuple(
            (t, c) for t, c in merged.values() if c != 0)

    def __add__(self, other: Operator) -> Operator:
        if not isinstance(other, Operator):
            return NotImplemented
        return Operator(self.terms + other.terms)

    def __sub__(self, other: Operator) -> Operator:
        if not isinstance(other, Operator):
            return NotImplemented
        return self + (-other)

    def __neg__(self) -> Operator:
        return self * -1

    def __pos__(self) -> Operator:
        return self

    def __mul__(self, scalar: Any) -> Operator:
        if isinstance(scalar, Operator):
            raise TypeError("operators can be multiplied by scalars only; composing two "
                            "operators is not supported (write the product as partials).")
        c = _coefficient(scalar)
        return Operator((t, k * c) for t, k in self.terms)

    __rmul__ = __mul__

    def __truediv__(self, scalar: Any) -> Operator:
        c = _coefficient(scalar)
        return self * (1 / c)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Operator):
            return NotImplemented
        return Operator(self.terms + (-other).terms).terms == ()

    __hash__ = None  # type: ignore[assignment]

    @property
    def order(self) -> int:
        """The highest derivative order of any term (0 for the zero operator)."""
        return max((t.order for t, _ in self.terms), default=0)

    def check(self, dim: int, argnums: int) -> None:
        """Raises a ValueError naming the first term that does not fit ``dim`` coordinates."""
        for term, _ in self.terms:
            term.check(dim, argnums)

    def __repr__(self) -> str:
        if not self.terms:
            return "Operator(0)"
        parts = []
        for n, (term, c) in enumerate(self.terms):
            sign = "-" if c < 0 else "+"
            magnitude = -c if c < 0 else c
            text = repr(term) if magnitude == 1 else f"{_format(magnitude)} * {term!r}"
            if n == 0:
                parts.append(("-" if sign == "-" else "") + text)
            else:
                parts.append(f" {sign} {text}")
        return "".join(parts)


def require_operator(op: Any) -> Operator:
    """``op`` itself if it is an :class:`Operator`, else a TypeError saying what is expected.

    Example:
      >>> require_operator(laplacian())
      laplacian()

    """
    if not isinstance(op, Operator):
        raise TypeError(f"op must be a stde.operators.Operator (e.g. ops.laplacian()), got "
                        f"{type(op).__name__}.")
    return op


def laplacian() -> Operator:
    """The Laplacian ``Δ = Σ_i ∂_i²`` over every flattened coordinate.

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> g = stde.operator(lambda x: (x ** 3).sum(), stde.operators.laplacian())
      >>> float(g(jnp.array([1.0, 2.0])))
      18.0

    """
    return Operator([(Diagonal(2), 1)])


def diagonal(order: int) -> Operator:
    """``Σ_i ∂_i^order`` (``diagonal(2)`` is the Laplacian).

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> g = stde.operator(lambda x: (x ** 4).sum(), stde.operators.diagonal(3))
      >>> float(g(jnp.array([1.0, 2.0])))
      72.0

    """
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order < 1:
        raise ValueError(f"diagonal(order) needs an integer order >= 1, got {order!r}.")
    return Operator([(Diagonal(int(order)), 1)])


def biharmonic() -> Operator:
    """The biharmonic ``Δ² = Σ_{i,j} ∂_i² ∂_j²``.

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> g = stde.operator(lambda x: (x ** 2).sum() ** 2, stde.operators.biharmonic())
      >>> float(g(jnp.array([1.0, 2.0, 3.0])))
      120.0

    """
    return Operator([(Biharmonic(), 1)])


def weighted_laplacian(sigma: Array | Callable[[Array], Array]) -> Operator:
    """``tr(σσᵀ ∇²) = Σ_r σ_rᵀ ∇² σ_r`` with ``σ`` of shape ``(D, R)`` or a callable ``x -> σ``.

    A callable receives the argument (not flattened) and is evaluated at the point.

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> sigma = jnp.array([[1.0], [1.0]])  # σσᵀ = all ones: Σ_ij ∂_i ∂_j
      >>> g = stde.operator(lambda x: x[0] * x[1], stde.operators.weighted_laplacian(sigma))
      >>> float(g(jnp.array([0.5, 2.0])))
      2.0

    """
    return Operator([(Weighted(sigma), 1)])


def _indices(indices: Iterable[Any]) -> tuple[int, ...]:
    out = []
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0:
            raise ValueError(f"partial derivative indices must be non-negative integers "
                             f"(positions in the flattened argument); got {i!r}.")
        out.append(int(i))
    return tuple(sorted(out))


def partial(*indices: int) -> Operator:
    """The mixed partial ``∂^n / ∂x_{i_1} … ∂x_{i_n}``; ``partial(0, 0, 3)`` is ``∂³/∂x0²∂x3``.

    ``partial()`` with no index is the identity.

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> g = stde.operator(lambda x: x[0] ** 2 * x[1], stde.operators.partial(0, 0, 1))
      >>> round(float(g(jnp.array([3.0, 5.0]))), 4)
      2.0

    """
    return Operator([(Partial(_indices(indices)), 1)])


def from_terms(terms: Mapping[tuple[int, ...], Any]) -> Operator:
    """``Σ c_α ∂^α`` from ``{indices: coefficient}``, e.g. ``{(0, 0): 1.0, (0, 1, 1): -2.0}``.

    Example:
      >>> import stde.operators as ops
      >>> ops.from_terms({(0, 0): 1.0, (0, 1, 1): -2.0})
      partial(0, 0) - 2.0 * partial(0, 1, 1)

    """
    if not isinstance(terms, Mapping):
        raise TypeError(f"from_terms needs a mapping {{indices: coefficient}}, got "
                        f"{type(terms).__name__}.")
    return Operator([(Partial(_indices(k if isinstance(k, tuple | list) else (k,))), c)
                     for k, c in terms.items()])


__all__ = ["Biharmonic", "Diagonal", "Operator", "Partial", "Term", "Weighted", "biharmonic",
           "diagonal", "from_terms", "laplacian", "partial", "weighted_laplacian"]
