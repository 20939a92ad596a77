"""Each method's way of computing the benchmarked operators of a scalar ``f(params, x)``.

All builders return a function of ``(params, x)`` for one point ``x`` of shape ``(D,)``
(suites batch it with ``jax.vmap``). The common currency is a *directional sum*
``Σ_r w_r ⟨∂^K f(x), v_r^{⊗K}⟩`` over rows ``v_r`` of ``directions``:

* ``nested``: first-order AD nested, grad of grad: forward-over-reverse HVPs
  ``y ↦ vᵀ∇²g(y) v`` applied ``K/2`` times (``g = f`` innermost; one more gradient
  along ``v`` when ``K`` is odd), vmapped over ``r``. For ``K = 4`` this is the
  construction of the exact biharmonic's Laplacian of Laplacian;
* ``nested_jvp``: the cheapest nested form, ``K-2`` forward passes along ``v`` over one
  HVP (``jvp∘…∘jvp∘grad``); equal to ``nested`` for ``K ≤ 2``;
* ``taylor``: ``jax.experimental.jet`` with ``x_1 = v``, vmapped over ``r``
  (standard Taylor mode);
* ``stde_jet``: :func:`stde.jet` the same way;
* ``stde_collapsed``: one :func:`stde.collapsed_jet` over all ``r`` (negative weights go
  in a second pass, since ``y_K(c v) = c^K y_K(v)`` only absorbs positive weights);
* ``folx``: ``folx.forward_laplacian`` (exact Laplacian only);
* ``stde_operator``: the public operator API, when present (``stde.operator`` /
  ``stde.stochastic_operator``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import jet as jax_jet

import stde

Scalar = Callable[[Any, jax.Array], jax.Array]
PointFn = Callable[[Any, jax.Array], jax.Array]

DIRECTIONAL_METHODS = ("nested", "taylor", "stde_jet", "stde_collapsed")
"""Methods of :func:`directional_sum` for every ``K`` (``nested_jvp`` adds one for ``K > 2``)."""


def nested_directional(f: Scalar, params: Any, x: jax.Array, v: jax.Array, order: int) -> jax.Array:
    """``⟨∂^K f(x), v^{⊗K}⟩`` by ``K-1`` forward passes over one reverse pass (``K ≥ 1``)."""
    def first(y: jax.Array) -> jax.Array:
        return jax.grad(f, argnums=1)(params, y) @ v

    derivative = first
    for _ in range(order - 1):
        derivative = functools.partial(
            lambda g, y: jax.jvp(g, (y,), (v,))[1], derivative)
    return derivative(x)


def nested_hvp_directional(f: Scalar, params: Any, x: jax.Array, v: jax.Array,
                           order: int) -> jax.Array:
    """``⟨∂^K f(x), v^{⊗K}⟩`` by nested forward-over-reverse HVPs (grad of grad)."""
    def gradient_along(g: Callable[[jax.Array], jax.Array], y: jax.Array) -> jax.Array:
        return jax.grad(g)(y) @ v

    def hvp_along(g: Callable[[jax.Array], jax.Array], y: jax.Array) -> jax.Array:
        return jax.jvp(jax.grad(g), (y,), (v,))[1] @ v

    derivative: Callable[[jax.Array], jax.Array] = functools.partial(f, params)
    if order % 2:
        derivative = functools.partial(gradient_along, derivative)
    for _ in range(order // 2):
        derivative = functools.partial(hvp_along, derivative)
    return derivative(x)


def _taylor_top(jet_fn: Callable[..., Any], f: Scalar, params: Any, x: jax.Array, v: jax.Array,
                order: int) -> jax.Array:
    series = (v, *([jnp.zeros_like(x)] * (order - 1)))
    _, out = jet_fn(lambda y: f(params, y), (x,), (series,))
    return out[-1]


def directional_sum(method: str, f: Scalar, directions: jax.Array, weights: Sequence[float] | None,
                    order: int) -> PointFn:
    """``(params, x) ↦ Σ_r w_r ⟨∂^K f(x), v_r^{⊗K}⟩`` by ``method`` (see module docstring).

    ``directions`` may be a ``(R, D)`` array, or a callable ``x -> (R, D)``; ``weights``
    ``None`` means all ones.
    """
    def rows(x: jax.Array) -> jax.Array:
        return directions(x) if callable(directions) else directions

    w = None if weights is None else np.asarray(weights, np.float64)

    def weighted(values: jax.Array) -> jax.Array:
        return values.sum() if w is None else values @ jnp.asarray(w, values.dtype)

    if method in ("nested", "nested_jvp"):
        nested = nested_hvp_directional if method == "nested" else nested_directional

        def g(params: Any, x: jax.Array) -> jax.Array:
            return weighted(jax.vmap(lambda v: nested(f, params, x, v, order))(rows(x)))
    elif method in ("taylor", "stde_jet"):
        jet_fn = jax_jet.jet if method == "taylor" else stde.jet

        def g(params: Any, x: jax.Array) -> jax.Array:
            return weighted(jax.vmap(
                lambda v: _taylor_top(jet_fn, f, params, x, v, order))(rows(x)))
    elif method == "stde_collapsed":
        def g(params: Any, x: jax.Array) -> jax.Array:
            return collapsed_directional_sum(f, params, x, rows(x), w, order)
    else:
        raise ValueError(f"unknown directional method {method!r}; expected one of "
                         f"{(*DIRECTIONAL_METHODS, 'nested_jvp')}.")
    return g


def collapsed_directional_sum(f: Scalar, params: Any, x: jax.Array, directions: jax.Array,
                              weights: np.ndarray | None, order: int) -> jax.Array:
    """``Σ_r w_r y_K(v_r)`` with one collapsed jet per sign of ``w``."""
    def one_pass(rows: jax.Array) -> jax.Array:
        lower = (rows, *([None] * (order - 2)))
        return stde.collapsed_jet(lambda y: f(params, y), (x,), (lower,), (None,))[2]

    if weights is None:
        return one_pass(directions)
    total = jnp.zeros((), x.dtype)
    for sign in (1.0, -1.0):
        mask = np.flatnonzero(np.sign(weights) == sign)
        if mask.size:
            scale = jnp.asarray(np.abs(weights[mask]) ** (1.0 / order), x.dtype)
            total = total + sign * one_pass(directions[mask] * scale[:, None])
    return total


def folx_laplacian(f: Scalar) -> PointFn:
    """``folx.forward_laplacian`` (raises ``ImportError`` when folx is missing)."""
    from folx import forward_laplacian

    def g(params: Any, x: jax.Array) -> jax.Array:
        return forward_laplacian(lambda y: f(params, y))(x).laplacian
    return g


def folx_weighted_laplacian(f: Scalar, sigma: jax.Array) -> PointFn:
    """folx's Laplacian in ``z`` of ``z ↦ f(x + σz)`` at ``z = 0``, i.e. ``tr(σᵀ∇²f σ)``."""
    from folx import forward_laplacian

    def g(params: Any, x: jax.Array) -> jax.Array:
        z = jnp.zeros((sigma.shape[1],), x.dtype)
        return forward_laplacian(lambda y: f(params, x + sigma @ y))(z).laplacian
    return g


