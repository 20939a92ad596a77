"""Sampling without replacement in ``O(S²)`` work, independent of the population size.

``jax.random.choice(key, n, (S,), replace=False)`` permutes all ``n`` items; for the
coordinates of a 10⁶-dimensional input (or the ``D²`` ordered pairs of the biharmonic,
which also overflow ``int32`` for ``D ≥ 46341``) that dominates a sparse STDE step.
Floyd's algorithm draws a uniformly random ``S``-subset with ``S`` uniform draws and ``S``
membership tests against the ``≤ S`` items chosen so far:

    for j in n-S .. n-1:  t ~ U{0..j};  add j if t was already chosen, else t

Every subset has probability ``1 / C(n, S)``, the same as a uniformly random ordered
sample without replacement (the order within the subset differs, which no unbiased
estimate of a sum depends on).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

Array = Any
INT32_LIMIT = 2 ** 31 - 1


def without_replacement(key: Array, n: int, count: int) -> Array:
    """``count`` distinct integers drawn uniformly from ``range(n)`` (Floyd's algorithm).

    Args:
      key: a PRNG key.
      n: the population size (``< 2³¹``).
      count: how many to draw, ``≤ n``.

    Returns:
      ``(count,)`` ``int32`` array of distinct items.

    Raises:
      ValueError: ``count > n`` or ``n`` too large for ``int32``.

    Example:
      >>> import jax
      >>> s = without_replacement(jax.random.key(0), 1_000_000, 4)
      >>> s.shape, len(set(s.tolist()))
      ((4,), 4)

    """
    if not 0 <= count <= n:
        raise ValueError(f"cannot draw {count} distinct items from {n}.")
    if n > INT32_LIMIT:
        raise ValueError(f"population {n} does not fit int32; use without_replacement_grid.")
    if count == 0:
        return jnp.zeros((0,), jnp.int32)

    def body(s: Array, chosen: Array) -> Array:
        j = n - count + s
        t = jax.random.randint(jax.random.fold_in(key, s), (), 0, j + 1, jnp.int32)
        return chosen.at[s].set(jnp.where(jnp.any(chosen == t), j, t))

    return lax.fori_loop(0, count, body, jnp.full((count,), -1, jnp.int32))


def without_replacement_grid(key: Array, rows: int, columns: int, count: int
                             ) -> tuple[Array, Array]:
    """``count`` distinct cells of a ``rows × columns`` grid, uniformly (Floyd's algorithm).

    Cells are ordered row-major, but no flat index is ever formed, so any grid whose
    sides fit ``int32`` works (the ``D²`` ordered pairs of ``D = 10⁶`` coordinates). The
    uniform draw on the first ``j + 1`` cells is a uniform cell of the whole grid,
    redrawn while it lies beyond cell ``j`` (rarely: ``j ≥ rows·columns - count``).

    Returns:
      ``(row, column)``, two ``(count,)`` ``int32`` arrays.

    Example:
      >>> import jax
      >>> r, c = without_replacement_grid(jax.random.key(0), 100_000, 100_000, 3)
      >>> len(set(zip(r.tolist(), c.tolist())))
      3

    """
    if not 0 <= count <= rows * columns:
        raise ValueError(f"cannot draw {count} distinct cells from {rows}×{columns}.")
    if max(rows, columns) > INT32_LIMIT or count > INT32_LIMIT:
        raise ValueError(f"grid sides {rows}×{columns} must fit int32.")
    if rows * columns <= INT32_LIMIT or count == 0:
        flat = without_replacement(key, min(rows * columns, INT32_LIMIT), count)
        return flat // columns, flat % columns

    def body(s: Array, chosen: tuple[Array, Array]) -> tuple[Array, Array]:
        # j = rows·columns - (count - s) as (j_row, j_column), without overflow.
        m = count - s
        back = (m + columns - 1) // columns
        j_row, j_column = rows - back, back * columns - m

        def draw(state: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
            attempt, _, _ = state
            k_row, k_column = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, s),
                                                                  attempt))
            return (attempt + 1, jax.random.randint(k_row, (), 0, rows, jnp.int32),
                    jax.random.randint(k_column, (), 0, columns, jnp.int32))

        def beyond(state: tuple[Array, Array, Array]) -> Array:
            _, r, c = state
            return (r > j_row) | ((r == j_row) & (c > j_column))

        _, r, c = lax.while_loop(beyond, draw, draw((jnp.int32(0), jnp.int32(0), jnp.int32(0))))
        taken = jnp.any((chosen[0] == r) & (chosen[1] == c))
        return (chosen[0].at[s].set(jnp.where(taken, j_row, r)),
                chosen[1].at[s].set(jnp.where(taken, j_column, c)))

    empty = jnp.full((count,), -1, jnp.int32)
    return lax.fori_loop(0, count, body, (empty, empty))


__all__ = ["without_replacement", "without_replacement_grid"]
