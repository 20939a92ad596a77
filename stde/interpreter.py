"""The jaxpr interpreter: walks equations and dispatches each to its registered rule.

It names no primitive. Equations that no output depends on are skipped
(:func:`live_equations`). Equations whose operands are all constants are evaluated as
plain JAX; every other equation goes to the rule from :mod:`stde.rules.registry`, or to
the nested-JVP fallback of :mod:`stde.rules.fallback` when none is registered. Operands
with sparse lower coefficients (:mod:`stde.sparse`) go to the primitive's sparse-aware
rule, or are densified for its ordinary one.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, JaxprEqn, Literal

from stde import sparse
from stde.core import JetValue, bind_equation
from stde.rules import registry
from stde.rules.fallback import rule_or_fallback
from stde.rules.sparse import densified


@dataclasses.dataclass(frozen=True)
class Interpreter:
    """Evaluates jaxprs on :class:`JetValue` operands (implements :class:`stde.core.Context`).

    Attributes:
      order: ``K``.
      directions: ``R``.

    """

    order: int
    directions: int

    def constant(self, value: Any) -> JetValue:
        """A :class:`JetValue` without coefficients."""
        return JetValue.constant(value, self.order)

    def eval_jaxpr(self, closed_jaxpr: ClosedJaxpr | Jaxpr,
                   inputs: Sequence[JetValue]) -> list[JetValue]:
        """Interprets ``closed_jaxpr`` (or an open jaxpr without constants) on jets."""
        jaxpr, consts = (closed_jaxpr.jaxpr, closed_jaxpr.consts) if isinstance(
            closed_jaxpr, ClosedJaxpr) else (closed_jaxpr, ())
        env: dict[Any, JetValue] = {}

        def read(var: Any) -> JetValue:
            if isinstance(var, Literal):
                # Weak-typed scalar literals are Python-float subclasses (no ``ndim``).
                return self.constant(np.asarray(var.val, var.aval.dtype))
            return env[var]

        env.update(zip(jaxpr.constvars, map(self.constant, consts)))
        env.update(zip(jaxpr.invars, inputs, strict=True))
        for eqn in live_equations(jaxpr):
            with eqn.ctx.manager:
                outputs = self.apply(eqn, [read(v) for v in eqn.invars])
            env.update(zip(eqn.outvars, outputs, strict=True))
        return [read(v) for v in jaxpr.outvars]

    def apply(self, eqn: JaxprEqn, operands: list[JetValue]) -> list[JetValue]:
        """Evaluates one equation: as plain JAX on constants, else through its rule."""
        primitive = eqn.primitive
        if all(x.is_constant for x in operands):
            out = bind_equation(primitive, eqn.params, *(x.primal for x in operands))
            return [self.constant(o) for o in (out if primitive.multiple_results else [out])]
        out = rule_for(primitive, operands)(self, operands, **eqn.params)
        return list(out) if primitive.multiple_results else [out]


def live_equations(jaxpr: Jaxpr) -> list[JaxprEqn]:
    """The equations that ``jaxpr``'s outputs depend on, or that have effects, in order.

    A traced function often computes values it does not return (an ``aux`` output split
    off by ``has_aux``, a discarded intermediate); ``jax.jit`` drops them in XLA, but an
    eager evaluation would push jets through them. Nested jaxprs are kept whole.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> closed = jax.make_jaxpr(lambda x: (jnp.exp(x), jnp.sin(x))[1])(1.0)
      >>> [eqn.primitive.name for eqn in live_equations(closed.jaxpr)]
      ['sin']

    """
    live = {v for v in jaxpr.outvars if not isinstance(v, Literal)}
    kept = []
    for eqn in reversed(jaxpr.eqns):
        if eqn.effects or any(v in live for v in eqn.outvars):
            kept.append(eqn)
            live.update(v for v in eqn.invars if not isinstance(v, Literal))
    return kept[::-1]


def rule_for(primitive: Any, operands: list[JetValue]) -> Any:
    """The rule that evaluates ``primitive`` on ``operands``.

    Operands with sparse lower coefficients go to the primitive's sparse-aware rule;
    without one, to :func:`stde.rules.sparse.densified` (densify, then the ordinary rule).
    """
    if any(sparse.has_sparse(x) for x in operands):
        return registry.lookup_sparse(primitive) or functools.partial(densified, primitive)
    return rule_or_fallback(primitive)
