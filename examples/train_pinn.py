"""Train a physics-informed network whose loss uses STDE operators.

Usage::

    python examples/train_pinn.py                       # semilinear heat, d = 100, sparse STDE
    python examples/train_pinn.py --equation allen_cahn --dim 10 --n-samples 4 --steps 4000
    python examples/train_pinn.py --method sdgd         # the SDGD baseline (HVPs)
    python examples/train_pinn.py --devices 2 --out runs/ac10

The network is a plain-JAX tanh MLP trained with optax Adam; boundary (and initial)
conditions hold exactly through the equation's ansatz, so the loss is the mean squared
PDE residual at fresh collocation points each step. The second-order operator in the
residual is computed by

* ``sparse``: :func:`stde.stochastic_operator` with ``method="sparse"`` (sampled
  coordinate directions, unbiased, cost independent of ``d``),
* ``dense``: the same with Rademacher tangents,
* ``exact``: :func:`stde.operator` (all ``d`` directions, collapsed Taylor mode),
* ``sdgd``: the SDGD baseline: sampled coordinates, second derivatives by
  Hessian-vector products (nested first-order AD).

At the end it prints the relative L2 error on held-out points beside the error of the
untrained trivial predictor, iterations per second, and the process's peak resident
memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pinn_equations import EQUATIONS, Equation, make_equation  # noqa: E402

import stde  # noqa: E402

Array = Any
Params = list[tuple[Array, Array]]
METHODS = ("sparse", "dense", "exact", "sdgd")


@dataclasses.dataclass
class Config:
    """Command-line options (see ``--help``)."""

    equation: str = "heat"
    dim: int = 100
    method: str = "sparse"
    n_samples: int = 16
    steps: int = 2000
    batch: int = 64
    width: int = 64
    depth: int = 3
    learning_rate: float = 3e-3
    seed: int = 0
    devices: int = 1
    n_test: int = 4000
    eval_every: int = 100
    out: str | None = None
    quiet: bool = False


# ---------------------------------------------------------------------------------------
# Network.
# ---------------------------------------------------------------------------------------


def init_mlp(key: Array, sizes: Sequence[int]) -> Params:
    """Glorot-normal weights and zero biases for a tanh MLP with layer ``sizes``."""
    params = []
    for k, (n_in, n_out) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes, sizes[1:])):
        w = jax.random.normal(k, (n_in, n_out)) * math.sqrt(2.0 / (n_in + n_out))
        params.append((w, jnp.zeros(n_out)))
    return params


def mlp(params: Params, z: Array) -> Array:
    """The scalar network output at one point ``z``."""
    h = z
    for w, b in params[:-1]:
        h = jnp.tanh(h @ w + b)
    w, b = params[-1]
    return (h @ w + b)[0]


# ---------------------------------------------------------------------------------------
# Operator estimators.
# ---------------------------------------------------------------------------------------

Estimate = Callable[..., tuple[Array, Array]]


def sdgd_estimate(directions: np.ndarray | None, n_samples: int) -> Estimate:
    """The SDGD baseline: ``(R/S) Σ_s v_sᵀ ∇²f v_s`` over ``S`` sampled rows ``v_s``.

    Second derivatives come from Hessian-vector products (forward over reverse), one per
    sampled direction, as in SDGD (Hu et al., 2023). ``directions=None`` means the
    coordinate axes.
    """

    def estimate(f: Callable[..., Array], x: Array, *rest: Array, key: Array
                 ) -> tuple[Array, Array]:
        dim = x.size
        count = dim if directions is None else directions.shape[0]
        if n_samples > count:
            raise ValueError(f"--n-samples {n_samples} exceeds the {count} directions")
        rows = jax.random.choice(key, count, (n_samples,), replace=False)
        if directions is None:
            sampled = jax.nn.one_hot(rows, dim, dtype=x.dtype)
        else:
            sampled = jnp.asarray(directions, x.dtype)[rows]
        of_x = lambda y: f(y, *rest)  # noqa: E731
        grad = jax.grad(of_x)

        def curvature(v: Array) -> Array:
            return jnp.vdot(v, jax.jvp(grad, (x,), (v,))[1])

        return of_x(x), jax.vmap(curvature)(sampled).sum() * (count / n_samples)

    return estimate


def make_estimate(equation: Equation, method: str, n_samples: int) -> Estimate:
    """``estimate(f, *args, key) -> (f(*args), L f(*args))`` for ``equation``'s operator."""
    if equation.operator is None:
        return lambda f, *args, key: (f(*args), jnp.zeros(()))
    if method == "sdgd":
        return sdgd_estimate(equation.sdgd_directions, n_samples)
    op = equation.operator()
    if method == "exact":
        return lambda f, *args, key: stde.operator(f, op, with_value=True)(*args)
    if method in ("sparse", "dense"):
        def estimate(f: Callable[..., Array], *args: Array, key: Array) -> tuple[Array, Array]:
            g = stde.stochastic_operator(f, op, n_samples, method=method, with_value=True)
            return g(*args, key)

        return estimate
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


