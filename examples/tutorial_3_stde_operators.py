"""Tutorial 3: operators and STDE, unbiased estimates at a cost independent of ``d``.

``stde.operators`` describes linear differential operators (Laplacian, weighted
Laplacian, biharmonic, mixed partials, sums of them). ``stde.operator`` evaluates one
exactly; ``stde.stochastic_operator`` returns an unbiased estimate from ``n_samples``
random jets (STDE, Shi et al. 2024): ``"sparse"`` samples basis directions without
replacement and rescales, ``"dense"`` uses Rademacher tangents over all coordinates.

Run: ``python examples/tutorial_3_stde_operators.py`` (``--tiny`` for tests).
"""

import math

import jax
import jax.numpy as jnp
from _tutorial import section, tiny

import stde
import stde.operators as ops

d = 6 if tiny() else 50
trials = 50 if tiny() else 400
keys = jax.random.split(jax.random.PRNGKey(0), 3)
w = jax.random.normal(keys[0], (d, 16)) / math.sqrt(d)


def f(x):
    """A scalar test function of ``d`` variables."""
    return jnp.sum(jnp.sin(x @ w)) + 0.1 * jnp.sum(x ** 4)


x = jax.random.normal(keys[1], (d,)) / math.sqrt(d)

section("1. Exact operators")
for name, op in (("laplacian", ops.laplacian()),
                 ("biharmonic", ops.biharmonic()),
                 ("∂0²∂1 - 2 ∂2", ops.partial(0, 0, 1) - 2.0 * ops.partial(2)),
                 ("weighted (σ = diag(1..d)/d)",
                  ops.weighted_laplacian(jnp.diag(jnp.arange(1.0, d + 1) / d)))):
    print(f"{name:28s}: {float(jax.jit(stde.operator(f, op))(x)):+.6f}")
hessian = jax.jit(jax.hessian(f))(x)
print(f"{'laplacian via jax.hessian':28s}: {float(jnp.trace(hessian)):+.6f}")

section("2. Stochastic estimates of the Laplacian are unbiased")
exact = float(jax.jit(stde.operator(f, ops.laplacian()))(x))
samples = 2 if tiny() else 8
for method in ("sparse", "dense"):
    estimator = jax.jit(jax.vmap(stde.stochastic_operator(f, ops.laplacian(), samples,
                                                          method=method), (None, 0)))
    estimates = estimator(x, jax.random.split(keys[2], trials))
    mean, std = float(estimates.mean()), float(estimates.std())
    print(f"{method:6s} S={samples}: mean of {trials} = {mean:+.4f} ± "
          f"{std / math.sqrt(trials):.4f} (exact {exact:+.4f}), per-sample std {std:.3f}")

section("3. With n_samples ≥ d the sparse estimate is exact")
full = jax.jit(stde.stochastic_operator(f, ops.laplacian(), d, method="sparse"))(x, keys[2])
print(f"sparse, S = d = {d}: {float(full):+.6f}  (exact {exact:+.6f})")
