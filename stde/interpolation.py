"""Interpolation coefficients of Griewank, Utke and Walther (1999), in exact arithmetic.

A mixed directional derivative of order ``K = |i|`` is a combination of pure ``K``-jets:

``⟨∂^K f, v_1^{⊗i_1} ⊗ … ⊗ v_I^{⊗i_I}⟩ = Σ_{|j|=K} (γ_{i,j} / K!) y_K(x_1 = Σ_p j_p v_p)``

with ``γ_{i,j} = Σ_{0≤m≤i, |m|>0} (-1)^{K-|m|} Π_p C(i_p, m_p) Π_p C(K m_p/|m|, j_p)
(|m|/K)^K`` (docs/design.md, "Operators and how they lower to jets"). ``C(a, n)`` is
the generalised binomial with a rational first argument; everything is computed with
:class:`fractions.Fraction`.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from fractions import Fraction


def generalized_binomial(a: Fraction | int, n: int) -> Fraction:
    """``C(a, n) = a (a-1) … (a-n+1) / n!`` for rational ``a`` and integer ``n ≥ 0``.

    Example:
      >>> from fractions import Fraction
      >>> generalized_binomial(Fraction(3, 2), 2)
      Fraction(3, 8)

    """
    if n < 0:
        raise ValueError(f"generalized_binomial needs n >= 0, got {n}.")
    numerator = Fraction(1)
    for t in range(n):
        numerator *= Fraction(a) - t
    return numerator / math.factorial(n)


def compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """All ``j ∈ ℕ^parts`` with ``|j| = total``, in reverse lexicographic order.

    Example:
      >>> list(compositions(2, 2))
      [(2, 0), (1, 1), (0, 2)]

    """
    if parts == 1:
        yield (total,)
        return
    for first in range(total, -1, -1):
        for rest in compositions(total - first, parts - 1):
            yield (first, *rest)


@functools.cache
def interpolation_coefficients(multiplicities: tuple[int, ...]) -> dict[tuple[int, ...], Fraction]:
    """The non-zero ``γ_{i,j}`` for the multi-index ``i = multiplicities``.

    Args:
      multiplicities: ``(i_1, .., i_I)``, each ``≥ 1``; ``K = Σ i_p``.

    Returns:
      ``{j: γ_{i,j}}`` over ``|j| = K`` with ``γ ≠ 0``; divide by ``K!`` to weight
      ``y_K(Σ_p j_p v_p)``.

    Example:
      >>> interpolation_coefficients((1, 1))
      {(2, 0): Fraction(-1, 4), (1, 1): Fraction(1, 1), (0, 2): Fraction(-1, 4)}

    """
    multiplicities = tuple(int(i) for i in multiplicities)
    if not multiplicities or any(i < 1 for i in multiplicities):
        raise ValueError(f"multiplicities must be positive integers, got {multiplicities}.")
    order = sum(multiplicities)
    gammas: dict[tuple[int, ...], Fraction] = {}
    for j in compositions(order, len(multiplicities)):
        gamma = Fraction(0)
        for m in itertools.product(*(range(i + 1) for i in multiplicities)):
            size = sum(m)
            if size == 0:
                continue
            term = Fraction((-1) ** (order - size)) * Fraction(size, order) ** order
            for i_p, m_p, j_p in zip(multiplicities, m, j):
                term *= math.comb(i_p, m_p) * generalized_binomial(Fraction(order * m_p, size), j_p)
            gamma += term
        if gamma:
            gammas[j] = gamma
    return gammas
