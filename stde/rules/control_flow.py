"""Higher-order primitives: calls, checkpointing and control flow.

Every rule here interprets the primitive's sub-jaxprs with ``ctx.eval_jaxpr`` and
rebuilds the primitive's structure around the interpretation with ordinary JAX:

* ``jit``: the body runs inside a ``jax.jit`` boundary (:class:`stde.core.JetValue` is a
  pytree whose ``None`` coefficients are static structure). The jitted interpretation
  is cached per (jaxpr, context), so eager repeated calls do not recompile.
* ``custom_jvp_call`` and ``call_hi_primitive`` (``lax.custom_root`` on JAX 0.11+):
  derivatives come from the JVP rule, differentiated again for higher orders, exactly
  as ``jax.hessian`` takes them; at order 2 stde's rules differentiate the JVP rule's
  jaxpr, collapsed (:func:`stde.rules.fallback.interpreted_jvp_rule`).
* ``custom_vjp_call``, ``closed_call``, ``call``, ``composite``, ``custom_vmap_call``:
  the primal body is interpreted (a ``custom_vjp`` rule is reverse-mode only, so
  forward Taylor mode cannot use it; a ``composite`` is its decomposition).
* ``remat2`` (``jax.checkpoint``): the body runs under ``jax.checkpoint`` with the
  same policy; ``name`` (``checkpoint_name``) is an identity on every coefficient.
* ``cond``: every branch is traced abstractly to find its outputs' zero patterns; a
  coefficient that any branch carries is materialised as zeros in the others, then
  ``lax.switch`` picks the branch.
* ``scan`` and ``while``: the carries' zero pattern is a fixed point (a carry that
  gains a coefficient in the body gets a materialised zero coefficient on entry, and
  the body is traced again). Scanned-over lower coefficients are ``(R, T, ...)``
  outside the loop and ``(T, R, ...)`` inside. The loop predicate sees primals only.
* ``custom_linear_solve`` (``jnp.linalg.solve``, ``jax.scipy.sparse.linalg.cg``): the
  solution ``x(t)`` of ``A(t) x(t) = b(t)`` order by order,
  ``x_k = A_0⁻¹ (b_k - [A(t) x̃(t)]_k)`` where ``x̃`` has ``x_0 .. x_{k-1}`` only,
  with ``custom_linear_solve`` itself, bound on the primal operands, applying ``A_0⁻¹``
  (so a ``grad`` or ``jvp`` of the coefficients reaches ``A`` through its ``matvec``).

A *zero pattern* records, for coefficients ``1 .. K`` of one value, which ones are
carried (``True``) and which are symbolic zeros (``False``).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import ClosedJaxpr, Jaxpr
from jax.extend.core import primitives as prims

from stde.core import (
    Context,
    JetValue,
    bind_equation,
    is_float,
    on_gathered_directions,
    zeros_coefficient,
)
from stde.rules import series
from stde.rules.expansions import expansion_rule
from stde.rules.fallback import interpreted_jvp_rule
from stde.rules.linalg import with_inverse_products
from stde.rules.linear import broadcast_coefficient, register_linear
from stde.rules.params import (
    body_call_primitives,
    call_body,
    call_hi_primitive,
    jit_inlined,
    scan_counts,
)
from stde.rules.registry import register

Pattern = tuple[bool, ...]
"""Per coefficient ``1 .. K``: whether it is carried (``True``) or a symbolic zero."""

BODY_CALLS = (prims.custom_vjp_call_p, prims.closed_call_p, prims.call_p,
              *body_call_primitives())
"""Calls whose Taylor coefficients are their body's (:func:`call_rule`)."""

AnyJaxpr = ClosedJaxpr | Jaxpr


# --------------------------------------------------------------------------------------
# Zero patterns
# --------------------------------------------------------------------------------------


def zero_pattern(value: JetValue) -> Pattern:
    """Which of the coefficients ``1 .. K`` of ``value`` are carried.

    Example:
      >>> import jax.numpy as jnp
      >>> from stde.core import JetValue
      >>> zero_pattern(JetValue(jnp.zeros(2), (jnp.ones((3, 2)), None), None))
      (True, False, False)

    """
    return tuple(c is not None for c in value.coefficients[1:])


