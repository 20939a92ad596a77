"""Primitives whose Taylor rule is the interpretation of an expansion into others.

JAX 0.11+ adds a few primitives that only exist to evaluate or differentiate more
accurately a composition of existing ones: ``polynomial`` (Horner's scheme),
``one_minus_square`` (``1 - x²``) and ``log2``; JAX 0.12 adds ``fma`` and ``fmuladd``
(``a·b + c``, rounded once or as the compiler likes). Their Taylor coefficients are
those of the composition, so :func:`expansion_rule` traces the expansion on the primals
and interprets it with the rules of its primitives; the primal is the primitive's own
(``fma``'s single rounding is kept). On a JAX without these primitives nothing is
registered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from stde.core import Context, JetValue, bind_equation
from stde.rules.registry import register


def expansion_rule(expand: Callable[..., Any], primitive: Any = None
                   ) -> Callable[..., JetValue]:
    """A Taylor rule that interprets ``expand(*operands, **params)`` on the jets.

    Args:
      expand: a function of the primitive's operands (and parameters) written with
        other primitives; it must equal the primitive.
      primitive: when given, the result's primal is this primitive's, bound on the
        operands' primals (the expansion may round differently).

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
        if primitive is None:
            return out
        primal = bind_equation(primitive, params, *(x.primal for x in inputs))
        return JetValue(primal, out.lower, out.summed)
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


def multiply_add(a: Any, b: Any, c: Any, **_: Any) -> Any:
    """``a·b + c``."""
    return lax.add(lax.mul(a, b), c)


for _name, _expand in (("polynomial", horner), ("one_minus_square", one_minus_square),
                       ("log2", log2), ("fma", multiply_add), ("fmuladd", multiply_add)):
    _primitive = getattr(lax, f"{_name}_p", None)
    if _primitive is not None:  # each piece of the expansion decides on sparsity
        register(_primitive, expansion_rule(_expand, _primitive), sparse=True)
