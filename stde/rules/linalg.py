"""Matrix factorisations and triangular solves: one factorisation, then solves per coefficient.

Each rule factorises the primal once, with the primitive itself, and gets every higher
coefficient from a *linear* equation in that coefficient whose matrix is built from the
primal factors only. The right-hand side holds the lower-order products
``Σ_{j=1..k-1} C(k, j) F_j G_{k-j}`` (:func:`series.convolve` with a matrix product),
so at the top order the per-direction products are summed over directions once and the
linear solve acts on the summed top (docs/design.md, "Conventions"): every rule here is
collapsed.

* ``lu`` (``P·A = L·U``): ``X = L0⁻¹ (P A_k - Σ C(k,j) L_j U_{k-j}) U0⁻¹``,
  ``L_k = L0 · strict_lower(X)``, ``U_k = upper(X) · U0``. Pivots and permutation are
  constants. Square matrices (rectangular ones use the nested-JVP fallback).
* ``triangular_solve``: ``op(A0) X_k = B_k - Σ_{j≥1} C(k,j) op(A_j) X_{k-j}`` (or the
  right-sided form), solved by the primitive with the direction axis folded into the
  right-hand side's columns (rows).
* ``tridiagonal_solve``: ``A0 X_k = B_k - Σ_{j≥1} C(k,j) A_j X_{k-j}`` with ``A_j X``
  three shifted products of the diagonals, solved by the primitive (no factor to keep).
* ``cholesky`` (``A = L Lᴴ``): ``Y = L0⁻¹ (A_k - Σ C(k,j) L_j L_{k-j}ᴴ) L0⁻ᴴ``,
  ``L_k = L0 · (strict_lower(Y) + diag(Y)/2)``.
* ``eigh`` (``A = V diag(w) Vᴴ``): in the eigenbasis ``Ã_k = V0ᴴ A_k V0``,
  ``M = Ã_k + Σ C(k,j) (Ã_j Q_{k-j} - Q_j diag(w_{k-j}))``, ``w_k = diag(M)``,
  ``(Q_k)_il = M_il / (w_l - w_i)`` off the diagonal, ``V_k = V0 Q_k``; the diagonal of
  ``Q_k`` keeps ``diag(Vᴴ V') = 0`` (the gauge of JAX's JVP rule). Eigenvalues must be
  distinct: at a degenerate eigenvalue the eigenvectors are not differentiable and
  the coefficients are non-finite (``inf``/``nan``), as JAX's own derivative is.
* ``qr`` (``A = Q R``, ``m ≥ n``, reduced or square): ``D = B_k R0⁻¹``,
  ``C = Q0ᴴ D``, ``Ω = Q0ᴴ Q_k`` from ``strict_lower(Ω) = strict_lower(C)`` and
  ``Ω + Ωᴴ = -Σ C(k,j) Q_jᴴ Q_{k-j}`` (real diagonal of ``R`` kept real),
  ``R_k = upper((C - Ω) R0)``, ``Q_k = D - Q0 (C - Ω)``.
* ``svd`` (square, real, distinct singular values): in the singular bases
  ``Ã_k = U0ᵀ A_k V0`` a 2×2 system per off-diagonal entry, ``s_k`` from the diagonal.
  Rectangular or complex matrices use the nested-JVP fallback.

Every product goes through :func:`matmul` (an ``einsum`` that keeps the direction
axis separate, so no operand is broadcast over directions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import comb
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal
from jax.extend.core.primitives import jit_p
from jax.lax import linalg as lax_linalg

from stde.core import Array, Coefficient, Context, JetValue, bind_equation
from stde.rules import series
from stde.rules.fallback import fallback_rule
from stde.rules.registry import register

Series = series.Series


# --------------------------------------------------------------------------- helpers


def matmul(u: Array, v: Array, u_directions: bool, v_directions: bool) -> Array:
    """Batched matrix product over the last two axes; a direction axis stays leading.

    Example:
      >>> import jax.numpy as jnp
      >>> matmul(jnp.ones((4, 2, 3)), jnp.ones((3, 5)), True, False).shape
      (4, 2, 5)

    """
    lhs = "r...ij" if u_directions else "...ij"
    rhs = "r...jk" if v_directions else "...jk"
    out = "r...ik" if u_directions or v_directions else "...ik"
    return jnp.einsum(f"{lhs},{rhs}->{out}", u, v, precision=lax.Precision.HIGHEST)


def adjoint(x: Array) -> Array:
    """Conjugate transpose of the last two axes."""
    x = jnp.swapaxes(x, -1, -2)
    return jnp.conj(x) if jnp.iscomplexobj(x) else x


def adjoint_product(u: Array, v: Array, u_directions: bool, v_directions: bool) -> Array:
    """``uᴴ v`` as a :data:`series.Product`."""
    return matmul(adjoint(u), v, u_directions, v_directions)


def product_adjoint(u: Array, v: Array, u_directions: bool, v_directions: bool) -> Array:
    """``u vᴴ`` as a :data:`series.Product`."""
    return matmul(u, adjoint(v), u_directions, v_directions)


def times(u: Array, v: Array, u_directions: bool, v_directions: bool) -> Array:
    """Elementwise ``u * v`` of equal-rank primal parts, a direction axis added explicitly.

    Example:
      >>> import jax.numpy as jnp
      >>> times(jnp.ones((4, 2, 3)), jnp.ones((2, 3)), True, False).shape
      (4, 2, 3)

    """
    if u_directions and not v_directions:
        v = v[None]
    elif v_directions and not u_directions:
        u = u[None]
    return u * v


def scale_columns(u: Array, d: Array, u_directions: bool, d_directions: bool) -> Array:
    """``u · diag(d)`` for a vector ``d`` (the eigenvalue or singular-value coefficients)."""
    return times(u, d[..., None, :].astype(u.dtype), u_directions, d_directions)


def _map(c: Coefficient, f: Callable[[Array], Array]) -> Coefficient:
    """``f(c)``, keeping a symbolic zero."""
    return None if c is None else f(c)


def _left(m: Array, c: Coefficient, directions: bool) -> Coefficient:
    """``m @ c`` for a direction-free matrix ``m``."""
    return None if c is None else matmul(m, c, False, directions)


def _right(c: Coefficient, m: Array, directions: bool) -> Coefficient:
    """``c @ m`` for a direction-free matrix ``m``."""
    return None if c is None else matmul(c, m, directions, False)


def _diagonal(x: Array) -> Array:
    """The diagonal of the last two axes as a matrix (off-diagonal entries zeroed)."""
    return jnp.triu(jnp.tril(x))


def _embed(d: Array) -> Array:
    """``diag(d)`` for the last axis of ``d``."""
    n = d.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(n, dtype=d.dtype), (*d.shape, n))
    return d[..., None, :] * eye


def _identity(like: Array) -> Array:
    """The identity broadcast to ``like``'s (square) shape and dtype."""
    return jnp.broadcast_to(jnp.eye(like.shape[-1], dtype=like.dtype), like.shape)