def join(*patterns: Pattern) -> Pattern:
    """Unite zero patterns: a coefficient is carried if any of them carries it.

    Example:
      >>> join((True, False), (False, False), (False, True))
      (True, True)

    """
    return tuple(any(carried) for carried in zip(*patterns, strict=True))


def conform(value: JetValue, pattern: Pattern, directions: int) -> JetValue:
    """``value`` with exactly the coefficients of ``pattern``: missing ones become zeros.

    Carried coefficients are also cast to the primal's dtype and broadcast to its
    shape, so that loop carries and branch outputs have one fixed type.

    Args:
      value: the value to conform.
      pattern: the wanted zero pattern; it must cover ``value``'s own.
      directions: ``R``.

    Raises:
      ValueError: ``value`` carries a coefficient that ``pattern`` does not.

    Example:
      >>> import jax.numpy as jnp
      >>> from stde.core import JetValue
      >>> v = conform(JetValue(jnp.zeros(2), (None,), None), (True, False), directions=3)
      >>> v.lower[0].shape, v.summed
      ((3, 2), None)

    """
    order = value.order
    shape, dtype = np.shape(value.primal), jnp.result_type(value.primal)
    coefficients: list[Any] = [value.primal]
    for k, (c, carried) in enumerate(zip(value.coefficients[1:], pattern, strict=True), 1):
        if not carried:
            if c is not None:
                raise ValueError(f"coefficient {k} is carried but the zero pattern {pattern} "
                                 f"says it is zero (an internal error in stde).")
            coefficients.append(None)
        elif c is None:
            coefficients.append(zeros_coefficient(value.primal, k, order, directions))
        else:
            c = broadcast_coefficient(jnp.asarray(c, dtype), k, order, shape)
            coefficients.append(c)
    return JetValue.from_coefficients(coefficients)


def _abstract(value: JetValue, pattern: Pattern, directions: int,
              drop_leading: bool = False) -> JetValue:
    """Build a :class:`JetValue` of ``jax.ShapeDtypeStruct`` with the zero pattern ``pattern``.

    With ``drop_leading`` the primal's leading axis (a scanned-over time axis) is removed.
    """
    shape = np.shape(value.primal)[1:] if drop_leading else np.shape(value.primal)
    dtype = jnp.result_type(value.primal)
    order = value.order
    coefficients: list[Any] = [jax.ShapeDtypeStruct(shape, dtype)]
    for k, carried in enumerate(pattern, start=1):
        lead = (directions,) if series.has_directions(k, order) else ()
        coefficients.append(jax.ShapeDtypeStruct((*lead, *shape), dtype) if carried else None)
    return JetValue.from_coefficients(coefficients)


def _conform_all(values: Sequence[JetValue], patterns: Sequence[Pattern],
                 directions: int) -> list[JetValue]:
    return [conform(v, p, directions) for v, p in zip(values, patterns, strict=True)]


def _primal_only(value: JetValue) -> JetValue:
    return JetValue.constant(value.primal, value.order)


def carry_patterns(ctx: Context, step: Callable[..., Sequence[JetValue]],
                   init: Sequence[JetValue], *operands: Any) -> list[Pattern]:
    """Find the fixed point of the zero patterns of a loop body's carries.

    Starts from ``init``'s patterns, traces ``step`` abstractly on carries of those
    patterns, adds every coefficient the body produces for a floating carry, and repeats
    until nothing changes (at most ``K`` times per carry). Integer carries never carry
    coefficients.

    Args:
      ctx: the rule context.
      step: ``step(carries, *operands)``; its first ``len(init)`` outputs are the new
        carries.
      init: the initial carries.
      operands: further arguments of ``step`` (arrays or ``jax.ShapeDtypeStruct``).

    Returns:
      One pattern per carry, covering ``init``'s and the body's.

    Example:
      >>> import jax.numpy as jnp
      >>> from stde.core import JetValue
      >>> from stde.interpreter import Interpreter
      >>> ctx = Interpreter(order=2, directions=1)
      >>> x = JetValue(jnp.float32(1), (jnp.ones((1,)),), None)
      >>> carry_patterns(ctx, lambda c: [JetValue(c[0].primal, x.lower, None)],
      ...                [JetValue.constant(jnp.float32(0), 2)])
      [(True, False)]

    """
    patterns = [zero_pattern(v) for v in init]
    floating = [is_float(v.primal) for v in init]
    for _ in range(ctx.order * len(init) + 1):
        abstract = [_abstract(v, p, ctx.directions) for v, p in zip(init, patterns, strict=True)]
        out = jax.eval_shape(lambda *a: list(step(*a))[:len(init)], abstract, *operands)
        new = [join(p, zero_pattern(o)) if f else p
               for p, o, f in zip(patterns, out, floating, strict=True)]
        if new == patterns:
            return patterns
        patterns = new
    raise AssertionError("the carries' zero patterns did not reach a fixed point")


