"""One mixed partial from one jet: the unique-partition slot construction.

See docs/design.md, "Operators and how they lower to jets".

For ``∂^q = Π_t ∂_{i_t}^{q_t}`` put ``e_{i_t}`` at distinct jet orders ("slots") ``j_t``
and zeros elsewhere. Faà di Bruno makes ``y_k`` a sum over all ``m ∈ ℕ^I`` with
``Σ_t m_t j_t = k`` of ``ν(m) ∂^m f``; when ``q`` is the only such ``m`` at
``k = Σ_t q_t j_t`` the jet isolates ``∂^q f = y_k / C(q)`` with
``C(q) = k! / Π_t (q_t! (j_t!)^{q_t})``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator


@dataclasses.dataclass(frozen=True)
class SlotConstruction:
    """Where to put each basis vector, and how to read the partial off the jet.

    Attributes:
      multiplicities: ``q``, the order of the partial in each distinct coordinate.
      slots: ``j``, the jet order at which each coordinate's basis vector is placed.
      order: ``k = Σ_t q_t j_t``, the jet order to propagate and read.
      divisor: ``C(q)``; ``∂^q f = y_k / C(q)``.

    """

    multiplicities: tuple[int, ...]
    slots: tuple[int, ...]
    order: int
    divisor: int


def solutions(slots: tuple[int, ...], total: int) -> list[tuple[int, ...]]:
    """Every ``m ∈ ℕ^I`` with ``Σ_t m_t slots_t = total``.

    Example:
      >>> solutions((1, 2), 3)
      [(1, 1), (3, 0)]

    """
    if not slots:
        return [()] if total == 0 else []
    first, rest = slots[0], slots[1:]
    found = []
    for m_first in range(total // first + 1):
        for tail in solutions(rest, total - m_first * first):
            found.append((m_first, *tail))
    return found


def count_solutions(slots: tuple[int, ...], total: int) -> int:
    """How many ``m ∈ ℕ^I`` solve ``Σ_t m_t slots_t = total`` (coin-change count, ``O(I·total)``).

    Example:
      >>> count_solutions((2, 3), 5)
      1
    """
    ways = [1] + [0] * total
    for slot in slots:
        for value in range(slot, total + 1):
            ways[value] += ways[value - slot]
    return ways[total]


def divisor(multiplicities: tuple[int, ...], slots: tuple[int, ...]) -> int:
    """``C(q) = k! / Π_t (q_t! (j_t!)^{q_t})`` with ``k = Σ_t q_t j_t``."""
    order = sum(q * j for q, j in zip(multiplicities, slots))
    denominator = 1
    for q, j in zip(multiplicities, slots):
        denominator *= math.factorial(q) * math.factorial(j) ** q
    return math.factorial(order) // denominator


def _slot_tuples(q: tuple[int, ...], remaining: int, used: tuple[int, ...]
                 ) -> Iterator[tuple[int, ...]]:
    """Distinct positive slots ``j`` (lexicographic) with ``Σ_t q_t j_t = remaining``."""
    if not q:
        if remaining == 0:
            yield used
        return
    rest = sum(q[1:])
    for slot in range(1, (remaining - rest) // q[0] + 1):
        if slot not in used:
            yield from _slot_tuples(q[1:], remaining - q[0] * slot, (*used, slot))


@functools.cache
def find_slots(multiplicities: tuple[int, ...], max_order: int = 64) -> SlotConstruction:
    """The smallest jet order whose slots isolate ``∂^q`` uniquely.

    Searches ``k = |q|, |q|+1, ..`` and, for each, distinct slot tuples in lexicographic
    order; returns the first ``(k, j)`` for which ``q`` is the only solution.

    Args:
      multiplicities: ``q``, positive integers (one per distinct coordinate).
      max_order: give up beyond this jet order.

    Returns:
      The :class:`SlotConstruction`.

    Raises:
      ValueError: for non-positive multiplicities or when nothing up to ``max_order`` works.

    Example:
      >>> c = find_slots((1, 1))
      >>> (c.order, c.slots, c.divisor)
      (5, (2, 3), 10)

    """
    q = tuple(int(x) for x in multiplicities)
    if not q or any(x < 1 for x in q):
        raise ValueError(f"multiplicities must be positive integers, got {multiplicities}.")
    if len(q) == 1:
        return SlotConstruction(q, (1,), q[0], 1)
    for order in range(sum(q), max_order + 1):
        for slots in _slot_tuples(q, order, ()):
            if count_solutions(slots, order) == 1:  # q itself is always a solution
                return SlotConstruction(q, slots, order, divisor(q, slots))
    raise ValueError(f"no slot construction for multiplicities {q} up to jet order "
                     f"{max_order}; use the interpolation construction instead.")
