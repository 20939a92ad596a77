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
  ``Jaxpr`` (JAX 0.12); ``reduce_window``'s is an open ``Jaxpr`` beside its ``consts``,
  and ``scatter``'s optional ``update_jaxpr`` beside its ``update_consts``.
* ``composite``: its decomposition was the ``ClosedJaxpr`` ``jaxpr`` (JAX 0.10) and is
  the open ``Jaxpr`` ``call_jaxpr`` (JAX 0.12); ``custom_vmap_call`` names its body
  ``call``. Neither primitive is exported by ``jax.extend``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from jax.extend.core import ClosedJaxpr, Jaxpr, Primitive, jaxpr_as_fun


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


def _private_primitive(module: str, name: str) -> Primitive | None:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def body_call_primitives() -> tuple[Primitive, ...]:
    """``composite`` and ``custom_vmap_call``: calls defined by their body, from JAX's internals.

    Example:
      >>> sorted(p.name for p in body_call_primitives())
      ['composite', 'custom_vmap_call']

    """
    found = (_private_primitive("jax._src.lax.lax", "composite_p"),
             _private_primitive("jax._src.custom_batching", "custom_vmap_p"))
    return tuple(p for p in found if p is not None)


def linear_call_primitive() -> Primitive | None:
    """``jax.custom_derivatives.linear_call``'s primitive, from JAX's internals.

    Example:
      >>> linear_call_primitive().name
      'linear_call'

    """
    return _private_primitive("jax._src.custom_derivatives", "linear_call_p")


def call_body(params: Mapping[str, Any]) -> ClosedJaxpr | Jaxpr:
    """The body of a call-like equation, whichever parameter holds it.

    ``call_jaxpr`` (``closed_call``, ``call``, ``custom_vjp_call``, and ``composite``
    on JAX 0.12), ``jaxpr`` (``composite`` on JAX 0.10) or ``call``
    (``custom_vmap_call``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> double = jax.lax.composite(lambda x: 2 * x, name="my.double")
      >>> eqn = jax.make_jaxpr(double)(1.0).eqns[0]
      >>> body = call_body(eqn.params)
      >>> [e.primitive.name for e in getattr(body, "jaxpr", body).eqns]
      ['mul']

    """
    for name in ("call_jaxpr", "jaxpr", "call"):
        if name in params:
            return params[name]
    raise ValueError(f"stde: no body among the call's parameters {sorted(params)}")


def call_hi_primitive() -> Primitive | None:
    """JAX 0.11+'s ``call_hi_primitive``, or ``None`` on a JAX that does not have it.

    Example:
      >>> p = call_hi_primitive()
      >>> p is None or p.name == "call_hi_primitive"
      True

    """
    return _private_primitive("jax._src.hijax", "call_hi_primitive_p")


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
    return _as_function(params["jaxpr"], params.get("consts", ()))


def scatter_combiner(params: Mapping[str, Any]) -> Callable[..., list[Any]] | None:
    """A ``scatter``'s update function of (old entry, update), or ``None`` for an overwrite.

    ``x.at[i].apply(f)`` gives one; ``x.at[i].set(u)`` has none.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> eqn = jax.make_jaxpr(lambda x: x.at[0].apply(jnp.square))(jnp.ones(2)).eqns[-1]
      >>> [float(y) for y in scatter_combiner(eqn.params)(3.0, 0.0)]
      [9.0]

    """
    jaxpr = params["update_jaxpr"]
    return None if jaxpr is None else _as_function(jaxpr, params["update_consts"])


def _as_function(jaxpr: ClosedJaxpr | Jaxpr, consts: Any) -> Callable[..., list[Any]]:
    return jaxpr_as_fun(jaxpr if isinstance(jaxpr, ClosedJaxpr)
                        else ClosedJaxpr(jaxpr, tuple(consts)))