# --------------------------------------------------------------------------------------
# Calls
# --------------------------------------------------------------------------------------


def _interpret(ctx: Context, jaxpr: AnyJaxpr) -> Callable[[Sequence[JetValue]], list[JetValue]]:
    return lambda values: ctx.eval_jaxpr(jaxpr, values)


def call_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> list[JetValue]:
    """Calls defined by their body (``BODY_CALLS``): the body's coefficients.

    ``closed_call``, ``call``, ``custom_vjp_call``, ``composite`` and
    ``custom_vmap_call``. A ``custom_vjp`` rule is reverse-mode only, a ``custom_vmap``
    rule only batches, and a ``composite`` is defined by its decomposition: in each
    case the body defines the function, so its Taylor coefficients are the body's.
    (JAX has no JVP for ``composite``. A ``custom_vmap`` rule batches neither stde's
    directions nor a ``vmap`` of the result: the body is batched as written.)

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import stde
      >>> x = jnp.array([-1.0, 2.0])
      >>> f = jax.custom_vjp(jnp.sin)
      >>> f.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (jnp.cos(x) * g,))
      >>> _, (y1,), _ = stde.collapsed_jet(f, (x,), ((jnp.ones((1, 2)),),), (jnp.zeros(2),))
      >>> bool(jnp.allclose(y1, jnp.cos(x)))
      True

    """
    return ctx.eval_jaxpr(call_body(params), inputs)


# Jitted interpretations, per jaxpr (weakly held: jaxprs hash by identity) and context.
_jitted_bodies: weakref.WeakKeyDictionary[AnyJaxpr, dict[Any, Callable[..., Any]]] = (
    weakref.WeakKeyDictionary())


def _context_key(ctx: Context) -> Any:
    try:
        hash(ctx)
    except TypeError:
        return None
    return ctx


def jitted_body(ctx: Context, jaxpr: AnyJaxpr, name: str) -> Callable[..., Any]:
    """``jax.jit`` of the interpretation of ``jaxpr`` on jets, cached per jaxpr and ``ctx``.

    The jitted function takes a list of :class:`JetValue` and returns one; ``jax.jit``
    itself caches its compilations per zero pattern, shape and dtype. It holds the
    jaxpr weakly, so the cache entry lives as long as the jaxpr.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from stde.interpreter import Interpreter
      >>> ctx = Interpreter(order=2, directions=1)
      >>> closed = jax.make_jaxpr(jnp.sin)(1.0)
      >>> jitted_body(ctx, closed, "sin") is jitted_body(ctx, closed, "sin")
      True

    """
    key = _context_key(ctx)
    per_context = _jitted_bodies.setdefault(jaxpr, {})
    if key is not None and key in per_context:
        return per_context[key]
    jaxpr_ref = weakref.ref(jaxpr)

    def body(values: list[JetValue]) -> list[JetValue]:
        live = jaxpr_ref()
        assert live is not None, "jitted a jaxpr that no longer exists"
        return ctx.eval_jaxpr(live, values)

    body.__name__ = body.__qualname__ = name
    jitted = jax.jit(body)
    if key is not None:
        per_context[key] = jitted
    return jitted


