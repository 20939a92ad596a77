"""The table from primitives to Taylor rules.

A rule has the signature ``rule(ctx, inputs, **params) -> JetValue | list[JetValue]``:
``ctx`` is a :class:`stde.core.Context` (order ``K``, direction count ``R``, and a way to
interpret sub-jaxprs), ``inputs`` the operands as :class:`stde.core.JetValue` and
``params`` the equation's parameters. A rule is only called when at least one operand
carries a coefficient; equations on constants run as plain JAX.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jax.extend.core import Primitive

Rule = Callable[..., Any]

_RULES: dict[Primitive | str, Rule] = {}
_SPARSE_RULES: dict[Primitive | str, Rule] = {}


def register(primitive: Primitive | str, rule: Rule | None = None) -> Any:
    """Registers a Taylor rule for ``primitive`` (usable as a decorator).

    Args:
      primitive: the JAX primitive, or its name (matched when no rule is registered
        for the primitive object itself).
      rule: ``rule(ctx, inputs, **params)`` returning one :class:`stde.core.JetValue`,
        or a list of them for primitives with several results.

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
        return lambda r: register(primitive, r)
    _RULES[primitive] = rule
    return rule


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


def _find(table: dict[Primitive | str, Rule], primitive: Primitive) -> Rule | None:
    rule = table.get(primitive)
    return rule if rule is not None else table.get(primitive.name)


def lookup(primitive: Primitive) -> Rule | None:
    """The rule registered for ``primitive`` (by object, then by name), or ``None``."""
    return _find(_RULES, primitive)


def lookup_sparse(primitive: Primitive) -> Rule | None:
    """The sparse-aware rule of ``primitive`` (see :func:`register_sparse`), or ``None``."""
    return _find(_SPARSE_RULES, primitive)


def registered_names() -> set[str]:
    """Names of all primitives that have a Taylor rule."""
    return {p if isinstance(p, str) else p.name for p in _RULES}
