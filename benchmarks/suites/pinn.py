"""PINN training step (loss value and gradient w.r.t. the parameters) for the Poisson
residual ``Δu(x) - g(x)``, with the Laplacian estimated from ``S`` sampled coordinates:
sparse STDE (collapsed 2-jet with ``e_i``, ``i`` sampled) against SDGD with HVPs (nested
AD on the same sampled coordinates).

The step is the trainer's (``examples/train_pinn.py``): :func:`stde.pinn.harness.make_loss`
with the estimators of :func:`stde.pinn.harness.make_estimate`, on the harness's tanh MLP;
all points of a batch share one draw of coordinates (``key_per_point=False``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import stde.operators as ops
from benchmarks import methods
from benchmarks.suites.base import Case, Size, run_sweep
from stde.pinn.equations import Equation, Estimate
from stde.pinn.harness import init_mlp, make_estimate, make_loss


def _source(x: jax.Array) -> jax.Array:
    return jnp.sin(x).sum()


def poisson_step(dim: int) -> Equation:
    """``Δu = Σ_i sin x_i`` on ``R^D`` (``u* = -Σ_i sin x_i``), the network without ansatz."""
    def residual(u: Callable[[jax.Array], jax.Array], x: jax.Array, key: jax.Array,
                 estimate: Estimate) -> jax.Array:
        return (estimate(u, x, key=key)[1] - _source(x))[None]

    return Equation(
        name="poisson_step", dim=dim, default_dim=dim, input_dim=dim,
        exact=lambda x: -jnp.sin(x).sum(-1), trivial=lambda x: jnp.zeros(x.shape[:-1]),
        ansatz=lambda net, x: net(x), sample=lambda key, n: jax.random.normal(key, (n, dim)),
        residual=residual, operator=ops.laplacian, sdgd_directions=None,
        description="Δu = Σ sin x_i, the benchmark's PINN step")


def sampled_directions(key: jax.Array, dim: int, samples: int) -> jax.Array:
    """``S`` distinct basis vectors ``e_i`` (rows), ``i`` drawn without replacement."""
    index = jax.random.choice(key, dim, (samples,), replace=False)
    return jax.nn.one_hot(index, dim, dtype=jnp.float32)


def collapsed_estimate(samples: int) -> Estimate:
    """``(D/S) Σ_s ∂²_{i_s} f`` by one collapsed 2-jet over ``S`` sampled ``e_i``."""
    def estimate(f: Callable[[jax.Array], jax.Array], x: jax.Array, *, key: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
        dim = x.shape[0]
        rows = sampled_directions(key, dim, samples)
        laplacian = methods.collapsed_directional_sum(lambda _, y: f(y), None, x, rows, None, 2)
        return f(x), laplacian * (dim / samples)
    return estimate


def pinn_step(size: Size, log: Callable[[str], None] = print) -> dict[str, Any]:
    """One training step per method over the sweep of ``D``."""
    samples, batch = size.pinn_samples, size.pinn_batch

    def build(dim: int) -> Case:
        equation = poisson_step(dim)
        params = init_mlp(jax.random.PRNGKey(0), [dim, *size.pinn_hidden, 1])
        points = jax.random.normal(jax.random.PRNGKey(1), (batch, dim))
        args = (params, points, jax.random.PRNGKey(4))
        estimates = {"sdgd_hvp": make_estimate(equation, "sdgd", samples),
                     "stde_sparse": collapsed_estimate(samples)}
        if methods.operator_api_available(stochastic=True):
            estimates["stde_operator"] = make_estimate(equation, "sparse", samples)
        return {name: (jax.value_and_grad(make_loss(equation, estimate, key_per_point=False)),
                       args) for name, estimate in estimates.items()}

    rows = run_sweep("dim", size.pinn_dims, build, size.repeats, reference="sdgd_hvp",
                     compare=lambda m: m != "stde_operator", log=log)
    for row in rows:
        if "median_s" in row:
            row["iterations_per_s"] = 1.0 / row["median_s"]
    hidden = "→".join(map(str, size.pinn_hidden))
    return {"description": f"PINN step (value + grad w.r.t. params), Poisson residual, MLP "
                           f"D→{hidden}→1, batch {batch}, {samples} sampled coordinates",
            "variable": "dim", "per": "dimension", "rows": rows, "reference": "sdgd_hvp",
            "notes": ["sdgd_hvp: (D/S) Σ_s e_iᵀ∇²u e_i by forward-over-reverse HVPs "
                      "(stde.pinn.harness.sdgd_estimate, the trainer's --method sdgd).",
                      "stde_sparse: (D/S) Σ_s ∂²_i u by one collapsed 2-jet over the sampled e_i."]}
