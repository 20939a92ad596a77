"""Tutorial 2: collapsing: the Laplacian as one collapsed 2-jet (the forward Laplacian).

The Laplacian is a sum of ``D`` second directional derivatives ``Σ_i y_2(e_i)``. A
second Taylor coefficient is linear in the top input coefficient, so the ``D`` top
coefficients need not be propagated separately: ``stde.collapsed_jet`` carries the ``D``
first-order coefficients and only the *sum* of the second-order ones, ``1 + D + 1``
vectors instead of ``1 + 2D``.

Run: ``python examples/tutorial_2_collapsing_laplacian.py`` (``--tiny`` for tests).
"""

import math

import jax
import jax.numpy as jnp
from _tutorial import median_seconds, section, tiny

import stde

d = 4 if tiny() else 64
width = 8 if tiny() else 256
keys = jax.random.split(jax.random.PRNGKey(0), 3)
w1 = jax.random.normal(keys[0], (d, width)) / math.sqrt(d)
w2 = jax.random.normal(keys[1], (width, 1)) / math.sqrt(width)


def net(x):
    """A one-hidden-layer tanh network, scalar output."""
    return (jnp.tanh(x @ w1) @ w2)[0]


x = jax.random.normal(keys[2], (d,)) / math.sqrt(d)

section("1. Collapsed 2-jet with the basis directions")
_, _, laplacian = stde.collapsed_jet(net, (x,), ((jnp.eye(d),),), (None,))
reference = jnp.trace(jax.hessian(net)(x))
print(f"collapsed_jet Laplacian : {float(laplacian):.6f}")
print(f"trace of jax.hessian    : {float(reference):.6f}")

section("2. What is propagated")
print(f"D = {d}: standard Taylor mode carries 1 + 2D = {1 + 2 * d} vectors per variable,")
print(f"the collapsed jet 1 + D + 1 = {d + 2}: ratio {(d + 2) / (1 + 2 * d):.2f}.")

section("3. The library operator does the same")
import stde.operators as ops  # noqa: E402

print(f"stde.operator(net, ops.laplacian()) : {float(stde.operator(net, ops.laplacian())(x)):.6f}")

section("4. Timing against the Hessian trace (jit, CPU)")
batch = jax.random.normal(keys[2], (8 if tiny() else 64, d)) / math.sqrt(d)
collapsed = jax.jit(jax.vmap(stde.operator(net, ops.laplacian())))
hessian = jax.jit(jax.vmap(lambda y: jnp.trace(jax.hessian(net)(y))))
functions = {"collapsed Taylor": collapsed, "hessian trace": hessian}
repeats = 5 if tiny() else 31
seconds = median_seconds(functions, batch, repeats=repeats)
for name, fn in functions.items():
    cost = fn.lower(batch).compile().cost_analysis()
    flops = (cost[0] if isinstance(cost, list) else cost).get("flops", float("nan"))
    print(f"{name:16s}: XLA {flops / 1e6:7.2f} MFLOP, median {1e3 * seconds[name]:.2f} ms "
          f"per batch of {batch.shape[0]}")
print(f"(flops are XLA's, deterministic; times are medians of {repeats} compiled, interleaved")
print("calls, and vary with the machine and its load)")
