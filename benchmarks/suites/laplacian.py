"""Second-order suites: exact Laplacian (batch sweep), weighted Laplacian (rank sweep),
stochastic Laplacian (sample sweep)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import methods
from benchmarks.suites.base import Case, Size, run_sweep
from stde.pinn.harness import init_mlp, mlp


def batched(g: Callable[..., Any]) -> Callable[..., Any]:
    """``(params, X, *rest) ↦ vmap over the rows of X`` of ``g(params, x, *rest)``."""
    return lambda params, points, *rest: jax.vmap(
        lambda x: g(params, x, *rest))(points)


def _setup(size: Size, dim: int, batch: int) -> tuple[Any, jax.Array]:
    key = jax.random.PRNGKey(0)
    params = init_mlp(key, [dim, *size.hidden, 1])
    return params, jax.random.normal(jax.random.PRNGKey(1), (batch, dim))


def dense_stochastic_case(params: Any, points: jax.Array, samples: int,
                          draw: Callable[..., jax.Array], order: int, scale: float,
                          operator: Callable[[Any], Any]) -> Case:
    """Dense STDE ``scale · Σ_s y_order(v_s)``, ``v_s ~ draw``, for every method.

    ``operator(stde.operators)`` names the same estimator for the operator API.
    """
    key = jax.random.PRNGKey(3)
    dim = points.shape[-1]

    def estimator(method: str) -> Callable[..., Any]:
        def g(p: Any, x: jax.Array, k: jax.Array) -> jax.Array:
            v = draw(k, (samples, dim), jnp.float32)
            return methods.directional_sum(method, mlp, v, None, order)(p, x) * scale
        return g

    names = (*methods.DIRECTIONAL_METHODS, *(("nested_jvp",) if order > 2 else ()))
    case: Case = {m: (batched(estimator(m)), (params, points, key)) for m in names}
    if methods.operator_api_available(stochastic=True):
        import stde.operators as ops

        case["stde_operator"] = (batched(methods.stochastic_operator_api(
            mlp, operator(ops), samples, "dense")), (params, points, key))
    return case


def exact_laplacian(size: Size, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Exact Laplacian of the tanh MLP at ``D = size.laplacian_dim`` over a batch sweep."""
    dim = size.laplacian_dim
    eye = jnp.eye(dim)
    notes = []

    def build(batch: int) -> Case:
        params, points = _setup(size, dim, batch)
        case: Case = {m: (batched(methods.directional_sum(m, mlp, eye, None, 2)), (params, points))
                      for m in methods.DIRECTIONAL_METHODS}
        case["nested"] = (batched(methods.nested_laplacian(mlp)), (params, points))
        try:
            case["folx"] = (batched(methods.folx_laplacian(mlp)), (params, points))
        except ImportError:
            if not notes:
                notes.append("folx not installed: folx column skipped.")
        if methods.operator_api_available():
            import stde.operators as ops

            case["stde_operator"] = (batched(methods.operator_api(mlp, ops.laplacian())),
                                     (params, points))
        return case

    rows = run_sweep("batch", size.batches, build, size.repeats, log=log,
                     grad_methods=("nested", "folx", "stde_collapsed", "stde_operator"))
    return {"description": f"exact Laplacian, tanh MLP {dim}→{'→'.join(map(str, size.hidden))}→1",
            "variable": "batch", "per": "datum", "rows": rows, "notes": notes}


def weighted_laplacian(size: Size, log: Callable[[str], None] = print) -> dict[str, Any]:
    """``tr(σσᵀ∇²f)`` with ``σ`` of shape ``(D, R)``, ``R/D ∈ {0.1, 0.5, 1}``."""
    dim, batch = size.laplacian_dim, size.sweep_batch
    ranks = sorted({max(1, round(r * dim)) for r in (0.1, 0.5, 1.0)})
    notes = ["folx: Laplacian in z of z ↦ f(x + σz) at z = 0 (R inputs)."]

    def build(rank: int) -> Case:
        params, points = _setup(size, dim, batch)
        sigma = jax.random.normal(jax.random.PRNGKey(2), (dim, rank)) / jnp.sqrt(rank)
        case: Case = {m: (batched(methods.directional_sum(m, mlp, sigma.T, None, 2)),
                          (params, points)) for m in methods.DIRECTIONAL_METHODS}
        try:
            case["folx"] = (batched(methods.folx_weighted_laplacian(mlp, sigma)),
                            (params, points))
        except ImportError:
            pass
        if methods.operator_api_available():
            import stde.operators as ops

            case["stde_operator"] = (batched(methods.operator_api(
                mlp, ops.weighted_laplacian(sigma))), (params, points))
        return case

    rows = run_sweep("rank", ranks, build, size.repeats, log=log)
    return {"description": f"weighted Laplacian tr(σσᵀ∇²f), D={dim}, batch {batch}, "
                           f"σ ∈ R^(D×R)", "variable": "rank", "per": "direction", "rows": rows,
            "notes": notes}


def stochastic_laplacian(size: Size, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Dense (Rademacher) STDE of the Laplacian over a sweep of sample counts."""
    dim, batch = size.stochastic_dim, size.sweep_batch

    def build(samples: int) -> Case:
        params, points = _setup(size, dim, batch)
        return dense_stochastic_case(params, points, samples, jax.random.rademacher, 2,
                                     1 / samples, lambda ops: ops.laplacian())

    rows = run_sweep("samples", size.samples, build, size.repeats, log=log,
                     compare=lambda m: m != "stde_operator")
    return {"description": f"stochastic Laplacian (dense Rademacher STDE), D={dim}, batch {batch}",
            "variable": "samples", "per": "sample", "rows": rows, "notes": []}