# ---------------------------------------------------------------------------------------
# Loss, sharding, training.
# ---------------------------------------------------------------------------------------


def make_loss(equation: Equation, estimate: Estimate) -> Callable[[Params, Array, Array], Array]:
    """``loss(params, points, keys)``: mean over points of the squared residual vector."""

    def pointwise(params: Params, z: Array, key: Array) -> Array:
        u = lambda y: equation.ansatz(lambda q: mlp(params, q), y)  # noqa: E731
        return jnp.sum(equation.residual(u, z, key, estimate) ** 2)

    def loss(params: Params, points: Array, keys: Array) -> Array:
        return jnp.mean(jax.vmap(pointwise, (None, 0, 0))(params, points, keys))

    return loss


def batch_sharding(devices: int) -> NamedSharding | None:
    """Data-parallel sharding of the leading (point) axis over ``devices`` devices."""
    if devices <= 1:
        return None
    available = jax.devices()
    if len(available) < devices:
        raise ValueError(
            f"--devices {devices} but JAX sees {len(available)}; on CPU set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={devices} before starting.")
    mesh = Mesh(np.array(available[:devices]), ("batch",))
    return NamedSharding(mesh, PartitionSpec("batch"))


def shard(x: Array, sharding: NamedSharding | None) -> Array:
    """``x`` laid out with ``sharding`` inside ``jit`` (identity when ``None``)."""
    return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)


def collocation(equation: Equation, key: Array, batch: int,
                sharding: NamedSharding | None) -> tuple[Array, Array]:
    """Fresh collocation points and one estimator key per point, sharded by point."""
    k_points, k_estimator = jax.random.split(key)
    points = equation.sample(k_points, batch)
    keys = jax.random.split(k_estimator, batch)
    return shard(points, sharding), shard(keys, sharding)


def relative_l2(prediction: Array, target: Array) -> float:
    """``‖prediction - target‖ / ‖target‖``."""
    return float(jnp.linalg.norm(prediction - target) / jnp.linalg.norm(target))


def peak_memory_mib() -> float:
    """Peak resident set size of this process in MiB (``getrusage`` ``ru_maxrss``)."""
    scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20


