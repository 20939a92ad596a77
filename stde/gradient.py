"""Value, gradient and Laplacian in one collapsed pass (what VMC's kinetic energy needs).

The exact collapsed Laplacian pushes the directions ``e_1 .. e_D`` as first-order
coefficients; the output's first-order coefficients are then ``∂_i f``, the gradient,
and its summed top is ``Δf``. :func:`value_grad_laplacian` returns all three from that
one pass, so ``-½(Δ log|ψ| + |∇ log|ψ||²)`` costs one forward Laplacian.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from stde import indexed
from stde.core import JetValue
from stde.jets import evaluate_jets
from stde.lowering import attach_aux, flatten_argument, split_aux


def value_grad_laplacian(f: Callable[..., Any], *, argnums: int = 0,
                         sparse: bool = True, has_aux: bool = False) -> Callable[..., Any]:
    """``g(*args) -> (f(*args), ∇f, Δf)`` w.r.t. argument ``argnums``, in one collapsed 2-jet.

    Args:
      f: the function; its output may be any array (or pytree of arrays).
      argnums: which positional argument the derivatives are taken with respect to.
      sparse: hold the directions ``e_1 .. e_D`` as a
        :class:`stde.indexed.IndexedCoefficient` (per element, the few coordinates it
        depends on), so that the rules keep Jacobian sparsity (an element of
        per-particle features depends on one particle, of pair features on two) until
        an element depends on more than half of the coordinates (default; on the VMC
        suite's wavefunction as fast or faster than the dense identity from 4 electrons
        on); ``False``: a dense identity.
      has_aux: ``f`` returns ``(output, aux)``; the derivatives are of ``output`` and
        ``g`` returns ``((output, aux), ∇, Δ)``, as ``jax.value_and_grad(has_aux=True)``.

    Returns:
      ``g(*args)`` returning, per output leaf of shape ``S``, the value (``S``), the
      Jacobian shaped ``(*S, *x.shape)`` (for a scalar ``f``: the gradient shaped like
      the argument ``x``) and the Laplacian (``S``), each with ``f``'s output structure.
      ``g`` composes with ``jax.jit``, ``jax.vmap`` (e.g. over walkers) and ``jax.grad``
      (w.r.t. anything ``f`` closes over or other arguments).

    Raises:
      TypeError: non-float argument or non-integer ``argnums``.
      ValueError: ``argnums`` out of range.

    Example:
      >>> import jax.numpy as jnp
      >>> import stde
      >>> f = lambda x: (x ** 3).sum()
      >>> value, grad, lap = stde.value_grad_laplacian(f)(jnp.array([1.0, 2.0]))
      >>> float(value), grad.tolist(), float(lap)
      (9.0, [3.0, 12.0], 18.0)

    """
    main, aux_of = split_aux(f, has_aux)

    def g(*args: Any) -> tuple[Any, Any, Any]:
        h, x, argument = flatten_argument(main, args, argnums)
        dim = x.shape[0]
        directions = indexed.basis(dim, x.dtype) if sparse else jnp.eye(dim, dtype=x.dtype)
        inputs = [JetValue(x, (directions,), None)]
        outputs, out_tree = evaluate_jets(h, (x,), inputs, 2, dim)

        def gradient(o: JetValue) -> Any:
            shape = jnp.shape(o.primal)
            if o.lower[0] is None:
                return jnp.zeros((*shape, *argument.shape), jnp.result_type(o.primal))
            return jnp.moveaxis(o.lower[0], 0, -1).reshape(*shape, *argument.shape)

        def laplacian(o: JetValue) -> Any:
            return jnp.zeros_like(o.primal) if o.summed is None else o.summed

        unflatten = jax.tree_util.tree_unflatten
        return attach_aux((unflatten(out_tree, [o.primal for o in outputs]),
                           unflatten(out_tree, [gradient(o) for o in outputs]),
                           unflatten(out_tree, [laplacian(o) for o in outputs])),
                          aux_of, args, with_value=True)

    return g


__all__ = ["value_grad_laplacian"]