def jit_rule(ctx: Context, inputs: Sequence[JetValue], *, jaxpr: ClosedJaxpr,
             name: str = "jit", **params: Any) -> list[JetValue]:
    """``jit`` (``pjit``): the interpreted body behind a ``jax.jit`` boundary.

    Calls that JAX inlines when tracing (``inline=True``) are interpreted in place.
    Shardings, layouts and donation of the original call are not carried over.
    """
    if jit_inlined(params):
        return ctx.eval_jaxpr(jaxpr, inputs)
    return jitted_body(ctx, jaxpr, name)(list(inputs))


def remat_rule(ctx: Context, inputs: Sequence[JetValue], *, jaxpr: AnyJaxpr,
               prevent_cse: bool = True, policy: Any = None, **_: Any) -> list[JetValue]:
    """``remat2`` (``jax.checkpoint``): the interpreted body under ``jax.checkpoint``."""
    body = jax.checkpoint(_interpret(ctx, jaxpr), prevent_cse=prevent_cse, policy=policy)
    return body(list(inputs))


# --------------------------------------------------------------------------------------
# Control flow
# --------------------------------------------------------------------------------------


def cond_rule(ctx: Context, inputs: Sequence[JetValue], *,
              branches: Sequence[ClosedJaxpr], **_: Any) -> list[JetValue]:
    """``cond`` (``lax.cond``, ``lax.switch``) on a primal index.

    Every output carries the union of the branches' coefficients: a branch that
    leaves one a symbolic zero returns materialised zeros there.
    """
    index, *operands = inputs
    per_branch = [jax.eval_shape(_interpret(ctx, branch), operands) for branch in branches]
    patterns = [join(*(zero_pattern(o) for o in outs)) for outs in zip(*per_branch, strict=True)]

    def conformed(branch: ClosedJaxpr, values: list[JetValue]) -> list[JetValue]:
        return _conform_all(ctx.eval_jaxpr(branch, values), patterns, ctx.directions)

    functions = [functools.partial(conformed, branch) for branch in branches]
    return lax.switch(index.primal, functions, operands)


def _swap_direction_and_time(value: JetValue) -> JetValue:
    """Swap the two leading axes of the lower coefficients: ``(R, T, ...) <-> (T, R, ...)``."""
    return JetValue(value.primal,
                    tuple(None if c is None else jnp.swapaxes(c, 0, 1) for c in value.lower),
                    value.summed)


def scan_rule(ctx: Context, inputs: Sequence[JetValue], *, jaxpr: ClosedJaxpr, length: int,
              reverse: bool, unroll: int | bool, **params: Any) -> list[JetValue]:
    """``scan`` (``lax.scan``, ``fori_loop``, ``lax.map``).

    Carries follow their fixed-point zero pattern; scanned inputs and outputs have their
    lower coefficients moved to time-major order inside the loop.
    """
    num_consts, num_carry = scan_counts(params)
    consts = list(inputs[:num_consts])
    init = list(inputs[num_consts:num_consts + num_carry])
    xs = [_swap_direction_and_time(x) for x in inputs[num_consts + num_carry:]]

    def step(carry: list[JetValue], x: list[JetValue]) -> list[JetValue]:
        return ctx.eval_jaxpr(jaxpr, [*consts, *carry, *x])

    x_slices = [_abstract(x, zero_pattern(x), ctx.directions, drop_leading=True) for x in xs]
    patterns = carry_patterns(ctx, step, init, x_slices)

    def body(carry: list[JetValue], x: list[JetValue]) -> tuple[list[JetValue], list[JetValue]]:
        out = step(carry, x)
        return _conform_all(out[:num_carry], patterns, ctx.directions), out[num_carry:]

    carry, ys = lax.scan(body, _conform_all(init, patterns, ctx.directions), xs,
                         length=length, reverse=reverse, unroll=unroll)
    return [*carry, *(_swap_direction_and_time(y) for y in ys)]