def _hermitian(c: Array) -> Array:
    """The Hermitian matrix ``cholesky`` reads from the lower triangle of ``c``.

    The imaginary part of the diagonal is dropped, as in JAX's derivative rule.
    """
    strict = jnp.tril(c, -1)
    diagonal = _diagonal(c)
    if jnp.iscomplexobj(c):
        diagonal = 0.5 * (diagonal + jnp.conj(diagonal))
    return strict + diagonal + adjoint(strict)


def _inverse_triangular(t: Array, lower: bool, unit_diagonal: bool = False,
                        transpose_a: bool = False, conjugate_a: bool = False) -> Array:
    """``op(t)⁻¹`` for a triangular primal factor (one solve, reused for every coefficient)."""
    return lax_linalg.triangular_solve(t, _identity(t), left_side=True, lower=lower,
                                       transpose_a=transpose_a, conjugate_a=conjugate_a,
                                       unit_diagonal=unit_diagonal)


def _binomial(k: int, weights: Callable[[int, int], int] = comb) -> list[tuple[int, int]]:
    """Terms ``(j, C(k, j))`` for ``j = 1 .. k-1``: the products of two moving factors."""
    return [(j, weights(k, j)) for j in range(1, k)]


def _gauge(q: Sequence[Coefficient], k: int, order: int) -> Coefficient:
    """Diagonal of ``Q_k`` with ``diag(Qᴴ Q') = 0``: ``-diag(Σ_j C(k-1, j) Q_jᴴ Q_{k-j})``.

    For a real orthogonal ``Q`` this is the diagonal that keeps ``QᵀQ = I``; for a
    unitary one it is the phase convention of JAX's eigenvector derivative.
    """
    def column_dots(u: Array, v: Array, u_dir: bool, v_dir: bool) -> Array:
        return jnp.sum(times(jnp.conj(u) if jnp.iscomplexobj(u) else u, v, u_dir, v_dir),
                       axis=-2)
    dots = series.convolve(q, q, k, order, [(j, comb(k - 1, j)) for j in range(1, k)],
                           column_dots)
    return _map(dots, lambda d: -_embed(d))


