"""The PINN harness: the network, the operator estimators and the loss, in one place.

``examples/train_pinn.py``, the PINN tutorial, the benchmarks' ``pinn`` suite and the
tests all train or measure through these functions, so a number in one of them (the
README's "SDGD (HVPs)" row, the benchmark's ``sdgd_hvp``) comes from the same code as
in the others:

* :func:`init_mlp` and :func:`mlp`: a plain-JAX tanh MLP with a scalar output.
* :func:`make_estimate`: ``estimate(f, *args, key) -> (f(*args), L f(*args))`` for an
  equation's second-order operator ``L``, by sparse or dense STDE
  (:func:`stde.stochastic_operator`), exactly (:func:`stde.operator`) or by the SDGD
  baseline (:func:`sdgd_estimate`, Hessian-vector products).
* :func:`make_loss`: the mean squared PDE residual of the network's ansatz over a batch
  of collocation points.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import stde
from stde.pinn.equations import Equation, Estimate

Array = Any
Params = list[tuple[Array, Array]]
Loss = Callable[[Params, Array, Array], Array]

METHODS = ("sparse", "dense", "exact", "sdgd")
"""The ways :func:`make_estimate` computes an equation's operator."""


# ---------------------------------------------------------------------------------------
# Network.
# ---------------------------------------------------------------------------------------


def init_mlp(key: Array, sizes: Sequence[int], *, bias: float = 0.0,
             dtype: Any = float, block_rows: int | None = None) -> Params:
    """Glorot-normal weights and constant biases for a tanh MLP with layer ``sizes``.

    Layer ``l`` maps ``sizes[l]`` to ``sizes[l + 1]`` features with weights drawn from
    ``N(0, 2 / (n_in + n_out))``, one key of ``jax.random.split(key, len(sizes) - 1)``
    per layer, so a seed gives the same network everywhere.

    ``jax.random.normal`` needs three times its output in temporary memory (1.5 GB for a
    ``10⁶ × 128`` first layer, more than that layer and its Adam moments need in a
    training step with :func:`stde.pinn.row_blocks.optimizer_step`). With
    ``block_rows``, the first layer's weight is drawn that many rows at a time instead,
    block ``i`` from ``jax.random.fold_in(layer_key, i)``: other numbers from the same
    distribution, drawn in one block's memory.

    Args:
      key: a PRNG key.
      sizes: the input size, the hidden widths and the output size (``1`` for
        :func:`mlp`).
      bias: every bias entry. The default ``0`` is the trainer's; the tests use a
        nonzero one so that no bias term can drop out of a derivative unnoticed.
      dtype: of the weights and biases (``float``: float32, or float64 with
        ``jax_enable_x64``).
      block_rows: draw the first layer's weight this many rows at a time (``None``: at
        once).

    Returns:
      ``[(weights (n_in, n_out), biases (n_out,)), ...]``, one pair per layer.

    Example:
      >>> import jax
      >>> params = init_mlp(jax.random.PRNGKey(0), [3, 8, 1])
      >>> [w.shape for w, _ in params], float(params[0][1].sum())
      ([(3, 8), (8, 1)], 0.0)
    """
    params = []
    for layer, (k, (n_in, n_out)) in enumerate(
            zip(jax.random.split(key, len(sizes) - 1), zip(sizes, sizes[1:]))):
        draw = _normal_rows if layer == 0 and block_rows else _normal
        w = draw(k, (n_in, n_out), dtype, block_rows) * math.sqrt(2.0 / (n_in + n_out))
        params.append((w, jnp.full(n_out, bias, dtype)))
    return params


def _normal(key: Array, shape: tuple[int, int], dtype: Any, block_rows: int | None) -> Array:
    del block_rows
    return jax.random.normal(key, shape, dtype)


