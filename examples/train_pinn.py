"""Train a physics-informed network whose loss uses STDE operators.

Usage::

    python examples/train_pinn.py                       # semilinear heat, d = 100, sparse STDE
    python examples/train_pinn.py --equation allen_cahn --dim 10 --n-samples 4 --steps 4000
    python examples/train_pinn.py --equation kdv        # d = 1: each equation has a default d
    python examples/train_pinn.py --method sdgd         # the SDGD baseline (HVPs)
    python examples/train_pinn.py --devices 2 --out runs/ac10

The network is a plain-JAX tanh MLP (:mod:`stde.pinn.harness`, which also holds the
estimators and the loss) trained with optax Adam; boundary (and initial)
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
memory, and writes ``summary.json`` and ``curves.png`` to a folder named after the run's
settings (see :func:`default_out`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import resource
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from tqdm import tqdm

from stde.pinn import parallel
from stde.pinn.equations import EQUATIONS, Equation, default_dim, make_equation
from stde.pinn.harness import METHODS, Params, init_mlp, make_estimate, make_loss, mlp
from stde.pinn.row_blocks import optimizer_step

Array = Any
SCHEDULES = ("cosine", "linear")


@dataclasses.dataclass
class Config:
    """Command-line options (see ``--help``)."""

    equation: str = "heat"
    dim: int | None = None  # None: the equation's default (stde.pinn.equations.default_dim)
    method: str = "sparse"
    n_samples: int = 16
    steps: int = 2000
    batch: int = 64
    width: int = 64
    depth: int = 3
    learning_rate: float = 3e-3
    schedule: str = "cosine"  # "cosine" (to 5%) or "linear" (to 0, the STDE paper's)
    seed: int = 0
    devices: int = 1
    n_test: int | None = None  # None: default_n_test(dim)
    eval_every: int = 100
    out: str | None = None
    quiet: bool = False
    # Several processes (stde.pinn.parallel.cluster_from): None reads JAX_NUM_PROCESSES,
    # JAX_PROCESS_ID, JAX_COORDINATOR_ADDRESS.
    processes: int | None = None
    process_id: int | None = None
    coordinator: str | None = None
    init_timeout: float = parallel.DEFAULT_TIMEOUT_S
    shard_input_layer: bool = False
    # Rows of the first layer's weight drawn and updated at a time (0: all at once; None:
    # BLOCK_ROWS where that weight has ROW_BLOCKS_FROM entries or more).
    block_rows: int | None = None


# ---------------------------------------------------------------------------------------
# Sharding, training.
# ---------------------------------------------------------------------------------------


def batch_sharding(devices: int) -> NamedSharding | None:
    """Data-parallel sharding of the leading (point) axis over ``devices`` devices."""
    return None if devices <= 1 else parallel.data_parallel(devices).points


def layout(config: Config) -> parallel.Layout | None:
    """Where the step's arrays live: ``None`` on one device of one process."""
    if config.shard_input_layer:
        return parallel.input_parallel(config.devices)
    if config.devices > 1 or jax.process_count() > 1:
        return parallel.data_parallel(config.devices)
    return None


def shard(x: Array, sharding: NamedSharding | None) -> Array:
    """``x`` laid out with ``sharding`` inside ``jit`` (identity when ``None``)."""
    return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)


def collocation(equation: Equation, key: Array, batch: int, sharding: NamedSharding | None,
                key_sharding: NamedSharding | None = None) -> tuple[Array, Array]:
    """Fresh collocation points and one estimator key per point.

    The points are laid out with ``sharding``, the keys with ``key_sharding`` (default:
    ``sharding``, by point).
    """
    k_points, k_estimator = jax.random.split(key)
    points = equation.sample(k_points, batch)
    keys = jax.random.split(k_estimator, batch)
    return shard(points, sharding), shard(keys, key_sharding or sharding)


def relative_l2(prediction: Array, target: Array) -> float:
    """``‖prediction - target‖ / ‖target‖``."""
    return float(jnp.linalg.norm(prediction - target) / jnp.linalg.norm(target))