def _unsupported(primitive: Any, ctx: Context, inputs: Sequence[JetValue],
                 params: dict[str, Any]) -> Any:
    """The nested-JVP fallback for a configuration these rules do not cover."""
    return fallback_rule(primitive)(ctx, inputs, **params)


# ----------------------------------------------------------------------------- lu


def lu_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> list[JetValue]:
    """``lu``: ``P·A = L·U`` with unit lower ``L``; pivots and permutation are constants.

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> a = jnp.array([[2.0, 1.0], [1.0, 3.0]])
      >>> f = lambda a: jnp.linalg.slogdet(a)[1]
      >>> _, (d1,) = stde.jet(f, (a,), ((jnp.eye(2),),))
      >>> round(float(d1), 6)                       # tr(A⁻¹) = 5/5
      1.0

    """
    (a,) = inputs
    order = ctx.order
    if a.primal.shape[-1] != a.primal.shape[-2]:
        return _unsupported(lax_linalg.lu_p, ctx, inputs, params)
    packed, pivots, permutation = bind_equation(lax_linalg.lu_p, params, a.primal)
    l0 = jnp.tril(packed, -1) + _identity(packed)
    u0 = jnp.triu(packed)
    l_inv = _inverse_triangular(l0, lower=True, unit_diagonal=True)
    u_inv = _inverse_triangular(u0, lower=False)
    pivoted_l_inv = matmul(l_inv, jax.nn.one_hot(permutation, packed.shape[-1],
                                                 dtype=packed.dtype), False, False)
    lower: Series = [l0]
    upper: Series = [u0]
    out: Series = [packed]
    for k in range(1, order + 1):
        d = series.has_directions(k, order)
        rest = series.convolve(lower, upper, k, order, _binomial(k), matmul)
        x = _right(series.sub(_left(pivoted_l_inv, a.coefficients[k], d),
                              _left(l_inv, rest, d)), u_inv, d)
        lower.append(_left(l0, _map(x, lambda c: jnp.tril(c, -1)), d))
        upper.append(_right(_map(x, jnp.triu), u0, d))
        out.append(series.add(lower[k], upper[k]))
    return [JetValue.from_coefficients(out), JetValue.constant(pivots, order),
            JetValue.constant(permutation, order)]


# --------------------------------------------------------------- triangular_solve


def _many_right_hand_sides(a: Array, b: Array, params: dict[str, Any], copies: int) -> bool:
    """Whether ``triangular_solve(a, b)`` for ``copies`` of ``b`` is faster through ``op(A)⁻¹``.

    ``b`` holds ``b.shape[-1]`` right-hand-side vectors (``left_side``; else
    ``b.shape[-2]``). XLA's triangular solve substitutes row by row; once the vectors
    outnumber the rows of ``A``, one solve against the identity and a matrix product
    cost less (on one CPU core, 32 systems of size 16 with 1,536 vectors each: 1.0 ms
    against 13 ms).
    """
    vectors = b.shape[-1] if params["left_side"] else b.shape[-2]
    return copies * vectors >= a.shape[-1]


def inverse_product(a: Array, b: Array, params: dict[str, Any],
                    b_directions: bool = False) -> Array:
    """``triangular_solve(a, b)`` (equation ``params``) as a product with ``op(A)⁻¹``.

    ``op(A)⁻¹`` comes from one triangular solve against the identity; ``X = op(A)⁻¹ B``
    (``left_side``) or ``X = B op(A)⁻¹``, where ``b`` may lead with a direction axis.
    For many right-hand sides (:func:`_many_right_hand_sides`), as folx multiplies by a
    determinant's inverse.

    Example:
      >>> import jax.numpy as jnp
      >>> a = jnp.array([[2.0, 0.0], [1.0, 4.0]])
      >>> params = dict(left_side=True, lower=True, transpose_a=False, conjugate_a=False,
      ...               unit_diagonal=False)
      >>> inverse_product(a, jnp.ones((2, 3)), params)[:, 0]
      Array([0.5  , 0.125], dtype=float32)

    """
    inverse = _inverse_triangular(a, params["lower"], params["unit_diagonal"],
                                  params["transpose_a"], params["conjugate_a"])
    if params["left_side"]:
        return matmul(inverse, b, False, b_directions)
    return matmul(b, inverse, b_directions, False)


