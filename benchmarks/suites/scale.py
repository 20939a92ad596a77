"""Sparse STDE at scale: one training step against the same step without any operator.

The step is the value and the gradient w.r.t. the parameters of the mean squared
sparse-STDE Laplacian ``(D/S) Σ_s ∂²_{i_s} u`` of a tanh MLP over a batch, each point
with its own ``S`` sampled coordinates, swept over ``D`` up to 10⁶. Rows:

* ``primal``: the same step with the loss ``mean u(x)²`` (no operator): the floor.
* ``stde_sparse``: :func:`stde.stochastic_operator` with ``method="sparse"``: sparse
  tangents (indices and values), Floyd sampling; cost independent of ``D`` beyond the
  primal's.
* ``stde_dense_one_hot``: the same samples as dense one-hot tangents ``(S, D)`` through
  one collapsed 2-jet (the path before sparse coefficients): ``S·D·H`` per point in the
  first layer.
* ``permutation_sampler``: the sampler that path used, ``jax.random.choice(D, S,
  replace=False)`` per point (it permutes all ``D`` coordinates), alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import stde
import stde.operators as ops
from benchmarks.suites.base import Case, Size, run_sweep
from stde import sampling
from stde.pinn.harness import init_mlp, mlp


def _mean_square(per_point: Callable[[Any, jax.Array, jax.Array], jax.Array]
                 ) -> Callable[[Any, jax.Array, jax.Array], Any]:
    """``(params, X, keys) ↦ (mean_b per_point(params, x_b, key_b)², its gradient)``."""
    def loss(params: Any, points: jax.Array, keys: jax.Array) -> jax.Array:
        return jnp.mean(jax.vmap(lambda x, k: per_point(params, x, k))(points, keys) ** 2)
    return jax.value_and_grad(loss)


def _sparse(samples: int) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    g = stde.stochastic_operator(mlp, ops.laplacian(), samples, argnums=1, method="sparse")
    return lambda params, x, key: g(params, x, key)


def _dense_one_hot(samples: int) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    def estimate(params: Any, x: jax.Array, key: jax.Array) -> jax.Array:
        dim = x.shape[0]
        # The key stde.stochastic_operator gives its only component: the same samples.
        index = sampling.without_replacement(jax.random.split(key, 1)[0], dim, samples)
        rows = jax.nn.one_hot(index, dim, dtype=x.dtype)
        _, _, top = stde.collapsed_jet(lambda y: mlp(params, y), (x,), ((rows,),),
                                       (jnp.zeros_like(x),))
        return top * (dim / samples)
    return estimate


def _permutation_sampler(samples: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
    def sample(points: jax.Array, keys: jax.Array) -> jax.Array:
        dim = points.shape[1]
        return jax.vmap(lambda k: jax.random.choice(k, dim, (samples,), replace=False))(keys)
    return sample


def scale_step(size: Size, log: Callable[[str], None] = print) -> dict[str, Any]:
    """One training step per row over the sweep of ``D`` (``size.scale_dims``)."""
    samples, batch = size.pinn_samples, size.pinn_batch

    def build(dim: int) -> Case:
        params = init_mlp(jax.random.PRNGKey(0), [dim, *size.pinn_hidden, 1])
        points = jax.random.normal(jax.random.PRNGKey(1), (batch, dim)) / dim ** 0.5
        keys = jax.random.split(jax.random.PRNGKey(4), batch)
        args = (params, points, keys)
        return {"primal": (_mean_square(lambda p, x, _: mlp(p, x)), args),
                "stde_sparse": (_mean_square(_sparse(samples)), args),
                "stde_dense_one_hot": (_mean_square(_dense_one_hot(samples)), args),
                "permutation_sampler": (_permutation_sampler(samples), (points, keys))}

    rows = run_sweep("dim", size.scale_dims, build, size.repeats,
                     reference="stde_dense_one_hot", compare=lambda m: m == "stde_sparse",
                     log=log)
    hidden = "→".join(map(str, size.pinn_hidden))
    return {"description": f"training step (value + grad w.r.t. params) of the mean squared "
                           f"sparse-STDE Laplacian, MLP D→{hidden}→1, batch {batch}, "
                           f"{samples} sampled coordinates per point",
            "variable": "dim", "per": "dimension", "rows": rows, "reference": "primal",
            "notes": [
                "primal: value and grad of mean u(x)², no operator (the floor).",
                "stde_sparse: stde.stochastic_operator(method='sparse'), sparse tangents.",
                "stde_dense_one_hot: the same samples as (S, D) one-hot tangents through "
                "one collapsed 2-jet (rel_diff is against this row).",
                "permutation_sampler: jax.random.choice(D, S, replace=False) per point, "
                "the sampler the one-hot path used before, alone.",
                "Ratios (time_ratio, flops_ratio) are to the primal row; temp_bytes are "
                "XLA's temporary buffers (parameters and points come on top, equal for "
                "every row)."]}