def peak_memory_mib() -> float:
    """Peak resident set size of this process in MiB (``getrusage`` ``ru_maxrss``)."""
    scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20


class Progress:
    """Training progress: a live ``tqdm`` bar on a terminal, plain lines otherwise.

    On a terminal the bar is redrawn as steps complete (at most ten times a second), with
    the loss, the latest held-out error, the rate and the time left. When the stream is
    not a terminal (a log file, a pipe, CI), one plain line is printed per evaluation
    instead, so a log holds readable lines rather than one long line of redraws.
    """

    def __init__(self, total: int, enabled: bool = True, stream: Any = None) -> None:
        self.stream = sys.stdout if stream is None else stream
        self.total = total
        self.live = enabled and self.stream.isatty()
        self.plain = enabled and not self.live
        # shutil's size falls back to 80x24 where a terminal reports 0x0 (tqdm then hides
        # the bar), as a pseudo-terminal without a size does.
        columns, lines = shutil.get_terminal_size()
        self.bar = tqdm(total=total, initial=1, file=self.stream, unit="step",
                        desc="training", ncols=columns, nrows=lines, disable=not self.live)
        self.start = time.perf_counter()

    def update(self, done: int, loss: float | None = None, error: float | None = None
               ) -> None:
        """Reports that ``done`` of the ``total`` steps have run; ``loss``/``error`` if new."""
        if self.live:
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.2e}", error=f"{error:.2e}", refresh=False)
            self.bar.update(done - self.bar.n)
        elif self.plain and loss is not None:
            elapsed = time.perf_counter() - self.start
            timed = done - 1  # the first step ran (and compiled) before the clock started
            rate = timed / elapsed if timed > 0 and elapsed > 0 else math.nan
            eta = (self.total - done) / rate if rate > 0 else math.nan
            print(f"step {done:>{len(str(self.total))}}/{self.total}  loss {loss:.3e}  "
                  f"error {error:.3e}  {rate:7.1f} it/s  ETA {eta:5.0f} s",
                  file=self.stream, flush=True)

    def close(self) -> None:
        """Ends the bar."""
        self.bar.close()


# How often (in steps) a live bar waits for the device to catch up, so that it shows
# completed rather than merely dispatched steps.
LIVE_SYNC_EVERY = 10


BLOCK_ROWS = 8192
"""Rows per block of the first layer's weight where the trainer chooses row blocks."""
ROW_BLOCKS_FROM = 2 ** 24
"""The trainer draws and updates the first layer's weight in row blocks from this many
entries on (64 MiB in float32): its gradient and the random draw's temporaries are then
never held whole (:mod:`stde.pinn.row_blocks`)."""
TEST_SET_FLOATS = 2 ** 27
"""The default held-out set holds at most this many input floats (512 MiB in float32)."""