def fold_directions(solve: Callable[[Array], Array], rhs: Array, axis: int = -1) -> Array:
    """``solve(B)`` for a linear solve, the directions of ``rhs`` as extra right-hand sides.

    ``rhs`` leads with the direction axis (``[R, ..., rows, cols]``); one solve takes
    the directions folded into its columns (``axis=-1``, ``A X = B``) or its rows
    (``axis=-2``, ``X A = B``), as ``R·cols`` (``R·rows``) right-hand sides.

    Example:
      >>> import jax.numpy as jnp
      >>> fold_directions(lambda b: b / 2, jnp.ones((3, 4, 5))).shape
      (3, 4, 5)

    """
    moved = jnp.moveaxis(rhs, 0, axis - 1)   # directions just before the folded axis
    shape = moved.shape
    at = moved.ndim + axis - 1
    folded = moved.reshape(*shape[:at], shape[at] * shape[at + 1], *shape[at + 2:])
    return jnp.moveaxis(solve(folded).reshape(shape), axis - 1, 0)


def _solve(a0: Array, rhs: Array, directions: bool, params: dict[str, Any]) -> Array:
    """``triangular_solve(a0, rhs)`` with a direction axis on the right-hand side.

    The directions become extra right-hand sides: a product with ``op(A0)⁻¹`` when they
    are many (:func:`_many_right_hand_sides`), else extra columns (rows) of one solve.
    """
    solve = lax_linalg.triangular_solve_p
    if not directions:
        return bind_equation(solve, params, a0, rhs)
    if _many_right_hand_sides(a0, rhs, params, rhs.shape[0]):
        return inverse_product(a0, rhs, params, b_directions=True)
    # op(A) X = B: directions become extra columns; X op(A) = B: extra rows
    return fold_directions(lambda b: bind_equation(solve, params, a0, b), rhs,
                           -1 if params["left_side"] else -2)


def with_inverse_products(jaxpr: Any, directions: int) -> Any:
    """``jaxpr`` to be applied to ``directions`` right-hand sides at once (under ``vmap``).

    Its triangular solves whose right-hand sides, times ``directions``, are many
    (:func:`_many_right_hand_sides`) become :func:`inverse_product`; ``jit`` calls are
    inlined to reach them. The result has ``jaxpr``'s signature and type
    (``ClosedJaxpr`` or, on JAX 0.12, an open ``Jaxpr``); ``jaxpr`` itself is returned
    when it solves nothing triangular or the rewrite would need constants an open jaxpr
    cannot hold.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jax.scipy.linalg import solve_triangular
      >>> a = jnp.tril(jnp.ones((2, 2))) + jnp.eye(2)
      >>> j = jax.make_jaxpr(lambda b: solve_triangular(a, b, lower=True))(jnp.ones(2))
      >>> rewritten = with_inverse_products(j, directions=4)
      >>> "triangular_solve" in str(j), "dot_general" in str(rewritten)
      (True, True)

    """
    closed = isinstance(jaxpr, ClosedJaxpr)
    inner, consts = (jaxpr.jaxpr, jaxpr.consts) if closed else (jaxpr, ())
    if not _solves_triangular(inner):
        return jaxpr
    avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in inner.invars]
    traced = jax.make_jaxpr(lambda *args: _evaluate(inner, consts, args, directions))(*avals)
    if closed:
        return traced
    return jaxpr if traced.consts else traced.jaxpr


def _solves_triangular(jaxpr: Jaxpr) -> bool:
    """Whether ``jaxpr`` or a ``jit`` it calls has a ``triangular_solve``."""
    return any(eqn.primitive is lax_linalg.triangular_solve_p
               or (eqn.primitive is jit_p and _solves_triangular(eqn.params["jaxpr"].jaxpr))
               for eqn in jaxpr.eqns)


