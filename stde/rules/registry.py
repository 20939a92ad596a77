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


def lookup(primitive: Primitive) -> Rule | None:
    """The rule registered for ``primitive`` (by object, then by name), or ``None``."""
    rule = _RULES.get(primitive)
    return rule if rule is not None else _RULES.get(primitive.name)


def registered_names() -> set[str]:
    """Names of all primitives that have a Taylor rule."""
    return {p if isinstance(p, str) else p.name for p in _RULES}
