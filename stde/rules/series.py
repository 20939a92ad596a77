"""Truncated Taylor arithmetic in the collapsed layout, shared by every rule family.

A *series* is a list indexed by the coefficient order ``k = 0 .. K``:

* index ``0`` is the primal (shape ``S``);
* indices ``1 .. K-1`` carry a leading direction axis (shape ``(R, *S)``);
* index ``K`` is the sum over directions of the top coefficient (shape ``S``);
* any entry may be ``None``, a symbolic zero.

Coefficients are derivative-scaled (``x(t) = Σ_k x_k t^k / k!``) as in
``jax.experimental.jet``, so the recurrences below carry binomial weights. Every
recurrence is a sum of products ``w · a_j · b_{k-j}`` (:func:`convolve`); at the top
order a product of two per-direction factors is summed over directions, and a product
with a primal factor applies to the summed top directly. This is the *linearity of the
top coefficient* (docs/design.md, "Conventions"), and it makes every rule built here
collapsed.

A lower coefficient may also be a :class:`stde.sparse.SparseCoefficient`. The
coefficient arithmetic here (:func:`multiply`, :func:`add`, :func:`sub`,
:func:`times_number`, :func:`sum_directions`) is the plug point: it is written once for
arrays and once, in :mod:`stde.sparse`, for sparse coefficients, so every recurrence
built on it keeps sparse coefficients sparse.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from math import comb, factorial, prod
from typing import Any

import jax.numpy as jnp
import numpy as np

from stde import sparse
from stde.core import Array, Coefficient, sharded_directions

Series = list[Coefficient]
Product = Callable[[Array, Array, bool, bool], Array]
"""``product(u, v, u_has_directions, v_has_directions)``: a bilinear map of two factors."""


def has_directions(k: int, order: int) -> bool:
    """Whether coefficient ``k`` of an order-``order`` series carries the ``R`` axis."""
    return 0 < k < order


def lift(u: Array, directions: bool, ndim: int) -> Array:
    """Inserts unit axes after the direction axis so ``u`` broadcasts at rank ``ndim``."""
    if not directions or u.ndim - 1 >= ndim:
        return u
    return u.reshape(u.shape[:1] + (1,) * (ndim - u.ndim + 1) + u.shape[1:])


def align(u: Array, directions: bool, ndim: int) -> Array:
    """``u`` at rank ``ndim + 1`` with its direction axis (a unit one if it has none) first.

    Every axis is explicit, so products of aligned factors never rely on NumPy's rank
    promotion (JAX's ``jax_numpy_rank_promotion="raise"`` refuses it). A scalar stays a
    scalar: scalars broadcast in every mode.

    Example:
      >>> import jax.numpy as jnp
      >>> align(jnp.ones((2, 3)), False, 2).shape, align(jnp.ones((4,)), True, 2).shape
      ((1, 2, 3), (4, 1, 1))

    """
    if directions:
        return lift(u, True, ndim)
    if np.ndim(u) == 0:
        return u
    return u.reshape((1,) * (ndim + 1 - u.ndim) + u.shape)


def multiply(u: Array, v: Array, u_directions: bool, v_directions: bool) -> Array:
    """Elementwise product, broadcasting the primal axes explicitly (no rank promotion).

    A sparse lower coefficient stays sparse in the product (its entries read the other
    factor); it is densified only when the other factor broadcasts it to a larger shape
    that holding it sparse would not make cheaper.
    """
    if sparse.is_sparse(u) or sparse.is_sparse(v):
        return _multiply_sparse(u, v, u_directions, v_directions)
    ndim = max(np.ndim(u) - u_directions, np.ndim(v) - v_directions)
    if u_directions == v_directions:
        return lift(u, u_directions, ndim) * lift(v, v_directions, ndim)
    return align(u, u_directions, ndim) * align(v, v_directions, ndim)


def _primal_shape(u: Any, directions: bool) -> tuple[int, ...]:
    if sparse.is_sparse(u):
        return u.primal_shape
    return tuple(np.shape(u)[1:] if directions else np.shape(u))


def _multiply_sparse(u: Any, v: Any, u_directions: bool, v_directions: bool) -> Any:
    """:func:`multiply` with a sparse factor (a sparse factor always has directions)."""
    shape = np.broadcast_shapes(_primal_shape(u, u_directions), _primal_shape(v, v_directions))
    factors = []
    for c in (u, v):
        if sparse.is_sparse(c):
            c = sparse.broadcast_to(c, shape) if c.primal_shape != shape else c
            if c is None:
                return multiply(sparse.densify(u), sparse.densify(v), u_directions, v_directions)
        factors.append(c)
    u, v = factors
    if not sparse.is_sparse(u):
        u, v, u_directions, v_directions = v, u, v_directions, u_directions
    if not v_directions:
        return sparse.times_array(u, v)
    if not sparse.is_sparse(v) and _primal_shape(v, True) != shape:
        v = jnp.broadcast_to(lift(v, True, len(shape)), (v.shape[0], *shape))
    return sparse.times_lower(u, v)


def add(u: Coefficient, v: Coefficient) -> Coefficient:
    """``u + v`` where ``None`` is zero (sparse coefficients merge their entries)."""
    if u is None:
        return v
    if v is None:
        return u
    if sparse.is_sparse(u) or sparse.is_sparse(v):
        return sparse.plus(u, v)
    return u + v


def sub(u: Coefficient, v: Coefficient) -> Coefficient:
    """``u - v`` where ``None`` is zero."""
    if v is None:
        return u
    if u is None:
        return times_number(v, -1)
    if sparse.is_sparse(u) or sparse.is_sparse(v):
        return sparse.plus(u, v, -1)
    return u - v


def times_number(c: Coefficient, weight: Any) -> Coefficient:
    """``weight · c`` for a number (or scalar) ``weight``; multiplying by 1 is skipped."""
    if c is None or (isinstance(weight, int | float) and weight == 1):
        return c
    return sparse.scale(c, weight) if sparse.is_sparse(c) else c * weight


def scale(coefficient: Coefficient, factor: Array, k: int, order: int) -> Coefficient:
    """Coefficient ``k`` times a direction-free ``factor`` (e.g. a primal)."""
    if coefficient is None:
        return None
    return multiply(coefficient, factor, has_directions(k, order), False)


def convolve(
    a: Sequence[Coefficient],
    b: Sequence[Coefficient],
    k: int,
    order: int,
    terms: Iterable[tuple[int, int | float]],
    product: Product = multiply,
) -> Coefficient:
    """``Σ_{(j, w) ∈ terms} w · a_j · b_{k-j}``, collapsed when ``k`` is the top order.

    Args:
      a: first factor's series in the collapsed layout (long enough for the indices used).
      b: second factor's series, likewise.
      k: the coefficient being computed.
      order: ``K``; at ``k == K`` products of two per-direction factors are summed
        over directions and the result has no direction axis.
      terms: pairs ``(j, weight)``.
      product: the bilinear map (elementwise by default).

    Returns:
      The coefficient, or ``None`` when every term is a symbolic zero.

    """
    total: Coefficient = None
    summands: list[tuple[Array, int | float]] = []  # per-direction top terms, summed once
    for j, weight in terms:
        u, v = a[j], b[k - j]
        if u is None or v is None:
            continue
        u_dir, v_dir = has_directions(j, order), has_directions(k - j, order)
        # A weight goes where it is cheapest: onto a direction-free factor, or after
        # the sum over directions.
        if weight != 1 and not u_dir:
            u, weight = u * weight, 1
        elif weight != 1 and not v_dir:
            v, weight = v * weight, 1
        term = product(u, v, u_dir, v_dir)
        if k == order and u_dir and v_dir:
            summands.append((term, weight))
        else:
            total = add(total, times_number(term, weight))
    return add(total, sum_over_directions(summands)) if summands else total


PAIRWISE_DIRECTIONS = 8
"""Up to this many directions, :func:`sum_directions` adds halves instead of reducing."""


def sum_directions(x: Array) -> Array:
    """``Σ_r x_r`` over the leading (direction) axis.

    Up to :data:`PAIRWISE_DIRECTIONS` directions the sum is pairwise: the first half of
    the rows plus the second, repeated (an odd last row goes onto the first). These are
    elementwise adds that XLA fuses with their neighbours. A short reduction inside a
    fused graph is slow on XLA's CPU backend: with one, the exact biharmonic (collapsed
    Laplacian of a collapsed Laplacian, ``R = 5``) ran 2.9× slower under jaxlib 0.10's
    default YNNPACK fusions (80 ms against 27 ms at batch 64), and the exact Laplacian at
    ``D ≤ 16`` 10–35% slower. With more directions one reduction is kept: there XLA
    compiles a whole exact Laplacian into one fused kernel with almost no temporaries.
    Directions sharded over an explicit mesh are reduced too (a slice of a sharded axis
    has no sharding of its own): each device sums its directions, then one all-reduce.

    Example:
      >>> import jax.numpy as jnp
      >>> sum_directions(jnp.arange(10.0).reshape(5, 2)).tolist()
      [20.0, 25.0]

    A sparse coefficient's directions are scatter-added (:func:`stde.sparse.scatter_sum`).
    """
    if sparse.is_sparse(x):
        return sparse.scatter_sum(x)
    if x.shape[0] > PAIRWISE_DIRECTIONS or sharded_directions(x):
        return x.sum(0)
    while x.shape[0] > 1:
        half = x.shape[0] // 2
        pairs = x[:half] + x[half:2 * half]
        x = pairs.at[0].add(x[-1]) if x.shape[0] % 2 else pairs
    return x[0]


def sum_over_directions(terms: Sequence[tuple[Array, Any]]) -> Array:
    """``Σ_r Σ_i c_i t_{i,r}`` with one sum over the direction axis (:func:`sum_directions`).

    A factor ``c`` common to every term (a single term, or equal Python numbers) is
    applied after the sum, to the direction-free result; otherwise each term is
    scaled before it. A factor may be a number or a direction-free array.
    """
    factors = [c for _, c in terms]
    first = factors[0]
    if len(terms) == 1 or all(isinstance(c, int | float) and c == first for c in factors):
        summed = sum_directions(functools.reduce(add, (t for t, _ in terms)))
        return summed if isinstance(first, int | float) and first == 1 else first * summed
    return sum_directions(functools.reduce(add, (
        times_number(t, c) if isinstance(c, int | float) else multiply(t, c, True, False)
        for t, c in terms)))


def leibniz(a: Sequence[Coefficient], b: Sequence[Coefficient], k: int, order: int,
            product: Product = multiply) -> Coefficient:
    """Coefficient ``k`` of ``a·b``: ``Σ_{j=0..k} C(k, j) a_j b_{k-j}``."""
    return convolve(a, b, k, order, ((j, comb(k, j)) for j in range(k + 1)), product)


def square(a: Sequence[Coefficient], k: int, order: int) -> Coefficient:
    """Coefficient ``k`` of ``a²`` with each symmetric pair of terms computed once."""
    terms = [(j, 2 * comb(k, j)) for j in range((k + 1) // 2)]
    if k % 2 == 0:
        terms.append((k // 2, comb(k, k // 2)))
    return convolve(a, a, k, order, terms)


def quotient(a: Sequence[Coefficient], b: Sequence[Coefficient], order: int,
             last: int | None = None) -> Series:
    """Series of ``a / b`` (elementwise): ``z_k = (a_k - Σ_{j≥1} C(k,j) b_j z_{k-j}) / b_0``.

    Coefficients ``0 .. last`` (default ``order``) of the order-``order`` layout.
    """
    inverse = 1 / b[0]
    z: Series = [a[0] * inverse]
    for k in range(1, (order if last is None else last) + 1):
        rest = convolve(b, z, k, order, ((j, comb(k, j)) for j in range(1, k + 1)))
        z.append(scale(sub(a[k], rest), inverse, k, order))
    return z


def ode(x: Sequence[Coefficient], y0: Array, slope: Callable[[Series, int], Coefficient],
        order: int) -> Series:
    """Series of ``y`` with ``y' = a · x'`` and ``y(0) = y0``.

    ``y_k = Σ_{j=1..k} C(k-1, j-1) x_j a_{k-j}`` (Griewank & Walther, ch. 13), where
    ``slope(y, m)`` returns ``a_m`` from ``y_0 .. y_m``. Cost ``O(K²)``.
    """
    y: Series = [y0]
    a: Series = []
    for k in range(1, order + 1):
        a.append(slope(y, k - 1))
        y.append(convolve(x, a, k, order, ((j, comb(k - 1, j - 1)) for j in range(1, k + 1))))
    return y


def fixed(series: Sequence[Coefficient]) -> Callable[[Series, int], Coefficient]:
    """A ``slope`` for :func:`ode` that is a series known in advance."""
    return lambda _, m: series[m]


def shared_entries(x: Sequence[Coefficient], order: int) -> Series:
    """The series with its sparse lower coefficients on one shared, distinct index list.

    Products of coefficients on one list multiply values entry by entry
    (:func:`stde.sparse.coalesce`); dense coefficients pass through. A mix of sparse and
    dense lower coefficients densifies the sparse ones.
    """
    lower = [c for c in x[1:order] if c is not None]
    if not any(sparse.is_sparse(c) for c in lower):
        return list(x)
    if not all(sparse.is_sparse(c) for c in lower):
        return [x[0], *(sparse.densify(c) for c in x[1:order]), *x[order:]]
    aligned = iter(sparse.coalesce(lower))
    return [x[0], *(None if c is None else next(aligned) for c in x[1:order]), *x[order:]]


@functools.cache
def bell_terms(k: int) -> tuple[tuple[int, tuple[tuple[int, ...], int], ...], ...]:
    """Faà di Bruno's formula for ``y_k`` of ``y = f(x)`` with exact integer weights.

    ``y_k = Σ_m f^{(m)}(x_0) Σ_{π} w_π Π_{b ∈ π} x_b`` over the partitions ``π`` of ``k``
    into ``m`` parts ``b`` (the partial Bell polynomial ``B_{k,m}``), with
    ``w_π = k! / Π_j (j!^{c_j} c_j!)`` where ``c_j`` counts the parts equal to ``j``.

    Returns:
      ``((m, ((parts, w_π), ...)), ...)`` for ``m = 1 .. k``; ``parts`` ascending.

    Example:
      >>> bell_terms(3)
      ((1, (((3,), 1),)), (2, (((1, 2), 3),)), (3, (((1, 1, 1), 1),)))

    """
    def partitions(n: int, largest: int) -> Iterable[tuple[int, ...]]:
        if n == 0:
            yield ()
        for part in range(min(n, largest), 0, -1):
            for rest in partitions(n - part, part):
                yield (*rest, part)

    groups: dict[int, list[tuple[tuple[int, ...], int]]] = {}
    for parts in partitions(k, k):
        weight = factorial(k) // prod(factorial(j) ** c * factorial(c)
                                      for j, c in Counter(parts).items())
        groups.setdefault(len(parts), []).append((parts, weight))
    return tuple((m, tuple(sorted(groups[m]))) for m in sorted(groups))


def compose(derivatives: Sequence[Array], x: Sequence[Coefficient], order: int) -> Series:
    """Series of ``f(x)`` from ``f^{(m)}(x_0)``, ``m = 0 .. K``, by Faà di Bruno.

    The derivatives are direction-free, so each one multiplies a per-direction
    polynomial in ``x_1 .. x_{K-1}`` (monomials shared between coefficients), and the
    top sums that polynomial over directions once: the forward Laplacian's form
    generalised to any ``K``. Only ``x_K`` (already summed) meets ``f'`` directly.

    Args:
      derivatives: ``f(x_0), f'(x_0), .., f^{(K)}(x_0)``, each shaped like ``x_0``.
      x: the input series in the collapsed layout.
      order: ``K``.

    Returns:
      The output series in the collapsed layout.

    Example:
      >>> import jax.numpy as jnp
      >>> x = [jnp.float32(0.0), jnp.full((2,), 2.0), None]   # K = 2, R = 2
      >>> y = compose([1.0, 1.0, 1.0], x, 2)                  # exp at 0
      >>> [y[1].tolist(), float(y[2])]
      [[2.0, 2.0], 8.0]

    """
    x = shared_entries(x, order)
    monomials: dict[tuple[int, ...], Coefficient] = {}

    def monomial(parts: tuple[int, ...]) -> Coefficient:
        if len(parts) == 1:
            return x[parts[0]]
        if parts not in monomials:
            rest, head = monomial(parts[:-1]), x[parts[-1]]
            monomials[parts] = None if head is None or rest is None else multiply(
                rest, head, True, True)
        return monomials[parts]

    y: Series = [derivatives[0]]
    for k in range(1, order + 1):
        top = k == order
        direct = scale(x[k], derivatives[1], k, order) if top else None
        groups: list[tuple[Array, Array]] = []
        for m, partitions in bell_terms(k):
            terms = [(monomial(parts), w) for parts, w in partitions if not (top and m == 1)]
            terms = [(u, w) for u, w in terms if u is not None]
            if len(terms) == 1:
                (u, w), = terms
                groups.append((u, derivatives[m] * w if w != 1 else derivatives[m]))
            elif terms:
                groups.append((functools.reduce(add, (times_number(u, w) for u, w in terms)),
                               derivatives[m]))
        if not groups:
            y.append(direct)
        elif top:
            y.append(add(direct, sum_over_directions(groups)))
        else:
            y.append(functools.reduce(add, (multiply(polynomial, factor, True, False)
                                            for polynomial, factor in groups)))
    return y