def while_rule(ctx: Context, inputs: Sequence[JetValue], *, cond_jaxpr: ClosedJaxpr,
               cond_nconsts: int, body_jaxpr: ClosedJaxpr, body_nconsts: int,
               **_: Any) -> list[JetValue]:
    """``while`` (``lax.while_loop``): the predicate sees primals only.

    The coefficients are those of the loop unrolled for the number of iterations the
    primals take (the derivative of a converged fixed-point iteration converges too).

    A ``vmap``-ped loop whose predicate depends on the batch has a batched predicate
    (its ``cond_jaxpr`` returns an array, as in ``jax.scipy.special.hyp1f1``). As JAX
    lowers it, the loop runs while any element's predicate holds, and a step advances
    only the carries' batch elements whose predicate holds (the predicate's shape leads
    every carry's shape).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import stde
      >>> def cbrt(y):  # Newton for c³ = y, each element stopping on its own
      ...     step = lambda c: c - (c ** 3 - y) / (3 * c ** 2)
      ...     return jax.lax.while_loop(lambda c: jnp.abs(c ** 3 - y) > 1e-5 * y, step, y)
      >>> f = lambda x: jnp.sum(jax.vmap(cbrt)(x))
      >>> x = jnp.array([2.0, 8.0, 27.0])
      >>> lap = stde.laplacian(f)(x)
      >>> bool(jnp.allclose(lap, jnp.trace(jax.jacfwd(jax.jacfwd(f))(x))))
      True
      >>> bool(jnp.allclose(lap, jnp.sum(-2 / 9 * x ** (-5 / 3)), rtol=1e-2))  # d²/dx² ∛x
      True

    """
    cond_consts = [_primal_only(c) for c in inputs[:cond_nconsts]]
    body_consts = list(inputs[cond_nconsts:cond_nconsts + body_nconsts])
    init = list(inputs[cond_nconsts + body_nconsts:])
    batched = bool(cond_jaxpr.out_avals[0].shape)

    def running(carry: list[JetValue]) -> Any:
        (out,) = ctx.eval_jaxpr(cond_jaxpr, [*cond_consts, *map(_primal_only, carry)])
        return out.primal

    def predicate(carry: list[JetValue]) -> Any:
        return jnp.any(running(carry)) if batched else running(carry)

    def step(carry: list[JetValue]) -> list[JetValue]:
        out = ctx.eval_jaxpr(body_jaxpr, [*body_consts, *carry])
        if not batched:
            return out
        where = running(carry)
        return [_advance_where(ctx, where, new, old) for new, old in zip(out, carry, strict=True)]

    patterns = carry_patterns(ctx, step, init)
    return lax.while_loop(
        predicate,
        lambda carry: _conform_all(step(carry), patterns, ctx.directions),
        _conform_all(init, patterns, ctx.directions),
    )


def _advance_where(ctx: Context, where: Any, new: JetValue, old: JetValue) -> JetValue:
    """``new`` in the batch elements where ``where`` holds, else ``old``, on every coefficient.

    ``where``'s shape leads the carry's; the selection is interpreted by stde's own rules
    for ``broadcast_in_dim`` and ``select_n``.
    """
    def select(where: Any, new: Any, old: Any) -> Any:
        return lax.select(lax.broadcast_in_dim(where, np.shape(new), tuple(range(where.ndim))),
                          new, old)

    return expansion_rule(select)(ctx, [JetValue.constant(where, ctx.order), new, old])


# --------------------------------------------------------------------------------------
# custom_linear_solve
# --------------------------------------------------------------------------------------