def _evaluate(jaxpr: Jaxpr, consts: Sequence[Any], args: Sequence[Any],
              directions: int) -> list[Any]:
    """``jaxpr`` evaluated with :func:`with_inverse_products`' substitution."""
    env: dict[Any, Any] = dict(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))

    def read(var: Any) -> Any:
        return var.val if isinstance(var, Literal) else env[var]

    for eqn in jaxpr.eqns:
        operands = [read(v) for v in eqn.invars]
        if eqn.primitive is jit_p:
            body = eqn.params["jaxpr"]
            out = _evaluate(body.jaxpr, body.consts, operands, directions)
        elif eqn.primitive is lax_linalg.triangular_solve_p:
            a, b = operands
            out = [inverse_product(a, b, eqn.params)
                   if _many_right_hand_sides(a, b, eqn.params, directions)
                   else bind_equation(eqn.primitive, eqn.params, a, b)]
        else:
            out = bind_equation(eqn.primitive, eqn.params, *operands)
            out = out if eqn.primitive.multiple_results else [out]
        env.update(zip(eqn.outvars, out, strict=True))
    return [read(v) for v in jaxpr.outvars]


def triangular_solve_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> JetValue:
    """``triangular_solve``: ``op(A) X = B`` (``left_side``) or ``X op(A) = B``.

    Only the triangle the primitive reads (without the diagonal if ``unit_diagonal``)
    moves; ``op`` is the transpose and/or conjugate the parameters ask for.

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> from jax.scipy.linalg import solve_triangular
      >>> a = jnp.array([[2.0, 0.0], [1.0, 4.0]])
      >>> f = lambda a: solve_triangular(a, jnp.ones(2), lower=True)[0]
      >>> _, (d1,) = stde.jet(f, (a,), ((jnp.eye(2),),))
      >>> float(d1)                                  # d(1/a00) along a00
      -0.25

    """
    a, b = inputs
    order = ctx.order
    left_side, lower = params["left_side"], params["lower"]

    def op(c: Array) -> Array:
        c = jnp.tril(c, -1 if params["unit_diagonal"] else 0) if lower else jnp.triu(
            c, 1 if params["unit_diagonal"] else 0)
        if params["conjugate_a"] and jnp.iscomplexobj(c):
            c = jnp.conj(c)
        return jnp.swapaxes(c, -1, -2) if params["transpose_a"] else c

    moving_a: Series = [None] + [_map(c, op) for c in a.coefficients[1:]]
    x: Series = [bind_equation(lax_linalg.triangular_solve_p, params, a.primal, b.primal)]
    for k in range(1, order + 1):
        d = series.has_directions(k, order)
        if left_side:
            rest = series.convolve(moving_a, x, k, order, [(j, comb(k, j)) for j in
                                                           range(1, k + 1)], matmul)
        else:
            rest = series.convolve(x, moving_a, k, order, [(j, comb(k, j)) for j in
                                                           range(k)], matmul)
        rhs = series.sub(b.coefficients[k], rest)
        x.append(_map(rhs, lambda c, d=d: _solve(a.primal, c, d, params)))
    return JetValue.from_coefficients(x)


# -------------------------------------------------------------- tridiagonal_solve


def _shift_rows(x: Array, by: int) -> Array:
    """Rows (axis -2) moved ``by`` places down (up for a negative ``by``), zeros let in."""
    padding = [(0, 0, 0)] * (x.ndim - 2) + [(by, -by, 0), (0, 0, 0)]
    return lax.pad(x, jnp.zeros((), x.dtype), padding)


def _diagonal_times(by: int) -> series.Product:
    """``diagonal[..., i] · x[..., i - by, :]``: one diagonal of ``A`` times ``X``."""
    def product(u: Array, v: Array, u_directions: bool, v_directions: bool) -> Array:
        return times(u[..., None].astype(v.dtype), _shift_rows(v, by), u_directions,
                     v_directions)
    return product


