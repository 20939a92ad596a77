"""Primitives whose Taylor rule is the interpretation of an expansion into others.

JAX 0.11+ adds a few primitives that only exist to evaluate or differentiate more
accurately a composition of existing ones: ``polynomial`` (Horner's scheme),
``one_minus_square`` (``1 - x²``) and ``log2``. Their Taylor coefficients are those of
the composition, so :func:`expansion_rule` traces the expansion on the primals and
interprets it with the rules of its primitives. On a JAX without these primitives
nothing is registered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from stde.core import Context, JetValue
from stde.rules.registry import register


def expansion_rule(expand: Callable[..., Any]) -> Callable[..., JetValue]:
    """A Taylor rule that interprets ``expand(*operands, **params)`` on the jets.

    Args:
      expand: a function of the primitive's operands (and parameters) written with
        other primitives; it must equal the primitive.

    Returns:
      ``rule(ctx, inputs, **params)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from stde.core import JetValue
      >>> from stde.interpreter import Interpreter
      >>> rule = expansion_rule(lambda x: x * x)
      >>> x = JetValue(jnp.float32(3), (), jnp.float32(1))
      >>> y = rule(Interpreter(order=1, directions=1), [x])
      >>> float(y.primal), float(y.summed)
      (9.0, 6.0)

    """
    def rule(ctx: Context, inputs: Sequence[JetValue], **params: Any) -> JetValue:
        closed = jax.make_jaxpr(lambda *xs: expand(*xs, **params))(*(x.primal for x in inputs))
        (out,) = ctx.eval_jaxpr(closed, list(inputs))
        return out
    return rule


def horner(x: Any, *coefficients: Any, unroll: Any = None) -> Any:
    """``Σ_i coefficients[i] x^i`` by Horner's scheme (``lax.polynomial``)."""
    del unroll
    acc = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        acc = acc * x + c
    return jnp.broadcast_to(acc, jnp.broadcast_shapes(*(jnp.shape(a) for a in (x, *coefficients))))


def one_minus_square(x: Any, **_: Any) -> Any:
    """``1 - x²``."""
    return lax.sub(jnp.ones_like(x), lax.mul(x, x))


def log2(x: Any, **_: Any) -> Any:
    """``log(x) / log(2)``."""
    return lax.mul(lax.log(x), jnp.asarray(1 / math.log(2), jnp.result_type(x)))


for _name, _expand in (("polynomial", horner), ("one_minus_square", one_minus_square),
                       ("log2", log2)):
    _primitive = getattr(lax, f"{_name}_p", None)
    if _primitive is not None:
        register(_primitive, expansion_rule(_expand), sparse=True)  # each piece decides