class ProgressBar:
    """A one-line text progress bar: step, loss and iterations per second."""

    def __init__(self, total: int, enabled: bool = True, width: int = 30) -> None:
        self.total, self.enabled, self.width = total, enabled, width
        self.start = time.perf_counter()

    def update(self, step: int, loss: float) -> None:
        """Redraws the bar after ``step`` steps."""
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        filled = int(self.width * step / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        rate = step / elapsed if elapsed > 0 else 0.0
        sys.stdout.write(f"\r[{bar}] step {step:>6}/{self.total}  loss {loss:.3e}  "
                         f"{rate:6.1f} it/s")
        sys.stdout.flush()

    def close(self) -> None:
        """Ends the bar's line."""
        if self.enabled:
            sys.stdout.write("\n")


def train(config: Config) -> dict[str, Any]:
    """Trains a PINN as configured; returns the summary that ``--out`` writes as JSON."""
    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r}; choose from {METHODS}")
    equation = make_equation(config.equation, config.dim, config.seed)
    estimate = make_estimate(equation, config.method, config.n_samples)
    loss_fn = make_loss(equation, estimate)
    sharding = batch_sharding(config.devices)
    if sharding is not None and config.batch % config.devices:
        raise ValueError(f"--batch {config.batch} must be divisible by --devices "
                         f"{config.devices}")

    key = jax.random.PRNGKey(config.seed)
    k_init, k_test, k_train = jax.random.split(key, 3)
    sizes = [equation.input_dim] + [config.width] * config.depth + [1]
    params = init_mlp(k_init, sizes)
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.steps, alpha=0.05)
    optimizer = optax.adam(schedule)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params: Params, opt_state: Any, key: Array) -> tuple[Params, Any, Array]:
        points, keys = collocation(equation, key, config.batch, sharding)
        loss, grads = jax.value_and_grad(loss_fn)(params, points, keys)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    test_points = equation.sample(k_test, config.n_test)
    target = jax.vmap(equation.exact)(test_points)
    trivial_error = relative_l2(jax.vmap(equation.trivial)(test_points), target)
    predict = jax.jit(jax.vmap(lambda p, z: equation.ansatz(lambda q: mlp(p, q), z),
                               (None, 0)))

    if not config.quiet:
        print(f"{equation.name} (d={equation.dim}): {equation.description}")
        print(f"method={config.method} n_samples={config.n_samples} batch={config.batch} "
              f"steps={config.steps} devices={config.devices} backend={jax.default_backend()}")
    compile_start = time.perf_counter()
    params, opt_state, loss = step(params, opt_state, jax.random.fold_in(k_train, 0))
    loss.block_until_ready()
    compile_seconds = time.perf_counter() - compile_start

    losses, errors = [float(loss)], [(0, relative_l2(predict(params, test_points), target))]
    bar = ProgressBar(config.steps, enabled=not config.quiet)
    start = time.perf_counter()
    for i in range(1, config.steps):
        params, opt_state, loss = step(params, opt_state, jax.random.fold_in(k_train, i))
        if i % config.eval_every == 0 or i == config.steps - 1:
            losses.append(float(loss))
            errors.append((i, relative_l2(predict(params, test_points), target)))
            bar.update(i + 1, losses[-1])
    jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    bar.close()

    error = relative_l2(predict(params, test_points), target)
    summary = {
        "equation": equation.name, "dim": equation.dim, "method": config.method,
        "n_samples": config.n_samples, "steps": config.steps, "batch": config.batch,
        "devices": config.devices, "relative_l2_error": error,
        "trivial_predictor_error": trivial_error,
        "iterations_per_second": (config.steps - 1) / seconds,
        "compile_seconds": compile_seconds, "peak_rss_mib": peak_memory_mib(),
        "backend": jax.default_backend(), "loss_curve": losses,
        "loss_steps": [s for s, _ in errors], "error_curve": errors,
        "config": dataclasses.asdict(config),
    }
    if not config.quiet:
        print(f"relative L2 error          {error:.3e}")
        print(f"trivial predictor's error  {trivial_error:.3e}   "
              f"({'(1-|x|²)·u*(0)' if equation.input_dim == equation.dim else 'u*(x, t=0)'})")
        print(f"iterations per second      {summary['iterations_per_second']:.1f}   "
              f"(first step incl. compilation: {compile_seconds:.1f} s)")
        print(f"peak memory                {summary['peak_rss_mib']:.0f} MiB   "
              f"(peak resident set size of the whole process, ru_maxrss)")
    if config.out:
        write_outputs(summary, config.out)
    return summary


def write_outputs(summary: dict[str, Any], out: str) -> None:
    """Writes ``summary.json`` and ``curves.png`` (loss and error curves) into ``out``."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (ax_loss, ax_error) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.semilogy(summary["loss_steps"], summary["loss_curve"])
    ax_loss.set(xlabel="step", ylabel="loss (batch)", title="training loss")
    steps, errors = zip(*summary["error_curve"]) if summary["error_curve"] else ((), ())
    ax_error.semilogy(steps, errors, label="trained network")
    ax_error.axhline(summary["trivial_predictor_error"], color="gray", linestyle="--",
                     label="trivial predictor")
    ax_error.set(xlabel="step", ylabel="relative L2 error", title="held-out error")
    ax_error.legend()
    fig.suptitle(f"{summary['equation']} d={summary['dim']} method={summary['method']}")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "curves.png"), dpi=100)
    plt.close(fig)
    print(f"wrote {out}/summary.json and {out}/curves.png")


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Parses the command line into a :class:`Config`."""
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--equation", default=defaults.equation, choices=sorted(EQUATIONS))
    parser.add_argument("--dim", type=int, default=defaults.dim, help="spatial dimension d")
    parser.add_argument("--method", default=defaults.method, choices=METHODS)
    parser.add_argument("--n-samples", type=int, default=defaults.n_samples,
                        help="sampled directions per point (sparse, dense, sdgd)")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch", type=int, default=defaults.batch,
                        help="collocation points per step")
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--depth", type=int, default=defaults.depth, help="hidden layers")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--devices", type=int, default=defaults.devices,
                        help="shard collocation points over this many devices")
    parser.add_argument("--n-test", type=int, default=defaults.n_test)
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every)
    parser.add_argument("--out", default=None,
                        help="folder for summary.json and curves.png (default: "
                             "runs/<equation>-d<dim>-<method>; '' writes nothing)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = os.path.join("runs", f"{args.equation}-d{args.dim}-{args.method}")
    return Config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Config)})


if __name__ == "__main__":
    train(parse_args())
