"""The table from primitives to Taylor rules.

A rule has the signature ``rule(ctx, inputs, **params) -> JetValue | list[JetValue]``:
``ctx`` is a :class:`stde.core.Context` (order ``K``, direction count ``R``, and a way to
interpret sub-jaxprs), ``inputs`` the operands as :class:`stde.core.JetValue` and
``params`` the equation's parameters. A rule is only called when at least one operand
carries a coefficient; equations on constants run as plain JAX.

Jacobian sparsity (:class:`stde.sparse.SparseCoefficient` lower coefficients) is a flag
of this one table: a rule either takes sparse coefficients itself (``sparse=True``: it
is written on the coefficient arithmetic of :mod:`stde.rules.series`, which dispatches
on the coefficient type), or has a sparse variant (:func:`register_sparse`, for index
maps that move entries), or says why its operands are densified (``sparse="why"``, or
:func:`densifies`). :func:`sparsity` reports which.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jax.extend.core import Primitive

Rule = Callable[..., Any]

_RULES: dict[Primitive | str, Rule] = {}
_SPARSE_RULES: dict[Primitive | str, Rule] = {}
_DENSE_REASONS: dict[Primitive | str, str] = {}


def register(primitive: Primitive | str, rule: Rule | None = None, *,
             sparse: bool | str | None = None) -> Any:
    """Registers a Taylor rule for ``primitive`` (usable as a decorator).

    Args:
      primitive: the JAX primitive, or its name (matched when no rule is registered
        for the primitive object itself).
      rule: ``rule(ctx, inputs, **params)`` returning one :class:`stde.core.JetValue`,
        or a list of them for primitives with several results.
      sparse: ``True`` when ``rule`` takes sparse lower coefficients as they come (it
        computes with :mod:`stde.rules.series`' coefficient arithmetic only); a string
        saying why sparse operands are densified for it; ``None`` (undeclared):
        densified.

    Returns:
      ``rule``; or, when ``rule`` is omitted, a decorator that registers its argument.

    Example:
      >>> import jax
      >>> import stde
      >>> from stde.rules import elementwise
      >>> my_exp_p = jax.extend.core.Primitive("my_exp")
      >>> _ = stde.rules.register(my_exp_p, elementwise.unary_rule(elementwise.exp))

    """
    if rule is None:
        return lambda r: register(primitive, r, sparse=sparse)
    _RULES[primitive] = rule
    if sparse is True:
        _SPARSE_RULES[primitive] = rule
    elif isinstance(sparse, str):
        densifies(primitive, sparse)
    return rule


def densifies(primitive: Primitive | str, reason: str) -> None:
    """Declares that ``primitive``'s rule gets sparse operands densified, and why.

    Example:
      >>> import jax
      >>> import stde
      >>> my_p = jax.extend.core.Primitive("my_sort_like")
      >>> stde.rules.registry.densifies(my_p, "permutes entries by value")
      >>> stde.rules.registry.sparsity(my_p)
      'densified: permutes entries by value'

    """
    _DENSE_REASONS[primitive] = reason


def sparsity(primitive: Primitive | str) -> str:
    """How ``primitive``'s rule treats sparse lower coefficients.

    Returns:
      ``"kept"`` (a rule or sparse variant takes them), ``"densified: <why>"``, or
      ``"undeclared"`` (densified, no reason given).
    """
    if _find(_SPARSE_RULES, primitive) is not None:
        return "kept"
    reason = _find(_DENSE_REASONS, primitive)
    return "undeclared" if reason is None else f"densified: {reason}"


def register_sparse(primitive: Primitive | str, rule: Rule) -> Rule:
    """Registers a rule for ``primitive`` that accepts sparse lower coefficients.

    The interpreter calls it instead of the rule of :func:`register` when an operand
    carries a :class:`stde.sparse.SparseCoefficient`; primitives without one get their
    operands densified (:func:`stde.sparse.densify`) and their ordinary rule.

    Returns:
      ``rule``.

    Example:
      >>> import jax
      >>> import stde
      >>> my_id_p = jax.extend.core.Primitive("my_identity")
      >>> _ = stde.rules.registry.register_sparse(my_id_p, lambda ctx, inputs: inputs[0])

    """
    _SPARSE_RULES[primitive] = rule
    return rule


def _find(table: dict[Primitive | str, Any], primitive: Primitive | str) -> Any:
    found = table.get(primitive)
    if found is not None or isinstance(primitive, str):
        return found
    return table.get(primitive.name)


def lookup(primitive: Primitive) -> Rule | None:
    """The rule registered for ``primitive`` (by object, then by name), or ``None``."""
    return _find(_RULES, primitive)


def lookup_sparse(primitive: Primitive) -> Rule | None:
    """The sparse-aware rule of ``primitive`` (see :func:`register_sparse`), or ``None``."""
    return _find(_SPARSE_RULES, primitive)


def registered_names() -> set[str]:
    """Names of all primitives that have a Taylor rule."""
    return {p if isinstance(p, str) else p.name for p in _RULES}


def registered() -> list[Primitive | str]:
    """Every primitive (or name) with a Taylor rule, in registration order."""
    return list(_RULES)
