"""Public entry points: :func:`collapsed_jet` and :func:`jet`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from stde import sparse
from stde.core import ARRAY_TYPES, JetValue, is_float, zeros_coefficient
from stde.interpreter import Interpreter

PyTree = Any
_tree = jax.tree_util


def _flatten_like(tree: PyTree, structure: Any, what: str) -> list[Any]:
    """Leaves of ``tree`` in the order of ``structure``; ``None`` leaves are zeros."""
    if tree is None:
        return [None] * structure.num_leaves
    try:
        return structure.flatten_up_to(tree)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what} does not have the tree structure of its primal "
                         f"({structure}): {e}") from None


def _primal_leaves(primals: Sequence[PyTree]) -> list[tuple[list[jax.Array], Any]]:
    """Each primal's leaves as arrays, and its tree structure.

    Integer and boolean leaves are allowed: they cannot move along a curve, so they
    are constants (as ``jax.jvp`` gives them no tangent); their series must be zero
    (see :func:`_constant_series`).
    """
    out = []
    for i, primal in enumerate(primals):
        leaves, structure = _tree.tree_flatten(primal)
        arrays = []
        for leaf in leaves:
            if not isinstance(leaf, ARRAY_TYPES):
                raise TypeError(f"primals[{i}] must be an array or a pytree of arrays; "
                                f"found a leaf of type {type(leaf).__name__}.")
            arrays.append(jnp.asarray(leaf))
        out.append((arrays, structure))
    return out


def _input(primal: jax.Array, lower: tuple[Any, ...], top: Any, order: int) -> JetValue:
    """The input jet of one primal leaf; an integer or boolean leaf is a constant."""
    if not is_float(primal):
        return JetValue.constant(primal, order)
    return JetValue(primal, lower, top)


def _constant_series(c: Any, primal: jax.Array, what: str) -> None:
    """Checks that the coefficient ``c`` of an integer or boolean primal is zero.

    Such a primal is a constant, so its series is dropped; a non-zero series would be
    dropped in silence where ``jax.experimental.jet.jet`` would push it on (e.g.
    through ``jnp.sin``'s conversion to float). ``None``, a ``float0`` array and a
    concrete all-zero array are accepted; anything else is a ``ValueError``.
    """
    if c is None or jnp.result_type(c) == jax.dtypes.float0:
        return
    try:
        concrete = np.asarray(c)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        raise ValueError(
            f"{what} is a traced array for a {primal.dtype} primal: an integer or boolean "
            f"primal is a constant and its series must be zero, which cannot be checked "
            f"on a tracer. Pass None for it, or cast the primal to a float dtype (e.g. "
            f"x.astype(jnp.float32)) to differentiate along it.") from None
    if np.any(concrete != 0):
        raise ValueError(
            f"{what} is non-zero but its primal has dtype {primal.dtype}: integer and "
            f"boolean primals are constants and carry no Taylor coefficients, so the series "
            f"would be dropped. Cast the primal to a float dtype (e.g. "
            f"x.astype(jnp.float32)) to differentiate along it, or pass None (or zeros).")


def _coefficient(c: Any, primal: jax.Array, leading: tuple[int, ...], what: str) -> Any:
    """``c`` as an array of ``primal``'s dtype, checked to be ``(*leading, *primal.shape)``.

    The coefficient of an integer or boolean primal must be zero and becomes ``None``.
    """
    if not is_float(primal):
        _constant_series(c, primal, what)
        return None
    if c is None:
        return None
    python_scalar = isinstance(c, int | float) and not isinstance(c, bool)
    c = jnp.asarray(c)
    if not python_scalar and not is_float(c):
        raise TypeError(f"{what} has dtype {c.dtype}, but Taylor coefficients of a "
                        f"{primal.dtype} primal must be floating-point arrays. Convert it "
                        f"first, e.g. jnp.asarray(c, jnp.{primal.dtype}).")
    if jnp.iscomplexobj(c) and not jnp.iscomplexobj(primal):
        raise TypeError(f"{what} is complex ({c.dtype}) but its primal is real "
                        f"({primal.dtype}); the imaginary part would be lost. Pass a "
                        f"complex primal, or real coefficients.")
    expected = (*leading, *primal.shape)
    if c.shape != expected:
        layout = "(R, *primal.shape)" if leading else "primal.shape"
        raise ValueError(f"{what} has shape {c.shape}, expected {layout} = {expected}.")
    return c.astype(primal.dtype)


def _check_tuple(x: Any, name: str, n: int) -> None:
    if not isinstance(x, tuple | list):
        raise TypeError(f"{name} must be a tuple with one entry per primal, got "
                        f"{type(x).__name__}.")
    if len(x) != n:
        raise ValueError(f"{name} has {len(x)} entries but there are {n} primals.")


def _trace(fun: Callable[..., Any], primals: Sequence[PyTree], flat: list[jax.Array]
           ) -> tuple[Any, Any]:
    """Traces ``fun`` on the primals' leaves; returns the closed jaxpr and output treedef."""
    in_tree = _tree.tree_structure(tuple(primals))
    out_tree: list[Any] = []

    def flat_fun(*leaves: Any) -> list[Any]:
        out = fun(*_tree.tree_unflatten(in_tree, leaves))
        if out is None:
            raise TypeError("fun returned None; it must return an array or a pytree of "
                            "arrays (is a `return` statement missing?).")
        out_leaves, structure = _tree.tree_flatten(out)
        for leaf in out_leaves:
            if isinstance(leaf, bool | int):
                raise TypeError(
                    f"fun returned the Python {type(leaf).__name__} {leaf!r}: an integer "
                    f"constant has no Taylor coefficients of any dtype. Return a float or "
                    f"an array instead, e.g. jnp.asarray({float(leaf)!r}).")
            if not isinstance(leaf, ARRAY_TYPES):
                raise TypeError(f"fun must return an array or a pytree of arrays; it returned "
                                f"a leaf of type {type(leaf).__name__}.")
        out_tree.append(structure)
        return out_leaves

    closed_jaxpr = jax.make_jaxpr(flat_fun)(*flat)
    return closed_jaxpr, out_tree[0]


def evaluate_jets(fun: Callable[..., Any], primals: Sequence[PyTree],
                  inputs: list[JetValue], order: int, directions: int
                  ) -> tuple[list[JetValue], Any]:
    """Traces ``fun`` and interprets it on ``inputs`` (one per primal leaf).

    The entry point below the public API: symbolic zeros in ``inputs`` stay symbolic,
    and lower coefficients may be :class:`stde.sparse.SparseCoefficient` (outputs are
    dense). Returns the output jets (one per output leaf) and the output tree structure.
    """
    closed_jaxpr, out_tree = _trace(fun, primals, [x.primal for x in inputs])
    outputs = Interpreter(order, directions).eval_jaxpr(closed_jaxpr, inputs)
    return [sparse.densify_value(o) for o in outputs], out_tree


def _materialise(value: JetValue, k: int, directions: int) -> jax.Array:
    c = value.coefficients[k]
    return zeros_coefficient(value.primal, k, value.order, directions) if c is None else c


def collapsed_jet(fun: Callable[..., Any], primals: Sequence[PyTree],
                  series: Sequence[Sequence[PyTree]], summed: Sequence[PyTree]
                  ) -> tuple[PyTree, PyTree, PyTree]:
    """Collapsed Taylor mode: ``R`` directions' lower coefficients, their tops summed.

    Pushes, for each direction ``r``, the curve
    ``x_r(t) = x0 + Σ_{k<K} x_{k,r} t^k/k! + x_{K,r} t^K/K!`` through ``fun`` and returns
    the output's lower coefficients per direction and ``Σ_r y_{K,r}``, propagating only
    the sum of the top coefficients (docs/design.md, "Conventions"). With ``x_1 = e_r``
    and ``K = 2`` the summed output is the Laplacian.

    Args:
      fun: a function of ``len(primals)`` arrays (or pytrees of arrays).
      primals: tuple of primal values ``x0_i``.
      series: one entry per primal: a sequence of ``K-1`` coefficients, each shaped
        ``(R, *x0_i.shape)`` (a pytree like ``x0_i`` for pytree primals); ``None`` is a
        known zero.
      summed: one entry per primal: ``Σ_r x_{K,r}`` shaped like ``x0_i`` (``None`` for
        zero). A one-element tuple around it is accepted too.

    Returns:
      ``(primals_out, series_out, summed_out)``: ``fun``'s output; per output leaf a
      list of ``K-1`` coefficients shaped ``(R, *leaf.shape)``; per output leaf
      ``Σ_r y_{K,r}``.

    Raises:
      TypeError: integer or complex coefficients of a real primal, non-array leaves,
        ``summed`` missing.
      ValueError: mismatched shapes or tree structures, ``R`` or ``K`` differing
        across primals, a non-zero (or traced) coefficient of an integer or boolean
        primal (such primals are constants; cast them to float to differentiate).

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> f = lambda x: jnp.sin(x).sum()
      >>> x = jnp.array([0.1, 0.2, 0.3])
      >>> _, _, lap = stde.collapsed_jet(f, (x,), ((jnp.eye(3),),), (jnp.zeros(3),))
      >>> bool(jnp.allclose(lap, -jnp.sin(x).sum()))
      True

    """
    _check_tuple(primals, "primals", len(primals) if isinstance(primals, tuple | list) else 0)
    n = len(primals)
    _check_tuple(series, "series", n)
    if summed is None:
        raise TypeError("summed is missing: pass one array per primal with the sum over "
                        "directions of the top coefficients (zeros, or None, for none).")
    _check_tuple(summed, "summed", n)
    lengths = {len(s) for s in series}
    if len(lengths) > 1:
        raise ValueError(f"every primal needs the same number K-1 of lower coefficients; got "
                         f"{[len(s) for s in series]}.")
    order = (lengths.pop() if lengths else 0) + 1
    leaves = _primal_leaves(primals)
    lower: list[list[Any]] = []
    tops: list[Any] = []
    directions: set[int] = set()
    for i, ((arrays, structure), coefficients, top) in enumerate(zip(leaves, series, summed)):
        per_k = [_flatten_like(c, structure, f"series[{i}][{k}]")
                 for k, c in enumerate(coefficients)]
        # Leading sizes are collected first so that a wrong R is reported as such;
        # full shapes are checked below, once R is known.
        directions.update(np.shape(c)[0] if np.ndim(c) else -1
                          for cs in per_k for c in cs if c is not None)
        if isinstance(top, tuple | list) and len(top) == 1 and structure.num_leaves == 1 \
                and _tree.tree_structure(top) != structure:
            top = top[0]
        tops.append([_coefficient(c, x, (), f"summed[{i}]")
                     for x, c in zip(arrays, _flatten_like(top, structure, f"summed[{i}]"))])
        lower.append(per_k)
    if len(directions) > 1:
        raise ValueError(f"all series must share the number R of directions (leading axis); "
                         f"got leading sizes {sorted(directions)}.")
    if not directions and order > 1:
        raise ValueError("cannot infer the number R of directions: every lower coefficient "
                         "is None. Pass at least one array shaped (R, *primal.shape).")
    count = directions.pop() if directions else 1
    inputs = []
    for i, ((arrays, _), per_k, top) in enumerate(zip(leaves, lower, tops)):
        for n_leaf, x in enumerate(arrays):
            coefficients = tuple(_coefficient(cs[n_leaf], x, (count,), f"series[{i}][{k}]")
                                 for k, cs in enumerate(per_k))
            inputs.append(_input(x, coefficients, top[n_leaf], order))
    outputs, out_tree = evaluate_jets(fun, primals, inputs, order, count)
    return (
        _tree.tree_unflatten(out_tree, [o.primal for o in outputs]),
        _tree.tree_unflatten(out_tree, [[_materialise(o, k, count) for k in range(1, order)]
                                        for o in outputs]),
        _tree.tree_unflatten(out_tree, [_materialise(o, order, count) for o in outputs]),
    )


def jet(fun: Callable[..., Any], primals: Sequence[PyTree],
        series: Sequence[Sequence[PyTree]], factorial_scaled: bool = True
        ) -> tuple[PyTree, PyTree]:
    """Taylor-mode AD; a drop-in for ``jax.experimental.jet.jet`` that also takes pytrees.

    Args:
      fun: a function of ``len(primals)`` arrays (or pytrees of arrays).
      primals: tuple of primal values. Integer and boolean primals are constants: their
        series must be ``None`` or zero (cast such a primal to float to move it).
      series: one entry per primal: a sequence of ``K`` derivative-scaled coefficients
        ``x_1 .. x_K`` shaped like the primal (``None`` for a known zero), floating-point
        like the primal.
      factorial_scaled: as in ``jax.experimental.jet.jet``: ``True`` (the default) for
        derivative-scaled coefficients ``x(t) = x0 + Σ_k x_k t^k / k!`` in and out,
        ``False`` for plain Taylor coefficients ``x(t) = x0 + Σ_k x_k t^k``.

    Returns:
      ``(primals_out, series_out)``: ``fun``'s output, and per output leaf the list of
      its ``K`` coefficients ``y_1 .. y_K``.

    Raises:
      TypeError: integer or complex coefficients of a real primal, ``fun`` returning
        ``None`` or a Python integer, non-array leaves.
      ValueError: mismatched shapes, tree structures or series lengths; a non-zero (or
        traced) coefficient of an integer or boolean primal.

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> y, (y1, y2) = stde.jet(jnp.exp, (jnp.float32(0.0),), ((1.0, 0.0),))
      >>> [float(y), float(y1), float(y2)]
      [1.0, 1.0, 1.0]
      >>> _, (c1, c2) = stde.jet(jnp.exp, (0.0,), ((1.0, 0.0),), factorial_scaled=False)
      >>> [float(c1), float(c2)]                      # e^t = 1 + t + t²/2
      [1.0, 0.5]

    """
    _check_tuple(primals, "primals", len(primals) if isinstance(primals, tuple | list) else 0)
    _check_tuple(series, "series", len(primals))
    lengths = {len(s) for s in series}
    if len(lengths) > 1:
        raise ValueError(f"every primal needs the same number K of coefficients; got "
                         f"{[len(s) for s in series]}.")
    order = lengths.pop() if lengths else 0
    if order == 0:
        out = fun(*primals)
        return out, _tree.tree_map(lambda _: [], out)
    leaves = _primal_leaves(primals)
    inputs = []
    for i, ((arrays, structure), coefficients) in enumerate(zip(leaves, series)):
        per_k = [[_scaled(_coefficient(c, x, (), f"series[{i}][{k}]"), k + 1, factorial_scaled)
                  for x, c in zip(arrays, _flatten_like(s, structure, f"series[{i}][{k}]"))]
                 for k, s in enumerate(coefficients)]
        for n_leaf, x in enumerate(arrays):
            lower = tuple(None if cs[n_leaf] is None else cs[n_leaf][None] for cs in per_k[:-1])
            inputs.append(_input(x, lower, per_k[-1][n_leaf], order))
    outputs, out_tree = evaluate_jets(fun, primals, inputs, order, 1)
    unscaled = [[_materialise(o, k, 1)[0] for k in range(1, order)] + [_materialise(o, order, 1)]
                for o in outputs]
    return (
        _tree.tree_unflatten(out_tree, [o.primal for o in outputs]),
        _tree.tree_unflatten(out_tree, [
            [_scaled(c, k, factorial_scaled, inverse=True) for k, c in enumerate(cs, start=1)]
            for cs in unscaled]),
    )


def _scaled(c: Any, k: int, factorial_scaled: bool, inverse: bool = False) -> Any:
    """Coefficient ``k`` in (or, ``inverse``, out of) the derivative-scaled convention."""
    if factorial_scaled or c is None or k == 1 or not is_float(c):
        return c
    factor = math.factorial(k)
    return c / factor if inverse else c * factor
