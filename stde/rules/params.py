"""Primitive parameters read the same way on every supported JAX (0.10 to 0.12).

JAX changes how some primitives spell their parameters between releases. Rules read
such parameters only through the functions here, so each difference is handled once:

* ``scan``: ``num_consts``/``num_carry`` (JAX 0.10) became the flat trees ``ft_in``
  (consts, carry, xs) and ``ft_out`` (carry, ys) (JAX 0.11+).
* ``jit``: ``inline`` was a bool (JAX 0.10) and is the enum ``jax.Inline``
  (JAX 0.11+), whose ``AUTO`` member is truthy; only ``JAX_EARLY`` (or ``True``) asks
  for inlining while tracing.
* ``call_hi_primitive`` (JAX 0.11+) carries "high-level" primitives such as
  ``lax.custom_root``, which JAX 0.10 expressed as a ``custom_jvp_call``.
* ``reduce``: its reducer ``jaxpr`` was a ``ClosedJaxpr`` (JAX 0.10) and is an open
  ``Jaxpr`` (JAX 0.12).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from jax.extend.core import ClosedJaxpr, Primitive, jaxpr_as_fun


def scan_counts(params: Mapping[str, Any]) -> tuple[int, int]:
    """``(num_consts, num_carry)`` of a ``scan`` equation.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> eqn = jax.make_jaxpr(lambda x: jax.lax.scan(
      ...     lambda c, a: (c + a, c), 0.0, x))(jnp.ones(3)).eqns[-1]
      >>> scan_counts(eqn.params)
      (0, 1)

    """
    if "num_consts" in params:
        return params["num_consts"], params["num_carry"]
    consts, carry, _ = params["ft_in"].unpack()
    return len(consts), len(carry)


def jit_inlined(params: Mapping[str, Any]) -> bool:
    """Whether a ``jit`` equation asks to be inlined while tracing (``inline=True``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> eqn = jax.make_jaxpr(lambda x: jax.jit(jnp.sin)(x))(1.0).eqns[0]
      >>> jit_inlined(eqn.params)
      False

    """
    inline = params.get("inline", False)
    if isinstance(inline, bool):
        return inline
    return getattr(inline, "name", "") == "JAX_EARLY"


def call_hi_primitive() -> Primitive | None:
    """JAX 0.11+'s ``call_hi_primitive``, or ``None`` on a JAX that does not have it.

    Example:
      >>> p = call_hi_primitive()
      >>> p is None or p.name == "call_hi_primitive"
      True

    """
    try:
        return importlib.import_module("jax._src.hijax").call_hi_primitive_p
    except (ImportError, AttributeError):
        return None


def reducer(params: Mapping[str, Any]) -> Callable[..., list[Any]]:
    """The reducer of a ``reduce`` equation as a function of ``2n`` scalars to ``n``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> eqn = jax.make_jaxpr(lambda x: jax.lax.reduce(
      ...     (x, x), (0.0, 1.0), lambda a, b: (a[0] + b[0], a[1] * b[1]), (0,)))(
      ...     jnp.ones(3)).eqns[-1]
      >>> [float(y) for y in reducer(eqn.params)(2.0, 3.0, 4.0, 5.0)]
      [6.0, 15.0]

    """
    jaxpr = params["jaxpr"]
    return jaxpr_as_fun(jaxpr if isinstance(jaxpr, ClosedJaxpr) else ClosedJaxpr(jaxpr, ()))
