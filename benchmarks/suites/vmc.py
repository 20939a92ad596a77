"""Variational Monte Carlo: kinetic energy of a FermiNet-like wavefunction.

The wavefunction (:func:`log_psi`): one-electron features ``(r_i, |r_i|)``, pair
features ``(r_i - r_j, |r_i - r_j|)`` averaged into each electron's stream, one
self-attention layer, orbitals with exponential envelopes, a sum of two determinants
per spin (``slogdet`` of ``n/2 × n/2`` matrices, combined by a signed log-sum-exp) and
a pair Jastrow factor. Distances are smoothed (``sqrt(d² + 1)``) so every walker is a
smooth point.

The local kinetic energy is ``-½(Δ log|ψ| + |∇ log|ψ||²)`` per walker (``vmap``),
by three methods:

* ``nested``: ``jax.grad`` and the trace of ``jax.hessian``;
* ``folx``: ``folx.forward_laplacian`` (value, Jacobian, Laplacian), dense Jacobian;
* ``folx_sparse``: the same with ``sparsity_threshold=6``, as folx's README recommends
  for FermiNet/PsiFormer-like networks (what VMC codes run);
* ``stde_collapsed``: :func:`stde.value_grad_laplacian` (one collapsed 2-jet).

Suite ``vmc`` times the kinetic energy of a batch of walkers; ``vmc_gradient`` times
the gradient of the mean local energy w.r.t. the parameters (what a VMC optimiser
steps on), each over the number of electrons.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.suites.base import Case, Size, run_sweep

KineticFn = Callable[[Any, jax.Array], jax.Array]


def init_wavefunction(key: jax.Array, electrons: int, width: int = 32,
                      determinants: int = 2) -> dict[str, Any]:
    """Parameters of :func:`log_psi` for ``electrons`` (half spin up, half down)."""
    keys = iter(jax.random.split(key, 16))
    up = electrons // 2
    down = electrons - up

    def normal(shape: tuple[int, ...], fan_in: int) -> jax.Array:
        return jax.random.normal(next(keys), shape) / math.sqrt(fan_in)

    return {
        "embed": normal((4, width), 4), "embed_b": 0.1 * jnp.ones(width),
        "pair": normal((4, width), 4), "mix": normal((width, width), width),
        "query": normal((width, width), width), "key": normal((width, width), width),
        "value": normal((width, width), width),
        "orbitals_up": normal((determinants, width, up), width),
        "orbitals_down": normal((determinants, width, down), width),
        "decay_up": 0.5 + jax.random.uniform(next(keys), (determinants, up)),
        "decay_down": 0.5 + jax.random.uniform(next(keys), (determinants, down)),
        "weights": jnp.array([1.0, -0.5] + [0.25] * (determinants - 2))[:determinants],
        "jastrow": jnp.array([0.25, 1.0]),
    }


def log_psi(params: dict[str, Any], x: jax.Array) -> jax.Array:
    """``log|ψ(x)|`` for the flattened electron positions ``x`` (``3n``)."""
    r = x.reshape(-1, 3)
    n = r.shape[0]
    up = params["orbitals_up"].shape[-1]
    dist = jnp.sqrt(jnp.sum(r ** 2, -1, keepdims=True) + 1.0)                    # (n, 1)
    h = jnp.tanh(jnp.concatenate([r, dist], -1) @ params["embed"] + params["embed_b"][None, :])
    diff = r[:, None, :] - r[None, :, :]                                          # (n, n, 3)
    pair_dist = jnp.sqrt(jnp.sum(diff ** 2, -1, keepdims=True) + 1.0)             # (n, n, 1)
    g = jnp.tanh(jnp.concatenate([diff, pair_dist], -1) @ params["pair"])         # (n, n, w)
    h = jnp.tanh(h + jnp.mean(g, 1) @ params["mix"])
    scores = (h @ params["query"]) @ (h @ params["key"]).T / math.sqrt(h.shape[-1])
    h = h + jnp.tanh(jax.nn.softmax(scores, -1) @ (h @ params["value"]))
    log_dets = []
    signs = []
    for spin, rows in (("up", slice(0, up)), ("down", slice(up, n))):
        orbitals = jnp.einsum("iw,dwj->dij", h[rows], params[f"orbitals_{spin}"])
        envelope = jnp.exp(-dist[rows][None, :, :] * params[f"decay_{spin}"][:, None, :])
        sign, log_det = jnp.linalg.slogdet(orbitals * envelope)
        signs.append(sign)
        log_dets.append(log_det)
    log_abs, _ = jax.scipy.special.logsumexp(log_dets[0] + log_dets[1],
                                             b=signs[0] * signs[1] * params["weights"],
                                             return_sign=True)
    a, b = params["jastrow"]
    pairs = pair_dist[..., 0] - 1.0
    jastrow = jnp.sum(jnp.asarray(np.triu(np.ones((n, n)), 1), x.dtype)
                      * (a * pairs / (1.0 + b * pairs)))
    return log_abs + jastrow


def _kinetic(grad: jax.Array, laplacian: jax.Array) -> jax.Array:
    return -0.5 * (laplacian + jnp.sum(grad ** 2))


def nested_kinetic(params: Any, x: jax.Array) -> jax.Array:
    """``jax.grad`` and ``tr(jax.hessian)``."""
    grad = jax.grad(log_psi, 1)(params, x)
    return _kinetic(grad, jnp.trace(jax.hessian(log_psi, 1)(params, x)))


FOLX_SPARSITY_THRESHOLD = 6
"""folx's recommended ``sparsity_threshold`` for FermiNet-like networks (its README)."""