def operator_api_available(stochastic: bool = False) -> bool:
    """Whether the public operator API (README.md, "API") exists in this checkout."""
    name = "stochastic_operator" if stochastic else "operator"
    try:
        import stde.operators  # noqa: F401
    except ImportError:
        return False
    return hasattr(stde, name)


def operator_api(f: Scalar, op: Any) -> PointFn:
    """``stde.operator(f, op, argnums=1)``."""
    return stde.operator(f, op, argnums=1)


def stochastic_operator_api(f: Scalar, op: Any, samples: int, method: str
                            ) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    """``stde.stochastic_operator(f, op, samples, argnums=1, method=method)``."""
    return stde.stochastic_operator(f, op, samples, argnums=1, method=method)


def nested_laplacian(f: Scalar) -> Scalar:
    """``x ↦ Δ_x f(params, x)`` by vmapped forward-over-reverse HVPs with ``e_i``."""
    def laplacian(params: Any, x: jax.Array) -> jax.Array:
        eye = jnp.eye(x.shape[0], dtype=x.dtype)
        return jax.vmap(lambda v: nested_directional(f, params, x, v, 2))(eye).sum()
    return laplacian


def nested_partial(f: Scalar, indices: Sequence[int]) -> Scalar:
    """``∂^{|q|} f / ∂x_{i_1}…∂x_{i_n}`` by ``jvp``s along ``e_i`` over one ``grad``."""
    def derivative(params: Any, x: jax.Array) -> jax.Array:
        basis = jnp.eye(x.shape[0], dtype=x.dtype)
        g: Callable[[jax.Array], jax.Array] = lambda y: jax.grad(f, argnums=1)(params, y)[
            indices[0]]
        for i in indices[1:]:
            g = functools.partial(lambda inner, e, y: jax.jvp(inner, (y,), (e,))[1], g, basis[i])
        return g(x)
    return derivative


def interpolation_directions(terms: dict[tuple[int, ...], float], dim: int
                             ) -> tuple[np.ndarray, np.ndarray, int]:
    """Pure ``K``-jet directions and weights for ``Σ_α c_α ∂^α`` (docs/design.md,
    "Operators and how they lower to jets").

    Args:
      terms: ``{(i_1, .., i_K): c}``, each index tuple of one common length ``K``.
      dim: ``D``.

    Returns:
      ``(directions (R, D), weights (R,), K)`` with
      ``Σ_α c_α ∂^α f = Σ_r weights_r y_K(directions_r)``; equal directions are merged.
    """
    from stde.interpolation import interpolation_coefficients

    orders = {len(idx) for idx in terms}
    if len(orders) != 1:
        raise ValueError(f"all terms need one common order; got orders {sorted(orders)}.")
    order = orders.pop()
    combined: dict[tuple[int, ...], Fraction] = {}
    for indices, c in terms.items():
        variables = sorted(set(indices))
        multiplicities = tuple(indices.count(i) for i in variables)
        for j, gamma in interpolation_coefficients(multiplicities).items():
            v = [0] * dim
            for i, j_p in zip(variables, j):
                v[i] += j_p
            key = tuple(v)
            weight = Fraction(c) * gamma / math.factorial(order)
            combined[key] = combined.get(key, Fraction(0)) + weight
    combined = {k: w for k, w in combined.items() if w != 0}
    directions = np.array(list(combined), np.float32).reshape(-1, dim)
    weights = np.array([float(w) for w in combined.values()])
    return directions, weights, order


def biharmonic_terms(dim: int) -> dict[tuple[int, ...], float]:
    """``Δ² = Σ_i ∂_i⁴ + 2 Σ_{i<j} ∂_i²∂_j²`` as mixed-partial terms."""
    terms: dict[tuple[int, ...], float] = {(i, i, i, i): 1.0 for i in range(dim)}
    terms.update({(i, i, j, j): 2.0 for i in range(dim) for j in range(i + 1, dim)})
    return terms
