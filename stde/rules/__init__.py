"""Per-primitive Taylor rules, one module per rule family, and their registry.

Importing this package registers every built-in rule. Add your own with
:func:`register`.
"""

from stde.rules import (  # noqa: F401  (registers)
    arithmetic,
    collectives,
    control_flow,
    elementwise,
    expansions,
    linalg,
    linear,
    piecewise,
    reductions,
    sparse,
)
from stde.rules.fallback import UnsupportedPrimitiveError
from stde.rules.registry import lookup, register, registered_names

__all__ = ["UnsupportedPrimitiveError", "lookup", "register", "registered_names"]