def _normal_rows(key: Array, shape: tuple[int, int], dtype: Any, block_rows: int) -> Array:
    """Standard normal ``shape`` drawn ``block_rows`` rows at a time, in place."""
    rows, block = shape[0], min(block_rows, shape[0])

    def draw(i: Array, start: Array, size: int, out: Array) -> Array:
        values = jax.random.normal(jax.random.fold_in(key, i), (size, *shape[1:]), dtype)
        return jax.lax.dynamic_update_slice_in_dim(out, values, start, 0)

    out = jax.lax.fori_loop(0, rows // block, lambda i, out: draw(i, i * block, block, out),
                            jnp.zeros(shape, dtype))
    if rows % block:
        out = draw(rows // block, rows - rows % block, rows % block, out)
    return out


def mlp(params: Params, z: Array) -> Array:
    """The network's scalar output at one point ``z``: tanh hidden layers, a linear last.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> params = init_mlp(jax.random.PRNGKey(0), [3, 8, 1])
      >>> mlp(params, jnp.ones(3)).shape
      ()
    """
    h = z
    for w, b in params[:-1]:
        h = jnp.tanh(h @ w + b)
    w, b = params[-1]
    return (h @ w + b)[0]


# ---------------------------------------------------------------------------------------
# Operator estimators.
# ---------------------------------------------------------------------------------------


def sdgd_estimate(directions: np.ndarray | None, n_samples: int) -> Estimate:
    """The SDGD baseline: ``(R/S) Σ_s v_sᵀ ∇²f v_s`` over ``S`` sampled rows ``v_s``.

    Second derivatives come from Hessian-vector products (forward over reverse), one per
    sampled direction, as in SDGD (Hu et al., 2023). The ``S`` rows are drawn without
    replacement from the ``R`` rows of ``directions``.

    Args:
      directions: ``(R, d)`` rows whose second derivatives sum to the operator;
        ``None`` means the coordinate axes (the Laplacian, ``R = d``).
      n_samples: ``S``, at most ``R``.

    Returns:
      ``estimate(f, x, *rest, key) -> (f(x, *rest), the estimate in x)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> estimate = sdgd_estimate(None, 3)  # all 3 axes: the exact Laplacian
      >>> f = lambda x: jnp.sum(x ** 3)
      >>> value, laplacian = estimate(f, jnp.array([1.0, 2.0, 0.5]), key=jax.random.PRNGKey(0))
      >>> float(value), float(laplacian)  # Δf = 6 Σ x_i
      (9.125, 21.0)
    """

    def estimate(f: Callable[..., Array], x: Array, *rest: Array, key: Array
                 ) -> tuple[Array, Array]:
        dim = x.size
        count = dim if directions is None else directions.shape[0]
        if n_samples > count:
            raise ValueError(f"n_samples={n_samples} exceeds the {count} directions that "
                             f"SDGD samples from (without replacement)")
        rows = jax.random.choice(key, count, (n_samples,), replace=False)
        if directions is None:
            sampled = jax.nn.one_hot(rows, dim, dtype=x.dtype)
        else:
            sampled = jnp.asarray(directions, x.dtype)[rows]
        of_x = lambda y: f(y, *rest)  # noqa: E731
        grad = jax.grad(of_x)

        def curvature(v: Array) -> Array:
            return jnp.vdot(v, jax.jvp(grad, (x,), (v,))[1])

        return of_x(x), jax.vmap(curvature)(sampled).sum() * (count / n_samples)

    return estimate


def make_estimate(equation: Equation, method: str, n_samples: int) -> Estimate:
    """``estimate(f, *args, key) -> (f(*args), L f(*args))`` for ``equation``'s operator.

    Args:
      equation: supplies the operator ``L`` (``equation.operator()``) and, for SDGD, the
        directions whose second derivatives sum to it. Without an operator (KdV, whose
        residual takes its own derivatives) the estimate is ``(f(*args), 0)``.
      method: ``sparse`` or ``dense`` STDE (:func:`stde.stochastic_operator`),
        ``exact`` (:func:`stde.operator`) or ``sdgd`` (:func:`sdgd_estimate`).
      n_samples: sampled directions per estimate (unused by ``exact``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from stde.pinn.equations import make_equation
      >>> estimate = make_estimate(make_equation("poisson", 3), "exact", 1)
      >>> f = lambda x: jnp.sum(x ** 2)
      >>> [float(v) for v in estimate(f, jnp.ones(3), key=jax.random.PRNGKey(0))]
      [3.0, 6.0]
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    if equation.operator is None:
        return lambda f, *args, key: (f(*args), jnp.zeros(()))
    if method == "sdgd":
        return sdgd_estimate(equation.sdgd_directions, n_samples)
    op = equation.operator()
    if method == "exact":
        return lambda f, *args, key: stde.operator(f, op, with_value=True)(*args)

    def estimate(f: Callable[..., Array], *args: Array, key: Array) -> tuple[Array, Array]:
        g = stde.stochastic_operator(f, op, n_samples, method=method, with_value=True)
        return g(*args, key)

    return estimate


# ---------------------------------------------------------------------------------------
# Loss.
# ---------------------------------------------------------------------------------------


def make_loss(equation: Equation, estimate: Estimate, *, key_per_point: bool = True
              ) -> Loss:
    """``loss(params, points, keys)``: the mean over points of the squared residual vector.

    The network ``u = equation.ansatz(mlp(params, ·))`` enters
    ``equation.residual(u, z, key, estimate)`` at each collocation point ``z``.

    Args:
      equation: supplies the ansatz and the residual.
      estimate: the operator's estimator (:func:`make_estimate`).
      key_per_point: ``True``: ``keys`` holds one key per point, so every point samples
        its own directions (the trainer). ``False``: ``keys`` is one key and all points
        share one draw of directions, as SDGD samples its dimensions once per step (the
        benchmarks' ``pinn`` suite). With dense directions (SDGD's one-hot rows) that
        step is cheaper, since the directions' products with the first layer are
        computed once for the batch: 1.39x fewer XLA flops for SDGD at ``d = 1000``
        (MLP 128x3, batch 16, 16 samples); sparse STDE's cost hardly changes (0.5%).

    Returns:
      ``loss(params, points (n, input_dim), keys) -> scalar``.

    Example:
      >>> import jax
      >>> from stde.pinn.equations import make_equation
      >>> equation = make_equation("allen_cahn", 3)
      >>> loss = make_loss(equation, make_estimate(equation, "sparse", 2))
      >>> params = init_mlp(jax.random.PRNGKey(0), [3, 8, 1])
      >>> points = equation.sample(jax.random.PRNGKey(1), 4)
      >>> loss(params, points, jax.random.split(jax.random.PRNGKey(2), 4)).shape
      ()
    """

    def pointwise(params: Params, z: Array, key: Array) -> Array:
        u = lambda y: equation.ansatz(lambda q: mlp(params, q), y)  # noqa: E731
        return jnp.sum(equation.residual(u, z, key, estimate) ** 2)

    key_axis = 0 if key_per_point else None

    def loss(params: Params, points: Array, keys: Array) -> Array:
        return jnp.mean(jax.vmap(pointwise, (None, 0, key_axis))(params, points, keys))

    return loss