def default_n_test(dim: int) -> int:
    """Held-out points by default: 4000, fewer where ``4000 × dim`` floats would not fit.

    Example:
      >>> default_n_test(100), default_n_test(1_000_000)
      (4000, 134)
    """
    return min(4000, max(64, TEST_SET_FLOATS // dim))


def check_config(config: Config) -> Config:
    """``config`` with its dimension resolved; ``ValueError`` saying what to change if invalid.

    A config naming several processes (or the environment, see
    :func:`stde.pinn.parallel.cluster_from`) joins JAX's distributed runtime here, before
    anything else touches JAX.

    Example:
      >>> check_config(Config(equation="kdv")).dim
      1
    """
    if not config.init_timeout > 0:
        raise ValueError(f"--init-timeout must be positive, got {config.init_timeout}")
    parallel.initialize(parallel.cluster_from(config.coordinator, config.processes,
                                              config.process_id), config.init_timeout)
    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r}; choose from {METHODS}")
    if config.equation not in EQUATIONS:
        raise ValueError(f"unknown equation {config.equation!r}; "
                         f"choose from {sorted(EQUATIONS)}")
    dim = default_dim(config.equation) if config.dim is None else config.dim
    n_test = default_n_test(dim) if config.n_test is None else config.n_test
    config = dataclasses.replace(config, dim=dim, n_test=n_test)
    for name in ("dim", "n_samples", "steps", "batch", "width", "depth", "devices", "n_test",
                 "eval_every"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, "
                             f"got {getattr(config, name)}")
    if config.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {config.schedule!r}; choose from {SCHEDULES}")
    if not config.learning_rate > 0:
        raise ValueError(f"--learning-rate must be positive, got {config.learning_rate}")
    if config.seed < 0:
        raise ValueError(f"--seed must be non-negative, got {config.seed}")
    try:
        equation = make_equation(config.equation, dim, config.seed)
    except ValueError as error:
        raise ValueError(f"--equation {config.equation} --dim {dim}: {error}") from None
    if config.method == "sdgd" and equation.operator is not None:
        count = dim if equation.sdgd_directions is None else equation.sdgd_directions.shape[0]
        if config.n_samples > count:
            raise ValueError(f"--n-samples {config.n_samples} exceeds the {count} directions "
                             f"that --method sdgd samples from (without replacement)")
    if config.shard_input_layer and config.devices < 2:
        raise ValueError("--shard-input-layer splits the first layer over --devices, "
                         "which must then be at least 2")
    if config.shard_input_layer and equation.input_dim % config.devices:
        raise ValueError(f"--shard-input-layer: the network's input size {equation.input_dim} "
                         f"must be divisible by --devices {config.devices}")
    if config.block_rows is None:
        large = equation.input_dim * config.width >= ROW_BLOCKS_FROM
        config = dataclasses.replace(
            config, block_rows=BLOCK_ROWS if large and not config.shard_input_layer else 0)
    if config.block_rows < 0:
        raise ValueError(f"--block-rows must be non-negative (0: all at once), "
                         f"got {config.block_rows}")
    if config.block_rows and config.shard_input_layer:
        raise ValueError("--block-rows updates the first layer's weight block by block on "
                         "one device; with --shard-input-layer pass --block-rows 0")
    if config.devices > 1 or jax.distributed.is_initialized():
        layout(config)  # raises if JAX sees fewer devices, or leaves out a process's
        if config.batch % config.devices and not config.shard_input_layer:
            raise ValueError(f"--batch {config.batch} must be divisible by --devices "
                             f"{config.devices}")
    return config


def train(config: Config) -> dict[str, Any]:
    """Trains a PINN as configured; returns the summary that ``--out`` writes as JSON.

    On several processes every process trains (the same program on the same keys) and
    returns the summary; only process 0 prints and writes ``--out``.
    """
    return fit(config)[1]


def fit(config: Config) -> tuple[Params, dict[str, Any]]:
    """:func:`train`, returning the trained parameters beside the summary."""
    config = check_config(config)
    equation = make_equation(config.equation, config.dim, config.seed)
    estimate = make_estimate(equation, config.method, config.n_samples)
    loss_fn = make_loss(equation, estimate)
    where = layout(config)
    talk = not config.quiet and jax.process_index() == 0

    key = jax.random.PRNGKey(config.seed)
    k_init, k_test, k_train = jax.random.split(key, 3)
    sizes = (equation.input_dim,) + (config.width,) * config.depth + (1,)
    if config.schedule == "linear":
        schedule = optax.linear_schedule(config.learning_rate, 0.0, config.steps)
    else:
        schedule = optax.cosine_decay_schedule(config.learning_rate, config.steps, alpha=0.05)
    optimizer = optax.adam(schedule)
    # Parameters and Adam's moments are created where the layout puts them (never whole
    # on one device when the first layer is sharded) and updated in place: the step
    # donates them, so a step allocates no new parameter-sized buffers for its results.
    param_shardings = state_shardings = replicated = None
    if where is not None:
        param_shardings, replicated = where.params(len(sizes) - 1), where.replicated
        state_shardings = optax.tree_map_params(
            optimizer, lambda _, sharding: sharding,
            jax.eval_shape(optimizer.init, jax.eval_shape(lambda k: init_mlp(k, sizes), k_init)),
            param_shardings, transform_non_params=lambda _: replicated)
    params = jax.jit(functools.partial(init_mlp, block_rows=config.block_rows),
                     static_argnums=1, out_shardings=param_shardings)(k_init, sizes)
    opt_state = jax.jit(optimizer.init, out_shardings=state_shardings)(params)

    update = optimizer_step(loss_fn, optimizer, config.block_rows)

    @functools.partial(jax.jit, donate_argnums=(0, 1),
                       out_shardings=(param_shardings, state_shardings, replicated))
    def step(params: Params, opt_state: Any, key: Array) -> tuple[Params, Any, Array]:
        points, keys = collocation(equation, key, config.batch, where and where.points,
                                   where and where.keys)
        return update(params, opt_state, points, keys)

    test_points = jax.jit(equation.test_points, static_argnums=1,
                          out_shardings=where and where.test_points)(k_test, config.n_test)
    target = jax.vmap(equation.exact)(test_points)
    trivial_error = relative_l2(jax.vmap(equation.trivial)(test_points), target)
    predict = jax.jit(jax.vmap(lambda p, z: equation.ansatz(lambda q: mlp(p, q), z),
                               (None, 0)))

    if talk:
        print(f"{equation.name} (d={equation.dim}): {equation.description}")
        print(f"method={config.method} n_samples={config.n_samples} batch={config.batch} "
              f"steps={config.steps} devices={config.devices} processes={jax.process_count()} "
              f"backend={jax.default_backend()}")
        print("compiling the training step (the first step; typically 10-30 s on a CPU) ...",
              flush=True)
    compile_start = time.perf_counter()
    params, opt_state, loss = step(params, opt_state, jax.random.fold_in(k_train, 0))
    loss.block_until_ready()
    compile_seconds = time.perf_counter() - compile_start
    if talk:
        print(f"compiled and ran the first step in {compile_seconds:.1f} s", flush=True)

    losses, errors = [float(loss)], [(0, relative_l2(predict(params, test_points), target))]
    progress = Progress(config.steps, enabled=talk)
    start = time.perf_counter()
    for i in range(1, config.steps):
        params, opt_state, loss = step(params, opt_state, jax.random.fold_in(k_train, i))
        if i % config.eval_every == 0 or i == config.steps - 1:
            losses.append(float(loss))
            errors.append((i, relative_l2(predict(params, test_points), target)))
            progress.update(i + 1, losses[-1], errors[-1][1])
        elif progress.live and i % LIVE_SYNC_EVERY == 0:
            loss.block_until_ready()
            progress.update(i + 1)
    jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    progress.close()

    error = relative_l2(predict(params, test_points), target)
    # The first step compiles and is not timed: with --steps 1 there is no rate to report.
    rate = (config.steps - 1) / seconds if config.steps > 1 else None
    summary = {
        "equation": equation.name, "dim": equation.dim, "method": config.method,
        "n_samples": config.n_samples, "steps": config.steps, "batch": config.batch,
        "devices": config.devices, "processes": jax.process_count(),
        "relative_l2_error": error,
        "trivial_predictor_error": trivial_error,
        "iterations_per_second": rate,
        "compile_seconds": compile_seconds, "peak_rss_mib": peak_memory_mib(),
        "backend": jax.default_backend(), "loss_curve": losses,
        "loss_steps": [s for s, _ in errors], "error_curve": errors,
        "config": dataclasses.asdict(config),
    }
    if talk:
        print(f"relative L2 error          {error:.3e}")
        print(f"trivial predictor's error  {trivial_error:.3e}   "
              "(the untrained baseline, Equation.trivial)")
        measured = (f"{rate:.1f}" if rate is not None
                    else "not measured (--steps 1 runs only the compiling first step)")
        print(f"iterations per second      {measured}   "
              f"(first step incl. compilation: {compile_seconds:.1f} s)")
        print(f"peak memory                {summary['peak_rss_mib']:.0f} MiB   "
              f"(peak resident set size of the whole process, ru_maxrss)")
    if config.out and jax.process_index() == 0:
        write_outputs(summary, config.out, quiet=config.quiet)
    return params, summary


def plot_curves(summary: dict[str, Any]) -> Any:
    """The figure of ``curves.png``: training loss, and held-out error with the baseline.

    The legend sits below the axes, so it never covers a curve or the trivial
    predictor's line; the title names the run's equation, dimension, method, samples and
    steps.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (ax_loss, ax_error) = plt.subplots(1, 2, figsize=(10, 4.4))
    ax_loss.semilogy(summary["loss_steps"], summary["loss_curve"])
    ax_loss.set(xlabel="step", ylabel="loss (batch)", title="training loss")
    steps, errors = zip(*summary["error_curve"]) if summary["error_curve"] else ((), ())
    ax_error.semilogy(steps, errors, label="trained network")
    ax_error.axhline(summary["trivial_predictor_error"], color="gray", linestyle="--",
                     label="trivial predictor")
    ax_error.set(xlabel="step", ylabel="relative L2 error", title="held-out error")
    ax_error.set_ylim(top=2.0 * max((summary["trivial_predictor_error"], *errors)))
    ax_error.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    samples = ("" if summary["method"] == "exact"
               else f" S={summary['n_samples']} samples")
    fig.suptitle(f"{summary['equation']} d={summary['dim']} method={summary['method']}"
                 f"{samples}, {summary['steps']} steps, batch {summary['batch']}")
    fig.tight_layout()
    return fig


def write_outputs(summary: dict[str, Any], out: str, quiet: bool = False) -> None:
    """Writes ``summary.json`` and ``curves.png`` (loss and error curves) into ``out``."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    fig = plot_curves(summary)
    fig.savefig(os.path.join(out, "curves.png"), dpi=100)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.close(fig)
    if not quiet:
        print(f"wrote {out}/summary.json and {out}/curves.png")


def default_out(config: Config) -> str:
    """``runs/<name>``, where the name spells out every setting that changes the result.

    Equation, dimension, method, samples, steps, devices and seed are always part of the
    name; batch, width, depth, learning rate, schedule, test points and evaluation interval only
    when they differ from their defaults. Runs with different settings therefore never
    share a folder; rerunning the same settings replaces that run's files.

    Example:
      >>> default_out(Config(steps=50, batch=32))
      'runs/heat-d100-sparse-S16-steps50-dev1-seed0-batch32'
      >>> default_out(Config(steps=50, schedule="linear"))
      'runs/heat-d100-sparse-S16-steps50-dev1-seed0-schedulelinear'
    """
    config = check_config(config) if config.dim is None or config.n_test is None else config
    name = (f"{config.equation}-d{config.dim}-{config.method}-S{config.n_samples}-"
            f"steps{config.steps}-dev{config.devices}-seed{config.seed}")
    defaults = dataclasses.replace(Config(), n_test=default_n_test(config.dim))
    for field in ("batch", "width", "depth", "learning_rate", "schedule", "n_test",
                  "eval_every"):
        value = getattr(config, field)
        if value != getattr(defaults, field):
            shown = value if isinstance(value, str) else f"{value:g}"
            name += f"-{field.replace('_', '')}{shown}"
    return os.path.join("runs", name)


def _count(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _natural(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def _positive(text: str) -> float:
    """An argparse type: a float greater than 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


_count.__name__ = "positive integer"  # argparse names the type in "invalid ... value"
_natural.__name__ = "non-negative integer"
_positive.__name__ = "positive number"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                     argparse.RawDescriptionHelpFormatter):
    """Shows defaults (except ``None``, whose meaning the help text states)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None:
            return action.help or ""
        return super()._get_help_string(action)


EPILOG = """\
Output: summary.json and curves.png in --out, by default runs/<equation>-d<dim>-<method>-
S<samples>-steps<steps>-dev<devices>-seed<seed>, plus -batch/-width/... for settings that
differ from their defaults, so that runs with different settings never overwrite each other.

--devices on a CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N makes JAX show N
CPU "devices", but they share the same cores, so no hardware is added, while every step
adds an all-reduce of the gradients and a synchronisation of the N device programs. On a
2-core machine --devices 2 ran 2.5-4x slower than one device (forcing 2 devices but using
one cost little). Use it to test sharding; it speeds training up only on real
accelerators (GPUs, TPUs).
"""


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Parses the command line into a checked :class:`Config` (argparse errors if invalid).

    Example:
      >>> parse_args(["--equation", "kdv"]).dim
      1
    """
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=_HelpFormatter, epilog=EPILOG)
    parser.add_argument("--equation", default=defaults.equation, choices=sorted(EQUATIONS),
                        help="the PDE (see stde/pinn/equations.py)")
    parser.add_argument("--dim", type=_count, default=None,
                        help="spatial dimension d (default: the equation's own, "
                             "1 for kdv, 2 for kdv_2d and kp, 100 for the others)")
    parser.add_argument("--method", default=defaults.method, choices=METHODS,
                        help="sparse/dense STDE, exact collapsed Taylor mode, or SDGD (HVPs)")
    parser.add_argument("--n-samples", type=_count, default=defaults.n_samples,
                        help="sampled directions per point (sparse, dense, sdgd)")
    parser.add_argument("--steps", type=_count, default=defaults.steps,
                        help="optimiser steps (the first one compiles and is not timed)")
    parser.add_argument("--batch", type=_count, default=defaults.batch,
                        help="collocation points per step")
    parser.add_argument("--width", type=_count, default=defaults.width,
                        help="hidden layer width")
    parser.add_argument("--depth", type=_count, default=defaults.depth, help="hidden layers")
    parser.add_argument("--learning-rate", type=_positive, default=defaults.learning_rate,
                        help="Adam's initial learning rate (decayed by --schedule)")
    parser.add_argument("--schedule", default=defaults.schedule, choices=SCHEDULES,
                        help="learning-rate decay: cosine to 5%%, or linear to 0 (the STDE "
                             "paper's)")
    parser.add_argument("--seed", type=_natural, default=defaults.seed,
                        help="seed of the initial weights, the points and the solution's c_i")
    parser.add_argument("--devices", type=_count, default=defaults.devices,
                        help="shard collocation points over this many devices "
                             "(on a CPU this tests sharding and is slower; see below)")
    parser.add_argument("--n-test", type=_count, default=defaults.n_test,
                        help="held-out points for the relative L2 error (default: 4000, "
                             "fewer at large --dim so that they take at most 512 MiB)")
    parser.add_argument("--eval-every", type=_count, default=defaults.eval_every,
                        help="steps between held-out evaluations (and plain progress lines)")
    parser.add_argument("--out", default=None,
                        help="folder for summary.json and curves.png (default: named after "
                             "the settings, see below; '' writes nothing)")
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    parser.add_argument("--shard-input-layer", action="store_true",
                        help="model parallel: split the first layer's d x width weight (and "
                             "the points' coordinates) over --devices instead of the points")
    parser.add_argument("--block-rows", type=_natural, default=None,
                        help=f"draw and update the first layer's weight this many rows at a "
                             f"time, never holding its gradient whole (0: all at once; "
                             f"default: {BLOCK_ROWS} where that weight has 2^24 entries or "
                             f"more, else 0)")
    cluster = parser.add_argument_group(
        "several processes (JAX's distributed runtime; each flag defaults to its environment "
        "variable)")
    cluster.add_argument("--processes", type=_count, default=None,
                         help=f"number of processes (${parallel.PROCESSES_ENV}; default 1)")
    cluster.add_argument("--process-id", type=_natural, default=None,
                         help=f"this process's index, 0..processes-1 (${parallel.PROCESS_ID_ENV})")
    cluster.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                         help="address of the coordination service that process 0 starts "
                              f"(${parallel.COORDINATOR_ENV})")
    cluster.add_argument("--init-timeout", type=_positive, default=defaults.init_timeout,
                         help="seconds to wait for all processes to join before giving up")
    args = parser.parse_args(argv)
    config = Config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Config)})
    try:
        config = check_config(config)
    except ValueError as error:
        parser.error(str(error).replace("\n", " "))
    if config.out is None:
        config = dataclasses.replace(config, out=default_out(config))
    return config


if __name__ == "__main__":
    train(parse_args())