def linear_solve_rule(ctx: Context, inputs: Sequence[JetValue], **params: Any
                      ) -> list[JetValue]:
    """``custom_linear_solve``: Taylor coefficients of the solution of ``A(t) x(t) = b(t)``.

    With ``x̃`` the solution truncated to ``x_0 .. x_{k-1}``, the ``k``-th coefficient of
    ``A(t) x̃(t)`` (the ``matvec`` jaxpr on jets) holds every term of ``[A x]_k`` but
    ``A_0 x_k``, so ``x_k = A_0⁻¹ (b_k - [A x̃]_k)``. At the top order the collapsed sum
    is solved once. Auxiliary outputs of ``solve`` carry no coefficients (as in JAX's JVP).

    A right-hand side whose primal is a known zero (:attr:`stde.core.JetValue.zero_primal`,
    a tangent in :func:`stde.rules.fallback.interpreted_jvp_rule`) has ``x_0 = 0``, so
    ``[A x̃]_1 = A_1 x_0`` is not formed: one product per direction less.

    ``A_0⁻¹`` is applied by binding ``custom_linear_solve`` itself on the primal
    operands (for the ``R`` directions at once, with triangular solves that multiply by
    the inverse where the right-hand sides are many:
    :func:`stde.rules.linalg.with_inverse_products`), never by running its ``solve``
    jaxpr as plain JAX: the solver's operands may be cut from differentiation
    (``jnp.linalg.solve`` factorises ``stop_gradient(A)``), and only the primitive's own
    JVP and transpose rules (through ``matvec``) give a ``jax.grad`` or ``jax.jvp`` of
    the coefficients their derivative with respect to ``A``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import stde
      >>> a = jnp.array([[2.0, 0.5], [0.5, 3.0]])
      >>> g = lambda y: jnp.sum(jnp.linalg.solve(a + jnp.diag(y), jnp.ones(2)))
      >>> grad = jax.grad(stde.laplacian(g))(jnp.zeros(2))
      >>> bool(jnp.allclose(grad, jax.grad(lambda y: jnp.trace(jax.hessian(g)(y)))(
      ...     jnp.zeros(2)), rtol=1e-4))
      True

    """
    lengths = params["const_lengths"]
    num_consts = (lengths.matvec + lengths.vecmat + lengths.solve + lengths.transpose_solve)
    consts, b = list(inputs[:num_consts]), list(inputs[num_consts:])
    matvec_consts = consts[:lengths.matvec]
    const_primals = [x.primal for x in consts]
    num_b = len(b)
    order = ctx.order

    jaxprs = params["jaxprs"]
    many = params if order == 1 else {**params, "jaxprs": jaxprs._replace(**{
        name: with_inverse_products(getattr(jaxprs, name), ctx.directions)
        for name in ("solve", "transpose_solve") if getattr(jaxprs, name) is not None})}

    def solve(*rhs: Any, params: dict[str, Any] = params) -> list[Any]:
        return list(bind_equation(prims.linear_solve_p, params, *const_primals, *rhs))

    out_primals = solve(*(x.primal for x in b))
    solution = [[x] for x in out_primals[:num_b]]
    from_zero = all(x.zero_primal for x in b)  # b_0 = 0, so x_0 = 0 and [A x̃]_1 = 0

    for k in range(1, order + 1):
        if k == 1 and from_zero:
            rhs = [x.coefficients[1] for x in b]
        else:
            truncated = [JetValue.from_coefficients([*s, *([None] * (order + 1 - len(s)))])
                         for s in solution]
            applied = ctx.eval_jaxpr(params["jaxprs"].matvec, [*matvec_consts, *truncated])
            rhs = [series.sub(x.coefficients[k], a.coefficients[k])
                   for x, a in zip(b, applied, strict=True)]
        if all(r is None for r in rhs):
            for s in solution:
                s.append(None)
            continue
        rhs = [zeros_coefficient(s[0], k, order, ctx.directions) if r is None else r
               for r, s in zip(rhs, solution, strict=True)]
        if series.has_directions(k, order):  # directions as a batch (sharded: gathered)
            solved = on_gathered_directions(jax.vmap(functools.partial(solve, params=many)),
                                            *rhs)
        else:
            solved = solve(*rhs)
        for s, c in zip(solution, solved[:num_b], strict=True):
            s.append(c)
    return ([JetValue.from_coefficients(s, from_zero) for s in solution]
            + [JetValue.constant(aux, order) for aux in out_primals[num_b:]])


# --------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------

for _call in BODY_CALLS:
    register(_call, call_rule)
for _with_jvp in (prims.custom_jvp_call_p, call_hi_primitive()):
    if _with_jvp is not None:
        register(_with_jvp, interpreted_jvp_rule(_with_jvp))
register(prims.jit_p, jit_rule)
register(prims.remat_p, remat_rule)
register_linear(prims.name_p)
register(prims.cond_p, cond_rule)
register(prims.scan_p, scan_rule)
register(prims.while_p, while_rule)
register(prims.linear_solve_p, linear_solve_rule)
