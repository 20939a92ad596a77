"""Tutorial 5: the kinetic energy of a neural wavefunction (variational Monte Carlo).

VMC minimises the mean local energy of walkers drawn from ``|ψ|²``. Its kinetic part is
``-½ Δψ/ψ = -½(Δ log|ψ| + |∇ log|ψ||²)``: it needs the Laplacian *and* the gradient
of ``log|ψ|``. The exact collapsed Laplacian pushes the directions ``e_1 .. e_D`` as
first-order coefficients, so its first-order output coefficients already are the
gradient: ``stde.value_grad_laplacian`` returns value, gradient and Laplacian from one
collapsed 2-jet. Wavefunctions end in determinants. ``jnp.linalg.slogdet`` is a
``custom_jvp`` function, so (as under ``jax.hessian``) its derivatives come from its
JVP rule, ``tr(A⁻¹ Ȧ)``, differentiated once more; stde does that at the shared primal
point, so each walker's matrices are factorised once, not once per direction. Bare
factorisations (``lax.linalg.lu``, ``cholesky``, ``eigh``, ...) have Taylor rules that
factorise the primal once and get every coefficient from solves with its factors
(``stde/rules/linalg.py``).

Run: ``python examples/tutorial_5_vmc.py`` (``--tiny`` for tests).
"""

import math
import time
import warnings

import jax
import jax.numpy as jnp
from _tutorial import section, tiny

import stde

electrons = 4            # two spin up, two spin down
width = 8 if tiny() else 32
keys = jax.random.split(jax.random.PRNGKey(0), 5)
params = {
    "embed": jax.random.normal(keys[0], (4, width)) / 2.0,
    "up": jax.random.normal(keys[1], (width, 2)) / math.sqrt(width),
    "down": jax.random.normal(keys[2], (width, 2)) / math.sqrt(width),
    "jastrow": jnp.float32(0.3),
}


def log_psi(params, x):
    """``log|ψ|``: per-electron features, a Slater determinant per spin, a pair Jastrow."""
    r = x.reshape(electrons, 3)
    dist = jnp.sqrt(jnp.sum(r ** 2, -1, keepdims=True) + 1.0)
    h = jnp.tanh(jnp.concatenate([r, dist], -1) @ params["embed"])      # (electrons, width)
    envelope = jnp.exp(-dist)
    _, log_up = jnp.linalg.slogdet((h[:2] @ params["up"]) * envelope[:2])
    _, log_down = jnp.linalg.slogdet((h[2:] @ params["down"]) * envelope[2:])
    pairs = jnp.sqrt(jnp.sum((r[:, None] - r[None]) ** 2, -1) + 1.0)
    return log_up + log_down + params["jastrow"] * jnp.sum(jnp.triu(pairs, 1))


def kinetic(params, x):
    """Local kinetic energy from one collapsed pass."""
    _, grad, laplacian = stde.value_grad_laplacian(log_psi, argnums=1)(params, x)
    return -0.5 * (laplacian + jnp.sum(grad ** 2))


x = jax.random.normal(keys[3], (3 * electrons,))

section("1. Value, gradient and Laplacian in one pass")
with warnings.catch_warnings(record=True) as caught:   # a primitive without a Taylor rule
    warnings.simplefilter("always")                    # would warn here (nested-JVP fallback)
    value, grad, laplacian = jax.jit(stde.value_grad_laplacian(log_psi, argnums=1))(params, x)
print(f"log|ψ|       : {float(value):+.6f}")
print(f"|∇ log|ψ||   : {float(jnp.linalg.norm(grad)):.6f}  "
      f"(jax.grad: {float(jnp.linalg.norm(jax.jit(jax.grad(log_psi, 1))(params, x))):.6f})")
hessian_trace = jax.jit(lambda params, x: jnp.trace(jax.hessian(log_psi, 1)(params, x)))
print(f"Δ log|ψ|     : {float(laplacian):+.6f}  "
      f"(trace of jax.hessian: {float(hessian_trace(params, x)):+.6f})")

section("2. Walkers: vmap, and the gradient of the mean local energy")
walkers = jax.random.normal(keys[4], (8 if tiny() else 64, 3 * electrons))


def mean_energy(params, walkers):
    """The loss a VMC optimiser differentiates (kinetic part only; add the potential)."""
    return jnp.mean(jax.vmap(lambda w: kinetic(params, w))(walkers))


energy, gradient = jax.jit(jax.value_and_grad(mean_energy))(params, walkers)
print(f"mean kinetic energy over {walkers.shape[0]} walkers: {float(energy):.6f}")
print("parameter gradient norms: " + ", ".join(
    f"{k} {float(jnp.linalg.norm(v)):.4f}" for k, v in gradient.items()))

section("3. No fallback: every primitive has a Taylor rule")
print(f"fallback warnings in section 1: {len(caught)}")
print("rules for lu and triangular_solve:",
      {"lu", "triangular_solve"} <= stde.rules.registered_names())

section("4. Timing against the Hessian trace (jit, CPU)")
hessian = jax.jit(jax.vmap(lambda w: -0.5 * (
    jnp.trace(jax.hessian(log_psi, 1)(params, w))
    + jnp.sum(jax.grad(log_psi, 1)(params, w) ** 2))))
collapsed = jax.jit(jax.vmap(lambda w: kinetic(params, w)))
for name, fn in (("collapsed Taylor", collapsed), ("hessian trace", hessian)):
    fn(walkers).block_until_ready()
    start = time.perf_counter()
    for _ in range(10):
        out = fn(walkers)
    out.block_until_ready()
    print(f"{name:16s}: {1e3 * (time.perf_counter() - start) / 10:.2f} ms per batch of walkers")
print("For folx and a FermiNet-like network: python -m benchmarks.run --suite vmc")
