"""PINN training step (loss value and gradient w.r.t. the parameters) for the Poisson
residual ``Δu(x) - g(x)``, with the Laplacian estimated from ``S`` sampled coordinates:
sparse STDE (collapsed 2-jet with ``e_i``, ``i`` sampled) against SDGD with HVPs (nested
AD on the same sampled coordinates)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import methods
from benchmarks.common import init_mlp, mlp
from benchmarks.suites.base import Case, Size, run_sweep


def _source(x: jax.Array) -> jax.Array:
    return jnp.sin(x).sum()


def training_step(estimator: Callable[[Any, jax.Array, jax.Array], jax.Array]
                  ) -> Callable[[Any, jax.Array, jax.Array], Any]:
    """``(params, X, key) ↦ (loss, ∇_params loss)`` for a per-point Laplacian ``estimator``."""
    def loss(params: Any, points: jax.Array, key: jax.Array) -> jax.Array:
        residual = jax.vmap(lambda x: estimator(params, x, key) - _source(x))(points)
        return jnp.mean(residual ** 2)
    return jax.value_and_grad(loss)


def sampled_directions(key: jax.Array, dim: int, samples: int) -> jax.Array:
    """``S`` distinct basis vectors ``e_i`` (rows), ``i`` drawn without replacement."""
    index = jax.random.choice(key, dim, (samples,), replace=False)
    return jax.nn.one_hot(index, dim, dtype=jnp.float32)


def pinn_step(size: Size, log: Callable[[str], None] = print) -> dict[str, Any]:
    """One training step per method over the sweep of ``D``."""
    samples, batch = size.pinn_samples, size.pinn_batch

    def sampled(method: str) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
        def estimate(params: Any, x: jax.Array, key: jax.Array) -> jax.Array:
            dim = x.shape[0]
            rows = sampled_directions(key, dim, samples)
            return methods.directional_sum(method, mlp, rows, None, 2)(params, x) * (dim / samples)
        return estimate

    def build(dim: int) -> Case:
        params = init_mlp(jax.random.PRNGKey(0), dim, size.pinn_hidden)
        points = jax.random.normal(jax.random.PRNGKey(1), (batch, dim))
        key = jax.random.PRNGKey(4)
        case: Case = {"sdgd_hvp": (training_step(sampled("nested")), (params, points, key)),
                      "stde_sparse": (training_step(sampled("stde_collapsed")),
                                      (params, points, key))}
        if methods.operator_api_available(stochastic=True):
            import stde.operators as ops

            case["stde_operator"] = (training_step(methods.stochastic_operator_api(
                mlp, ops.laplacian(), samples, "sparse")), (params, points, key))
        return case

    rows = run_sweep("dim", size.pinn_dims, build, size.repeats, reference="sdgd_hvp",
                     compare=lambda m: m != "stde_operator", log=log)
    for row in rows:
        if "median_s" in row:
            row["iterations_per_s"] = 1.0 / row["median_s"]
    hidden = "→".join(map(str, size.pinn_hidden))
    return {"description": f"PINN step (value + grad w.r.t. params), Poisson residual, MLP "
                           f"D→{hidden}→1, batch {batch}, {samples} sampled coordinates",
            "variable": "dim", "per": "dimension", "rows": rows, "reference": "sdgd_hvp",
            "notes": ["sdgd_hvp: (D/S) Σ_s e_iᵀ∇²u e_i by forward-over-reverse HVPs.",
                      "stde_sparse: (D/S) Σ_s ∂²_i u by one collapsed 2-jet over the sampled e_i."]}
