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
* ``train_primal`` and ``train_stde_sparse``: whole training steps, the ``primal`` and
  ``stde_sparse`` rows' value and gradient followed by Adam's update, parameters and
  Adam's moments donated (updated in place), each measured in a fresh process of its own
  (:func:`training_step`) so that its peak resident memory is its own: ``peak_rss_ratio``
  is that peak over the bytes of the parameters and Adam's two moments.
* ``train_stde_sparse_row_blocks``: ``train_stde_sparse`` with the first layer's weight
  drawn and updated :data:`BLOCK_ROWS` rows at a time
  (:func:`stde.pinn.row_blocks.optimizer_step`), so that neither its gradient nor the
  random draw's temporaries are ever held whole.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

import stde
import stde.operators as ops
from benchmarks.common import compile_stats
from benchmarks.suites.base import Case, Size, run_sweep
from stde import sampling
from stde.pinn.harness import init_mlp, mlp
from stde.pinn.row_blocks import optimizer_step


def _mean_square_loss(per_point: Callable[[Any, jax.Array, jax.Array], jax.Array]
                      ) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    """``(params, X, keys) ↦ mean_b per_point(params, x_b, key_b)²``."""
    def loss(params: Any, points: jax.Array, keys: jax.Array) -> jax.Array:
        return jnp.mean(jax.vmap(lambda x, k: per_point(params, x, k))(points, keys) ** 2)
    return loss


def _mean_square(per_point: Callable[[Any, jax.Array, jax.Array], jax.Array]
                 ) -> Callable[[Any, jax.Array, jax.Array], Any]:
    """``(params, X, keys) ↦ (mean square of per_point, its gradient)``."""
    return jax.value_and_grad(_mean_square_loss(per_point))


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


def _losses(samples: int) -> dict[str, Callable[[Any, jax.Array, jax.Array], jax.Array]]:
    """Per row: ``(params, x, key) ↦`` the per-point quantity whose mean square is the loss."""
    return {"primal": lambda p, x, _: mlp(p, x), "stde_sparse": _sparse(samples)}