def tridiagonal_solve_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any
                           ) -> JetValue:
    """``tridiagonal_solve``: ``A X = B`` for ``A`` given by its three diagonals.

    ``A0 X_k = B_k - Σ_{j≥1} C(k, j) A_j X_{k-j}``, each ``A_j X`` three shifted
    products; the primitive solves with ``A0`` and every direction as extra columns.
    ``dl[0]`` and ``du[-1]`` lie outside ``A`` and are not read, as by the primitive.

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> from jax.lax.linalg import tridiagonal_solve
      >>> dl, d, du = jnp.array([0.0, 1.0]), jnp.array([2.0, 2.0]), jnp.array([1.0, 0.0])
      >>> f = lambda d: tridiagonal_solve(dl, d, du, jnp.ones((2, 1)))[0, 0]
      >>> _, (d1,) = stde.jet(f, (d,), ((jnp.array([1.0, 1.0]),),))
      >>> round(float(d1), 6)                         # x0 = 1 / (3 + t): -1/9
      -0.111111

    """
    dl, d, du, b = inputs
    order = ctx.order
    inside = jnp.arange(d.primal.shape[-1])
    first, last = inside == 0, inside == inside.size - 1

    def moving(diagonal: JetValue, unread: Array) -> Series:
        """The diagonal's coefficients ``1..K``, zero at the entry outside ``A``."""
        return [None] + [_map(c, lambda c: jnp.where(unread, jnp.zeros((), c.dtype), c))
                         for c in diagonal.coefficients[1:]]

    diagonals = [(moving(dl, first), _diagonal_times(1)),
                 ([None, *d.coefficients[1:]], _diagonal_times(0)),
                 (moving(du, last), _diagonal_times(-1))]

    def solve(rhs: Array) -> Array:
        return bind_equation(lax_linalg.tridiagonal_solve_p, params, dl.primal, d.primal,
                             du.primal, rhs)

    x: Series = [solve(b.primal)]
    for k in range(1, order + 1):
        terms = [(j, comb(k, j)) for j in range(1, k + 1)]
        rest = None
        for diagonal, product in diagonals:
            rest = series.add(rest, series.convolve(diagonal, x, k, order, terms, product))
        directions = series.has_directions(k, order)
        x.append(_map(series.sub(b.coefficients[k], rest),
                      lambda c, directions=directions: fold_directions(solve, c)
                      if directions else solve(c)))
    return JetValue.from_coefficients(x)


# ----------------------------------------------------------------------- cholesky


def cholesky_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> JetValue:
    """``cholesky``: ``A = L Lᴴ`` from the lower triangle of ``A``.

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> a = jnp.array([[4.0, 2.0], [2.0, 3.0]])
      >>> f = lambda a: jnp.linalg.cholesky(a)[0, 0]
      >>> _, (d1, d2) = stde.jet(f, (a,), ((jnp.eye(2), jnp.zeros((2, 2))),))
      >>> [float(d1), float(d2)]                     # sqrt(4 + t): 1/4, -1/32
      [0.25, -0.03125]

    """
    (a,) = inputs
    order = ctx.order
    primal = bind_equation(lax_linalg.cholesky_p, params, a.primal)
    l0 = jnp.tril(primal)   # the primitive may leave the strict upper triangle unset
    l_inv = _inverse_triangular(l0, lower=True)
    l_inv_h = adjoint(l_inv)
    factor: Series = [primal]
    for k in range(1, order + 1):
        d = series.has_directions(k, order)
        rest = series.convolve([l0, *factor[1:]], factor, k, order, _binomial(k), product_adjoint)
        rhs = series.sub(_map(a.coefficients[k], _hermitian), rest)
        y = _right(_left(l_inv, rhs, d), l_inv_h, d)
        factor.append(_left(l0, _map(y, lambda c: jnp.tril(c, -1) + 0.5 * _diagonal(c)), d))
    return JetValue.from_coefficients(factor)


# --------------------------------------------------------------------------- eigh


