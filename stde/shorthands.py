"""``stde.laplacian`` and ``stde.biharmonic``: exact without ``n_samples``, stochastic with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stde import operators
from stde.exact import operator
from stde.stochastic import stochastic_operator


def _build(op: operators.Operator, f: Callable[..., Any], n_samples: int | None, argnums: int,
           method: str, distribution: str, with_value: bool, has_aux: bool
           ) -> Callable[..., Any]:
    if n_samples is None:
        return operator(f, op, argnums=argnums, with_value=with_value, has_aux=has_aux)
    return stochastic_operator(f, op, n_samples, argnums=argnums, method=method,
                               distribution=distribution, with_value=with_value,
                               has_aux=has_aux)


def laplacian(f: Callable[..., Any], n_samples: int | None = None, *, argnums: int = 0,
              method: str = "auto", distribution: str = "rademacher",
              with_value: bool = False, has_aux: bool = False) -> Callable[..., Any]:
    """The Laplacian of ``f``: exact ``g(*args)`` if ``n_samples`` is None, else ``g(*args, key)``.

    With ``n_samples`` this is :func:`stde.stochastic_operator` with ``ops.laplacian()``
    (``method``, ``distribution``, ``with_value`` and ``has_aux`` are passed on); without
    it, :func:`stde.operator`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import stde
      >>> f = lambda x: (x ** 3).sum()
      >>> float(stde.laplacian(f)(jnp.array([1.0, 2.0])))
      18.0
      >>> float(stde.laplacian(f, 2, method="sparse")(jnp.array([1.0, 2.0]), jax.random.key(0)))
      18.0

    """
    return _build(operators.laplacian(), f, n_samples, argnums, method, distribution, with_value,
                  has_aux)


def biharmonic(f: Callable[..., Any], n_samples: int | None = None, *, argnums: int = 0,
               method: str = "auto", distribution: str = "rademacher",
               with_value: bool = False, has_aux: bool = False) -> Callable[..., Any]:
    """The biharmonic ``Δ²f``: exact if ``n_samples`` is None, else an unbiased estimate.

    Stochastic ``"dense"`` (the ``"auto"`` choice below ``D²`` samples) uses normal
    4-jets divided by 3; ``"sparse"`` samples pairs ``(i, j)`` and computes each
    ``∂_i²∂_j²`` from five 4-jets.

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> f = lambda x: (x ** 2).sum() ** 2
      >>> float(stde.biharmonic(f)(jnp.array([1.0, 2.0, 3.0])))
      120.0

    """
    return _build(operators.biharmonic(), f, n_samples, argnums, method, distribution,
                  with_value, has_aux)


__all__ = ["biharmonic", "laplacian"]