def _peak_rss_bytes() -> int:
    """This process's peak resident set size.

    Linux: ``VmHWM`` of ``/proc/self/status``, the peak of this process's own memory
    (``ru_maxrss`` would keep the peak of the parent it was forked from, since the peak
    is carried across ``exec``). Elsewhere ``ru_maxrss`` (bytes on macOS).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


BLOCK_ROWS = 8192
"""Rows per block of the first layer's weight in the ``train_*_row_blocks`` rows (4 MiB
of a ``10⁶ × 128`` float32 weight)."""
TRAINING_STEPS = (("primal", None), ("stde_sparse", None), ("stde_sparse", BLOCK_ROWS))
"""The whole training steps measured, ``(loss, block_rows)``."""


def training_step(dim: int, loss: str, hidden: tuple[int, ...], batch: int, samples: int,
                  steps: int = 5, block_rows: int | None = None) -> dict[str, Any]:
    """One training step (loss ``primal`` or ``stde_sparse``, gradient, Adam), in this process.

    With ``block_rows`` the first layer's weight is drawn
    (:func:`stde.pinn.harness.init_mlp`) and updated
    (:func:`stde.pinn.row_blocks.optimizer_step`) that many rows at a time: its
    gradient, and ``jax.random.normal``'s temporaries, are never held whole.

    The step is compiled from shapes first (the compiler's memory is freed before any
    parameter exists); then parameters and Adam's state are created inside ``jit`` (no
    eager temporaries) and donated to every step, which therefore updates them in place.
    Returns the median wall and CPU (user + system, all threads) time of ``steps`` steps
    after the first one, XLA's flops and
    memory analysis of the step, this process's peak resident set size (and the size it
    had with JAX started, before compiling), and the bytes of the parameters plus Adam's
    state.

    Example:
      >>> figures = training_step(8, "stde_sparse", (4,), batch=2, samples=2, steps=2)
      >>> params = 8 * 4 + 4 + 4 * 1 + 1  # D=8 → 4 → 1
      >>> figures["state_bytes"] == 4 * 3 * params + 4  # params, 2 moments, Adam's count
      True
      >>> figures["alias_bytes"] == figures["state_bytes"]  # all updated in place
      True
    """
    jax.block_until_ready(jnp.zeros(()))  # JAX's runtime started
    started = _peak_rss_bytes()
    optimizer = optax.adam(1e-3)
    step = optimizer_step(_mean_square_loss(_losses(samples)[loss]), optimizer, block_rows)
    init_params = jax.jit(functools.partial(init_mlp, block_rows=block_rows), static_argnums=1)
    sizes = (dim, *hidden, 1)
    init_state = jax.jit(optimizer.init)
    make_points = jax.jit(lambda key: jax.random.normal(key, (batch, dim)) / dim ** 0.5)

    keys = jax.random.split(jax.random.PRNGKey(4), batch)
    shapes = jax.eval_shape(lambda k: init_params(k, sizes), keys[0])
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
        shapes, jax.eval_shape(init_state, shapes), jax.eval_shape(make_points, keys[0]),
        keys).compile()
    flops, temp = compile_stats(compiled)
    # The points first: drawing them takes temporaries (jax.random.normal's, three times
    # the points) that are freed before the parameters exist.
    points = jax.block_until_ready(make_points(jax.random.PRNGKey(1)))
    params = init_params(jax.random.PRNGKey(0), sizes)
    state = init_state(params)
    memory = compiled.memory_analysis()
    times, cpu_times = [], []
    for _ in range(steps + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        params, state, value = jax.block_until_ready(compiled(params, state, points, keys))
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    state_bytes = sum(x.nbytes for x in jax.tree.leaves((params, state)))
    peak = _peak_rss_bytes()
    return {"dim": dim, "method": f"train_{loss}" + ("_row_blocks" if block_rows else ""),
            "block_rows": block_rows, "median_s": statistics.median(times[1:]),
            "min_s": min(times[1:]), "first_step_s": times[0],
            "median_cpu_s": statistics.median(cpu_times[1:]), "flops": flops,
            "temp_bytes": temp, "alias_bytes": int(memory.alias_size_in_bytes),
            "argument_bytes": int(memory.argument_size_in_bytes),
            "state_bytes": state_bytes, "peak_rss_bytes": peak,
            "runtime_rss_bytes": started,
            "peak_rss_ratio": peak / state_bytes,
            "peak_rss_above_runtime_ratio": (peak - started) / state_bytes,
            "loss": float(value)}


def training_step_in_subprocess(dim: int, loss: str, size: Size, block_rows: int | None = None,
                                timeout_s: float = 1800) -> dict[str, Any]:
    """:func:`training_step` in a fresh Python process (its own peak memory); errors as rows."""
    method = f"train_{loss}" + ("_row_blocks" if block_rows else "")
    code = (f"import json; from benchmarks.suites.scale import training_step; print(json.dumps("
            f"training_step({dim}, {loss!r}, {tuple(size.pinn_hidden)!r}, {size.pinn_batch}, "
            f"{size.pinn_samples}, block_rows={block_rows!r})))")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    env.setdefault("JAX_PLATFORMS", jax.default_backend())
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"dim": dim, "method": method, "error": f"timed out after {timeout_s} s"}
    if result.returncode != 0:
        return {"dim": dim, "method": method,
                "error": (result.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def scale_step(size: Size, log: Callable[[str], None] = print) -> dict[str, Any]:
    """One training step per row over the sweep of ``D`` (``size.scale_dims``)."""
    samples, batch = size.pinn_samples, size.pinn_batch

    def build(dim: int) -> Case:
        params = init_mlp(jax.random.PRNGKey(0), [dim, *size.pinn_hidden, 1])
        points = jax.random.normal(jax.random.PRNGKey(1), (batch, dim)) / dim ** 0.5
        keys = jax.random.split(jax.random.PRNGKey(4), batch)
        args = (params, points, keys)
        losses = _losses(samples)
        return {"primal": (_mean_square(losses["primal"]), args),
                "stde_sparse": (_mean_square(losses["stde_sparse"]), args),
                "stde_dense_one_hot": (_mean_square(_dense_one_hot(samples)), args),
                "permutation_sampler": (_permutation_sampler(samples), (points, keys))}

    rows = run_sweep("dim", size.scale_dims, build, size.repeats,
                     reference="stde_dense_one_hot", compare=lambda m: m == "stde_sparse",
                     log=log)
    for dim in size.scale_dims:
        for loss, block_rows in TRAINING_STEPS:
            row = training_step_in_subprocess(dim, loss, size, block_rows)
            rows.append(row)
            log(f"  dim={dim:<6} {row['method']:<28} " + (
                f"ERROR {row['error']}" if "error" in row else
                f"{row['median_s'] * 1e3:9.2f} ms  {row['flops']:10.3e} flops  peak RSS "
                f"{row['peak_rss_bytes'] / 2**20:.0f} MiB = {row['peak_rss_ratio']:.2f}x "
                f"params + Adam state"))
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
                "train_primal / train_stde_sparse: the primal / stde_sparse step plus "
                "Adam's update, parameters and Adam state donated; each in a fresh process "
                "(not interleaved with the rows above): median of 5 steps after the "
                "compiling one (CPU time, user + system of all threads, in the JSON as "
                "median_cpu_s). train_stde_sparse_row_blocks: the same with the first "
                f"layer's weight drawn and updated {BLOCK_ROWS} rows at a time "
                "(stde.pinn.row_blocks.optimizer_step; XLA's flops count the loop's body "
                "once, so they are not comparable). peak RSS (VmHWM of that process, JAX runtime "
                "included) over params + Adam state bytes: " + ", ".join(
                    f"{r['method']} D={r['dim']}: {r['peak_rss_bytes'] / 2**20:.0f} MiB = "
                    f"{r['peak_rss_ratio']:.2f}x" for r in rows if "peak_rss_ratio" in r)
                + ".",
                "Ratios (time_ratio, flops_ratio) are to the primal row; temp_bytes are "
                "XLA's temporary buffers (parameters and points come on top, equal for "
                "every row)."]}