def eigh_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> list[JetValue]:
    """``eigh``: ``A = V diag(w) Vᴴ`` from one triangle of ``A``; outputs ``(V, w)``.

    Eigenvalues must be distinct (non-finite coefficients otherwise, see the module).

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> a = jnp.diag(jnp.array([1.0, 3.0]))
      >>> e = jnp.array([[0.0, 1.0], [1.0, 0.0]])
      >>> f = lambda a: jnp.linalg.eigh(a)[0]
      >>> _, (d1, d2) = stde.jet(f, (a,), ((e, jnp.zeros((2, 2))),))
      >>> d2.tolist()                                # ∓2·1²/(3 - 1)
      [-1.0, 1.0]

    """
    (a,) = inputs
    order = ctx.order
    if params.get("subset_by_index") not in (None, (0, a.primal.shape[-1])):
        raise NotImplementedError(
            "stde: eigh with subset_by_index has no Taylor rule; compute all eigenpairs "
            "(jnp.linalg.eigh) and slice the result.")
    v0, w0 = bind_equation(lax_linalg.eigh_p, params, a.primal)
    v0_h = adjoint(v0)
    gap = w0[..., None, :] - w0[..., :, None]                      # w_l - w_i at (i, l)
    off_diagonal = ~jnp.broadcast_to(jnp.eye(w0.shape[-1], dtype=bool), gap.shape)
    inverse_gap = jnp.where(off_diagonal, 1 / jnp.where(off_diagonal, gap, 1), 0)
    inverse_gap = inverse_gap.astype(v0.dtype)
    rotated: Series = [None] + [
        _right(_left(v0_h, c, series.has_directions(k, order)), v0, series.has_directions(k, order))
        for k, c in enumerate(a.coefficients[1:], start=1)]
    q: Series = [_identity(v0)]
    w: Series = [w0]
    vectors: Series = [v0]
    for k in range(1, order + 1):
        d = series.has_directions(k, order)
        m = series.add(rotated[k], series.sub(
            series.convolve(rotated, q, k, order, _binomial(k), matmul),
            series.convolve(q, w, k, order, _binomial(k), scale_columns)))
        if m is None:
            q.append(None)
            w.append(None)
            vectors.append(None)
            continue
        diagonal = jnp.diagonal(m, axis1=-2, axis2=-1)
        w.append(jnp.real(diagonal) if jnp.iscomplexobj(diagonal) else diagonal)
        q.append(series.add(times(m, inverse_gap, d, False), _gauge(q, k, order)))
        vectors.append(_left(v0, q[k], d))
    return [JetValue.from_coefficients(vectors), JetValue.from_coefficients(w)]


# ----------------------------------------------------------------------------- qr


def qr_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> list[JetValue]:
    """``qr``: ``A = Q R`` for ``m ≥ n`` (reduced, or square), outputs ``(Q, R)``.

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> a = jnp.array([[3.0, 1.0], [4.0, 2.0]])
      >>> f = lambda a: jnp.abs(jnp.linalg.qr(a)[1][0, 0])     # |first column| = 5
      >>> e = jnp.array([[1.0, 0.0], [0.0, 0.0]])
      >>> _, (d1,) = stde.jet(f, (a,), ((e,),))
      >>> round(float(d1), 6)                        # d|a|/da00 = 3/5
      0.6

    """
    (a,) = inputs
    order = ctx.order
    rows, cols = a.primal.shape[-2:]
    if params.get("pivoting") or rows < cols or (params["full_matrices"] and rows != cols):
        return _unsupported(lax_linalg.qr_p, ctx, inputs, params)
    q0, r0 = bind_equation(lax_linalg.qr_p, params, a.primal)
    q0_h = adjoint(q0)
    r_inv = _inverse_triangular(r0, lower=False)
    q: Series = [q0]
    r: Series = [r0]
    for k in range(1, order + 1):
        d = series.has_directions(k, order)
        rhs = series.sub(a.coefficients[k],
                         series.convolve(q, r, k, order, _binomial(k), matmul))
        normal = series.convolve(q, q, k, order, _binomial(k), adjoint_product)
        scaled = _right(rhs, r_inv, d)
        c = _left(q0_h, scaled, d)
        omega: Coefficient = None
        if c is not None:
            strict = jnp.tril(c, -1)
            omega = strict - adjoint(strict)
            if jnp.iscomplexobj(c):   # keep the diagonal of R real: Im diag(Ω) = Im diag(C)
                omega = omega + 0.5 * _diagonal(c - jnp.conj(c))
        if normal is not None:
            omega = series.sub(omega, jnp.triu(normal, 1) + 0.5 * _diagonal(normal))
        c_minus_omega = series.sub(c, omega)
        r.append(_map(_right(c_minus_omega, r0, d), jnp.triu))
        q.append(series.sub(scaled, _left(q0, c_minus_omega, d)))
    return [JetValue.from_coefficients(q), JetValue.from_coefficients(r)]


