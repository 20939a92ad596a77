"""Exact operators: every term adds its exact jets to one plan of collapsed passes.

* Laplacian, ``diagonal(k)``: directions ``e_1 .. e_D`` in one collapsed ``k``-jet.
* Weighted Laplacian: the columns of ``σ`` in the same collapsed 2-jet.
* Biharmonic: nested collapsed Laplacians (default), or the interpolation family
  ``Σ_i ∂_i⁴ + 2 Σ_{i<j} ∂_i²∂_j²`` in one collapsed 4-jet per sign.
* Mixed partials: per term the interpolation family (:mod:`stde.interpolation`) or the
  one-jet slot construction (:mod:`stde.slots`), whichever propagates less.

Each term's construction is its :meth:`stde.lowering.Term.exact` (:mod:`stde.terms`).
All terms of one jet order become one collapsed pass (two for even orders with weights of
both signs), after merging equal directions (docs/design.md, "Operators and how they
lower to jets").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stde.lowering import Plan, attach_aux, flatten_argument, split_aux
from stde.operators import Operator, require_operator

Array = Any
BIHARMONIC_METHODS = ("nested", "interpolation")
PARTIAL_METHODS = ("auto", "interpolation", "slots")


def _validate(method: str, allowed: tuple[str, ...], name: str) -> None:
    if method not in allowed:
        raise ValueError(f"unknown {name} {method!r}; choose one of {', '.join(allowed)}.")


def operator(f: Callable[..., Any], op: Operator, *, argnums: int = 0, with_value: bool = False,
             biharmonic_method: str = "nested", partial_method: str = "auto",
             has_aux: bool = False) -> Callable[..., Any]:
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
      has_aux: ``f`` returns ``(output, aux)``; ``L`` acts on ``output`` and ``g``
        returns ``(L f, aux)`` (with ``with_value``: ``((f, aux), L f)``), as
        ``jax.grad(has_aux=True)`` does.

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
    require_operator(op)

    main, aux_of = split_aux(f, has_aux)

    def g(*args: Any) -> Any:
        h, x, argument = flatten_argument(main, args, argnums)
        op.check(x.shape[0], argnums)
        plan = Plan(x.shape[0], x.dtype, argument, partial_method, biharmonic_method)
        for term, c in op.terms:
            term.exact(c, plan)
        value, total = plan.evaluate(h, x)
        return attach_aux((value, total) if with_value else total, aux_of, args, with_value)

    return g


__all__ = ["operator"]
