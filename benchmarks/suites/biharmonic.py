"""Fourth-order suites: exact biharmonic (batch sweep), stochastic biharmonic (sample
sweep), one mixed fourth-order operator (batch sweep)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import methods
from benchmarks.suites.base import Case, Size, run_sweep
from benchmarks.suites.laplacian import batched, dense_stochastic_case
from stde.pinn.harness import init_mlp, mlp

MIXED_TERMS = {(0, 0, 1, 1): 1.0, (0, 0, 0, 2): 2.0}
"""The mixed operator ``∂0²∂1² + 2 ∂0³∂2``."""


def _setup(size: Size, dim: int, batch: int) -> tuple[Any, jax.Array]:
    params = init_mlp(jax.random.PRNGKey(0), [dim, *size.hidden, 1])
    return params, jax.random.normal(jax.random.PRNGKey(1), (batch, dim))


def collapsed_laplacian(f: methods.Scalar) -> methods.Scalar:
    """``x ↦ Δf`` by one collapsed 2-jet with ``e_1..e_D`` (composable with itself)."""
    def laplacian(params: Any, x: jax.Array) -> jax.Array:
        return methods.collapsed_directional_sum(f, params, x, jnp.eye(x.shape[0], dtype=x.dtype),
                                                 None, 2)
    return laplacian


def _interpolation_case(terms: dict[tuple[int, ...], float], dim: int, params: Any,
                        points: jax.Array) -> Case:
    directions, weights, order = methods.interpolation_directions(terms, dim)
    return {m: (batched(methods.directional_sum(m, mlp, jnp.asarray(directions), weights, order)),
                (params, points)) for m in methods.DIRECTIONAL_METHODS if m != "nested"}


def exact_biharmonic(size: Size, log: Callable[[str], None] = print) -> dict[str, Any]:
    """``Δ²f`` at ``D = size.biharmonic_dim`` over a batch sweep."""
    dim = size.biharmonic_dim
    directions, _, _ = methods.interpolation_directions(methods.biharmonic_terms(dim), dim)

    def build(batch: int) -> Case:
        params, points = _setup(size, dim, batch)
        case: Case = {"nested": (batched(methods.nested_laplacian(methods.nested_laplacian(mlp))),
                                 (params, points))}
        case.update(_interpolation_case(methods.biharmonic_terms(dim), dim, params, points))
        case["stde_collapsed_lap2"] = (batched(collapsed_laplacian(collapsed_laplacian(mlp))),
                                       (params, points))
        if methods.operator_api_available():
            import stde.operators as ops

            case["stde_operator"] = (batched(methods.operator_api(mlp, ops.biharmonic())),
                                     (params, points))
        return case

    rows = run_sweep("batch", size.batches, build, size.repeats, log=log)
    return {"description": f"exact biharmonic Δ², D={dim}",
            "variable": "batch", "per": "datum", "rows": rows,
            "notes": ["nested: Laplacian of Laplacian by vmapped forward-over-reverse HVPs.",
                      f"taylor / stde_jet / stde_collapsed: {len(directions)} pure 4-jets from "
                      "the interpolation formula (collapsed: one pass per weight sign).",
                      "stde_collapsed_lap2: collapsed Laplacian of a collapsed Laplacian."]}


def stochastic_biharmonic(size: Size, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Dense STDE ``(1/3S) Σ_s y_4(v_s)`` with Gaussian ``v_s`` over a sample sweep."""
    dim, batch = size.stochastic_dim, size.sweep_batch

    def build(samples: int) -> Case:
        params, points = _setup(size, dim, batch)
        return dense_stochastic_case(params, points, samples, jax.random.normal, 4,
                                     1 / (3 * samples), lambda ops: ops.biharmonic())

    rows = run_sweep("samples", size.samples, build, size.repeats, log=log,
                     compare=lambda m: m != "stde_operator")
    return {"description": f"stochastic biharmonic (Gaussian dense STDE, 4-jets), D={dim}, "
                           f"batch {batch}", "variable": "samples", "per": "sample", "rows": rows,
            "notes": ["nested: ⟨∂⁴f, v⊗4⟩ = vᵀ∇²(vᵀ∇²f v)v by nested forward-over-reverse "
                      "HVPs (grad of grad, as the exact biharmonic's Laplacian of Laplacian).",
                      "nested_jvp: the same by jvp∘jvp over one HVP, the cheapest nested "
                      "form."]}


def mixed_operator(size: Size, log: Callable[[str], None] = print) -> dict[str, Any]:
    """``∂0²∂1² + 2 ∂0³∂2`` at ``D = size.biharmonic_dim`` over a batch sweep."""
    dim = size.biharmonic_dim

    def nested(params: Any, x: jax.Array) -> jax.Array:
        return sum(c * methods.nested_partial(mlp, idx)(params, x)
                   for idx, c in MIXED_TERMS.items())

    def build(batch: int) -> Case:
        params, points = _setup(size, dim, batch)
        case: Case = {"nested": (batched(nested), (params, points))}
        case.update(_interpolation_case(MIXED_TERMS, dim, params, points))
        if methods.operator_api_available():
            import stde.operators as ops

            case["stde_operator"] = (batched(methods.operator_api(
                mlp, ops.from_terms(MIXED_TERMS))), (params, points))
        return case

    rows = run_sweep("batch", size.batches, build, size.repeats, log=log)
    return {"description": f"mixed operator ∂0²∂1² + 2∂0³∂2, D={dim}", "variable": "batch",
            "per": "datum", "rows": rows,
            "notes": ["nested: jvp∘jvp∘jvp of one gradient entry per term; Taylor methods: "
                      "interpolation 4-jets."]}