def folx_kinetic(params: Any, x: jax.Array, sparsity_threshold: int = 0) -> jax.Array:
    """``folx.forward_laplacian`` (raises ``ImportError`` when folx is missing).

    ``sparsity_threshold=0`` keeps folx's Jacobian dense; folx tracks Jacobian
    sparsity for inputs with at most ``sparsity_threshold`` non-zero entries per row.
    """
    from folx import forward_laplacian

    out = forward_laplacian(lambda y: log_psi(params, y),
                            sparsity_threshold=sparsity_threshold)(x)
    return _kinetic(out.jacobian.dense_array, out.laplacian)


def folx_sparse_kinetic(params: Any, x: jax.Array) -> jax.Array:
    """:func:`folx_kinetic` with folx's Jacobian sparsity (``sparsity_threshold=6``)."""
    return folx_kinetic(params, x, FOLX_SPARSITY_THRESHOLD)


def stde_kinetic(params: Any, x: jax.Array) -> jax.Array:
    """:func:`stde.value_grad_laplacian`: gradient and Laplacian from one collapsed 2-jet."""
    import stde

    _, grad, laplacian = stde.value_grad_laplacian(log_psi, argnums=1)(params, x)
    return _kinetic(grad, laplacian)


KINETIC: dict[str, KineticFn] = {"nested": nested_kinetic, "folx": folx_kinetic,
                                 "folx_sparse": folx_sparse_kinetic,
                                 "stde_collapsed": stde_kinetic}


def walkers_kinetic(kinetic: KineticFn) -> Callable[[Any, jax.Array], jax.Array]:
    """Per-walker kinetic energies of a batch ``(walkers, 3n)``."""
    return lambda params, walkers: jax.vmap(lambda x: kinetic(params, x))(walkers)


def energy_gradient(kinetic: KineticFn) -> Callable[[Any, jax.Array], Any]:
    """Mean local (kinetic) energy and its gradient w.r.t. the parameters."""
    def mean_energy(params: Any, walkers: jax.Array) -> jax.Array:
        return jnp.mean(walkers_kinetic(kinetic)(params, walkers))
    return jax.value_and_grad(mean_energy)


def setup(electrons: int, walkers: int, width: int) -> tuple[dict[str, Any], jax.Array]:
    """Parameters and a batch of walkers (normal positions)."""
    params = init_wavefunction(jax.random.PRNGKey(0), electrons, width)
    return params, jax.random.normal(jax.random.PRNGKey(1), (walkers, 3 * electrons))


def _suite(size: Size, log: Callable[[str], None], wrap: Callable[[KineticFn], Any],
           what: str) -> dict[str, Any]:
    notes: list[str] = []

    def build(electrons: int) -> Case:
        params, walkers = setup(electrons, size.vmc_walkers, size.vmc_width)
        case: Case = {}
        for method, kinetic in KINETIC.items():
            if method.startswith("folx"):
                try:
                    import folx  # noqa: F401
                except ImportError:
                    if not notes:
                        notes.append("folx not installed: folx columns skipped.")
                    continue
            case[method] = (wrap(kinetic), (params, walkers))
        return case

    rows = run_sweep("electrons", size.vmc_electrons, build, size.repeats, log=log)
    return {"description": f"{what}, FermiNet-like wavefunction (width {size.vmc_width}, "
                           f"attention, 2 determinants, Jastrow), {size.vmc_walkers} walkers",
            "variable": "electrons", "per": "electron", "rows": rows, "notes": notes}


def vmc_kinetic(size: Size, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Kinetic energy of every walker, per method, over the number of electrons."""
    return _suite(size, log, walkers_kinetic, "local kinetic energy -½(Δ log|ψ| + |∇ log|ψ||²)")


def vmc_gradient(size: Size, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Mean local energy and its parameter gradient, per method, over the number of electrons."""
    return _suite(size, log, energy_gradient,
                  "mean local kinetic energy and its gradient w.r.t. the parameters")