# ---------------------------------------------------------------------------- svd


def svd_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> list[JetValue]:
    """``svd``: ``A = U diag(s) Vᵀ`` for square real ``A``; outputs ``(s, U, Vᵀ)`` or ``(s,)``.

    Singular values must be distinct (non-finite coefficients otherwise).

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> a = jnp.diag(jnp.array([3.0, 1.0]))
      >>> e = jnp.array([[0.0, 1.0], [0.0, 0.0]])
      >>> f = lambda a: jnp.linalg.svd(a, compute_uv=False)
      >>> _, (d1, d2) = stde.jet(f, (a,), ((e, jnp.zeros((2, 2))),))
      >>> [round(v, 6) for v in d2.tolist()]         # s1² + s2² = 10 + t², s1 s2 = 3
      [0.375, -0.125]

    """
    (a,) = inputs
    order = ctx.order
    rows, cols = a.primal.shape[-2:]
    if (rows != cols or jnp.iscomplexobj(a.primal)
            or params.get("subset_by_index") not in (None, (0, rows))):
        return _unsupported(lax_linalg.svd_p, ctx, inputs, params)
    s0, u0, vt0 = bind_equation(lax_linalg.svd_p, {**params, "compute_uv": True}, a.primal)
    v0 = adjoint(vt0)
    u0_t = adjoint(u0)
    s_row, s_col = s0[..., :, None], s0[..., None, :]              # s_i, s_l at (i, l)
    off_diagonal = ~jnp.broadcast_to(jnp.eye(rows, dtype=bool), (*s0.shape, rows))
    denominator = s_col * s_col - s_row * s_row
    inverse = jnp.where(off_diagonal, 1 / jnp.where(off_diagonal, denominator, 1), 0)
    rotated: Series = [None] + [
        _right(_left(u0_t, c, series.has_directions(k, order)), v0,
               series.has_directions(k, order))
        for k, c in enumerate(a.coefficients[1:], start=1)]
    rotated_t: Series = [_map(c, adjoint) for c in rotated]
    p: Series = [_identity(u0)]
    q: Series = [_identity(v0)]
    s: Series = [s0]
    for k in range(1, order + 1):
        d = series.has_directions(k, order)
        terms = _binomial(k)
        m1 = series.add(rotated[k], series.sub(
            series.convolve(rotated, q, k, order, terms, matmul),
            series.convolve(p, s, k, order, terms, scale_columns)))
        m2 = series.add(rotated_t[k], series.sub(
            series.convolve(rotated_t, p, k, order, terms, matmul),
            series.convolve(q, s, k, order, terms, scale_columns)))
        if m1 is None:
            p.append(None)
            q.append(None)
            s.append(None)
            continue

        def off(x: Array, y: Array, d: bool = d) -> Array:
            return times(x + y, inverse, d, False)

        s.append(0.5 * (jnp.diagonal(m1, axis1=-2, axis2=-1)
                        + jnp.diagonal(m2, axis1=-2, axis2=-1)))
        # P_il = (s_l M1 + s_i M2) / (s_l² - s_i²), Q_il = (s_i M1 + s_l M2) / (s_l² - s_i²)
        p.append(series.add(off(times(m1, s_col, d, False), times(m2, s_row, d, False)),
                            _gauge(p, k, order)))
        q.append(series.add(off(times(m1, s_row, d, False), times(m2, s_col, d, False)),
                            _gauge(q, k, order)))
    values = JetValue.from_coefficients(s)
    if not params["compute_uv"]:
        return [values]
    left = JetValue.from_coefficients(
        [u0] + [_left(u0, c, series.has_directions(k, order)) for k, c in enumerate(p[1:], 1)])
    right = JetValue.from_coefficients(
        [vt0] + [_right(_map(c, adjoint), vt0, series.has_directions(k, order))
                 for k, c in enumerate(q[1:], 1)])
    return [values, left, right]


register(lax_linalg.lu_p, lu_rule)
register(lax_linalg.triangular_solve_p, triangular_solve_rule)
register(lax_linalg.tridiagonal_solve_p, tridiagonal_solve_rule)
register(lax_linalg.cholesky_p, cholesky_rule)
register(lax_linalg.eigh_p, eigh_rule)
register(lax_linalg.qr_p, qr_rule)
register(lax_linalg.svd_p, svd_rule)
