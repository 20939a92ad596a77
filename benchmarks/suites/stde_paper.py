"""The STDE paper's PINN experiments (Shi et al., NeurIPS 2024, arXiv 2412.00088), side by side.

Each run trains a PINN with ``examples/train_pinn.py``'s :func:`train` at the paper's
settings (tanh MLP with three hidden layers of width 128, i.e. four linear layers; Adam,
learning rate 1e-3 decayed linearly to 0; 100 residual points per step; ``|J|`` = 16 or
100 sampled coordinates), in a fresh process of its own so that its peak resident memory
is its own. Per equation and dimension it records iterations per second (the first,
compiling step excluded), peak memory, the relative L2 error after the configured steps,
and beside that error two baselines that use no training: the equation's trivial
predictor and the best predictor that sees only ``|x|²`` and ``t``
(:func:`stde.pinn.equations.sampled_radial_baseline_error`). Where the paper reports a
figure for the same equation, dimension and ``|J|`` it is printed in the same row
(:data:`PAPER_FIGURES`).

SDGD (``method="sdgd"`` of ``train``: the sampled coordinates' second derivatives by
Hessian-vector products, forward over reverse) runs beside sparse STDE at 10⁴ (and 10⁵ at
``--size paper``) with the same ``|J|``; the suite reports the speed-up and memory ratios.

The plans (:data:`PLANS`) name equations of ``stde.pinn.equations.EQUATIONS``; a name not
registered there is skipped with a printed note, so the table can list the paper's whole
set before every equation exists.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks.suites.base import Size
from stde.pinn.equations import EQUATIONS, make_equation, sampled_radial_baseline_error

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

PAPER_NETWORK = {"width": 128, "depth": 3, "batch": 100, "learning_rate": 1e-3,
                 "schedule": "linear"}
"""The paper's training settings, as ``train_pinn.Config`` fields (``depth`` = hidden layers)."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of the suite.

    Attributes:
      equation: a name in ``stde.pinn.equations.EQUATIONS``.
      dim: spatial dimension ``d``.
      method: ``"sparse"`` (sparse STDE) or ``"sdgd"`` (SDGD with HVPs).
      n_samples: ``|J|``, sampled coordinates per residual point.
      steps: optimiser steps (the first one compiles and is not timed).
    """

    equation: str
    dim: int
    method: str
    n_samples: int
    steps: int

    @property
    def points_per_dim(self) -> float:
        """Residual points the run trains on (steps × the paper's batch), over ``d``."""
        return self.steps * PAPER_NETWORK["batch"] / self.dim


@dataclasses.dataclass(frozen=True)
class PaperFigures:
    """The paper's reported figures for one configuration (its own hardware and steps)."""

    iterations_per_second: float
    memory_mb: float
    relative_l2_error: float
    hardware: str
    source: str


PAPER_FIGURES: dict[tuple[str, int, str, int], PaperFigures] = {
    ("allen_cahn", 100_000, "sparse", 16): PaperFigures(
        283.0, 1063.0, 1.5e-3, "A100", "STDE paper, two-body Allen-Cahn, sparse STDE"),
    ("allen_cahn", 1_000_000, "sparse", 16): PaperFigures(
        21.3, 6295.0, 4.0e-3, "A100", "STDE paper, two-body Allen-Cahn, sparse STDE"),
}
"""The paper's figures by ``(equation, d, method, |J|)``: memory is its GPU memory in MB,
errors after its 10⁴+ steps. Add rows here as they are looked up in the paper."""


def _plan(entries: Sequence[tuple[Sequence[str], Sequence[int], str, Sequence[int], int]]
          ) -> tuple[Run, ...]:
    """Runs for every ``(equations, dims, method, sample counts, steps)`` combination."""
    return tuple(Run(equation, dim, method, n, steps)
                 for equations, dims, method, samples, steps in entries
                 for equation in equations for dim in dims for n in samples)


# The paper's equations by family (a name missing from EQUATIONS is skipped with a note).
ELLIPTIC_TWO_BODY = ("poisson", "allen_cahn", "sine_gordon")
ELLIPTIC_OTHER = ("poisson_3body", "allen_cahn_3body", "sine_gordon_3body", "poisson_houman")
TIME_DEPENDENT = ("heat", "heat_averaged", "semilinear_heat_time", "allen_cahn_time",
                  "sine_gordon_time", "hjb_lin", "hjb_lqg", "bsb", "wave")
GRADIENT_ENHANCED = ("poisson_gpinn", "allen_cahn_gpinn", "sine_gordon_gpinn")
RIDGE = ("ridge",)

PLANS: dict[str, tuple[Run, ...]] = {
    "tiny": _plan([(("allen_cahn",), (10,), "sparse", (4,), 3),
                   (("allen_cahn",), (10,), "sdgd", (4,), 3)]),
    "small": _plan([
        (("allen_cahn",), (100, 1000), "sparse", (16,), 200),
        (("allen_cahn",), (10_000,), "sparse", (16,), 100),
        (("allen_cahn",), (1000,), "sparse", (100,), 100),
        (("allen_cahn",), (10_000,), "sdgd", (16,), 20),
        (("poisson", "sine_gordon", *ELLIPTIC_OTHER), (100, 1000), "sparse", (16,), 200),
        (TIME_DEPENDENT, (100,), "sparse", (16,), 200),
        (GRADIENT_ENHANCED, (100,), "sparse", (16,), 200),
        (("kdv",), (1,), "sparse", (16,), 200),
        (("kdv_2d", "kp"), (2,), "sparse", (16,), 200),
        (RIDGE, (1000,), "sparse", (16,), 200),
        (RIDGE, (10_000,), "sparse", (16,), 1000),
        (("allen_cahn",), (100_000,), "sparse", (16,), 10),
        (("allen_cahn",), (100_000,), "sdgd", (16,), 3),
    ]),
    "paper": _plan([
        (ELLIPTIC_TWO_BODY + ELLIPTIC_OTHER, (100, 1000, 10_000), "sparse", (16, 100),
         1000),
        (("allen_cahn",), (100_000,), "sparse", (16,), 200),
        (("allen_cahn",), (10_000,), "sdgd", (16,), 50),
        (("allen_cahn",), (100_000,), "sdgd", (16,), 5),
        (TIME_DEPENDENT + GRADIENT_ENHANCED, (100, 1000, 10_000), "sparse", (16,), 1000),
        (("kdv",), (1,), "sparse", (16,), 2000),
        (("kdv_2d", "kp"), (2,), "sparse", (16,), 2000),
        (("heat_averaged",), (100_000,), "sparse", (16,), 200),
        (RIDGE, (100_000,), "sparse", (16,), 10_000),
    ]),
    "gpu": _plan([
        (("allen_cahn",), (100_000,), "sparse", (16,), 10_000),
        (("allen_cahn",), (1_000_000,), "sparse", (16,), 2000),
        (("allen_cahn",), (100_000,), "sdgd", (16,), 30),
        (RIDGE, (100_000,), "sparse", (16,), 10_000),
        (RIDGE, (1_000_000,), "sparse", (16,), 1000),
    ]),
}
"""Runs per size. A dimension the equation rejects (e.g. ``kdv`` outside ``d = 1``) is
skipped like an unregistered name. ``small`` (36 runs) took 9 minutes on the project's
2-core CPU, otherwise idle; ``paper`` takes hours there; ``gpu`` is
:file:`benchmarks/gpu.sh`'s (one GPU). ``ridge`` needs about ``d`` residual points before
it learns (``stde.pinn.equations.ridge``; at ``d = 10⁵`` 3·10⁵ points did not move it), so
every plan has a ridge run at ``d ≥ 10⁴`` that sees ``10 d`` points."""

TEST_SET_FLOATS = 2 ** 25
"""Held-out points of a run hold at most this many input floats (128 MiB in float32)."""


def n_test_points(input_dim: int) -> int:
    """Held-out points for a run's relative L2 error: 1000, fewer at large ``d``.

    Example:
      >>> n_test_points(101), n_test_points(1_000_001)
      (1000, 100)
    """
    return min(1000, max(100, TEST_SET_FLOATS // input_dim))


# ---------------------------------------------------------------------------------------
# One run per process.
# ---------------------------------------------------------------------------------------


def process_peak_rss_mib() -> float:
    """This process's peak resident memory in MiB, its own since its last ``exec``.

    ``getrusage``'s ``ru_maxrss`` (what ``train_pinn`` reports) carries over the parent's
    resident size at ``fork`` through ``exec`` on Linux, so a process spawned from a large
    parent reports at least the parent's size; ``VmHWM`` in ``/proc/self/status`` is the
    high-water mark of the current address space only. Elsewhere: ``ru_maxrss``.

    Example:
      >>> process_peak_rss_mib() > 0
      True
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # noqa: PLC0415

    scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20


def _device_peak_mib() -> float | None:
    """Peak bytes in use on the first device (GPU allocators report it; CPU: ``None``)."""
    stats = jax.local_devices()[0].memory_stats()
    return None if not stats or "peak_bytes_in_use" not in stats else \
        stats["peak_bytes_in_use"] / 2 ** 20


def _train_in_process(run: Run | None, platforms: str) -> dict[str, Any]:
    """Runs in a fresh process: ``train`` for ``run`` (``None``: an idle JAX process)."""
    jax.config.update("jax_platforms", platforms)
    sys.path.insert(0, str(EXAMPLES))
    import train_pinn  # noqa: PLC0415

    if run is None:  # the memory of a process that imported everything and ran one jit
        jax.block_until_ready(jax.jit(jnp.sin)(jnp.ones(4)))
        return {"peak_rss_mib": process_peak_rss_mib()}
    input_dim = make_equation(run.equation, run.dim).input_dim
    summary = train_pinn.train(train_pinn.Config(
        equation=run.equation, dim=run.dim, method=run.method, n_samples=run.n_samples,
        steps=run.steps, n_test=n_test_points(input_dim), eval_every=run.steps, quiet=True,
        out="", **PAPER_NETWORK))
    keep = ("relative_l2_error", "trivial_predictor_error", "iterations_per_second",
            "compile_seconds", "backend")
    return {**{k: summary[k] for k in keep}, "peak_rss_mib": process_peak_rss_mib(),
            "device_peak_mib": _device_peak_mib(), "n_test": summary["config"]["n_test"]}


class RunFailed(RuntimeError):
    """A run's process raised, died or overran its limit; the message says which."""


def _error_line(error: Exception) -> str:
    """A run's error as its row shows it: the type and the first line, at most 300 chars."""
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


def _send_outcome(sender: Any, run: Run | None, platforms: str) -> None:
    """In the fresh process: :func:`_train_in_process`'s result or error, through ``sender``."""
    try:
        sender.send(("ok", _train_in_process(run, platforms)))
    except Exception as e:  # reported as the run's row, not as a traceback
        sender.send(("error", _error_line(e)))


def in_fresh_process(run: Run | None, limit_s: float | None = None) -> dict[str, Any]:
    """:func:`_train_in_process` in a new (spawned) process on this process's platforms.

    Args:
      run: the run to train (``None``: an idle JAX process, for its memory).
      limit_s: seconds to wait for it (``None``: no limit); past them the process is
        terminated.

    Raises:
      RunFailed: the run raised (its error's type and first line), its process died, or
        it overran ``limit_s``.
    """
    platforms = jax.config.jax_platforms or ""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_send_outcome, args=(sender, run, platforms))
    process.start()
    sender.close()
    try:
        if not receiver.poll(limit_s):
            process.terminate()
            raise RunFailed(f"stopped: over its {limit_s:.3g} s limit")
        try:
            status, outcome = receiver.recv()
        except EOFError:  # the process ended without sending
            status, outcome = "died", None
    finally:
        process.join()
        receiver.close()
    if status == "died":
        raise RunFailed(f"its process died (exit code {process.exitcode})")
    if status != "ok":
        raise RunFailed(outcome)
    return outcome


# ---------------------------------------------------------------------------------------
# The suite.
# ---------------------------------------------------------------------------------------


def runnable(plan: Sequence[Run], log: Callable[[str], None] = print
             ) -> tuple[list[Run], list[str]]:
    """The runs of ``plan`` whose equation is registered and accepts the dimension.

    Returns:
      The runs to train, and one note per skipped ``(equation, d)`` saying why.
    """
    kept, noted, notes = [], set(), []
    for run in plan:
        reason = None
        if run.equation not in EQUATIONS:
            reason = "not in stde.pinn.equations.EQUATIONS"
        else:
            try:
                make_equation(run.equation, run.dim)
            except ValueError as error:
                reason = str(error)
        if reason is None:
            kept.append(run)
        elif (run.equation, run.dim) not in noted:
            noted.add((run.equation, run.dim))
            notes.append(f"{run.equation} d={run.dim}: {reason}")
            log(f"  skipping {notes[-1]}")
    return kept, notes


def compare_methods(rows: Sequence[dict[str, Any]], idle_mib: float) -> list[dict[str, Any]]:
    """SDGD against sparse STDE wherever both ran the same equation, ``d`` and ``|J|``.

    ``speed_up`` is STDE's iterations per second over SDGD's; ``memory_ratio`` SDGD's peak
    over STDE's, of the whole process (RSS) and above an idle JAX process
    (``memory_ratio_above_idle``), and of the device's allocator where it reports one.
    """
    by_key = {(r["equation"], r["dim"], r["n_samples"], r["method"]): r
              for r in rows if "error" not in r}
    out = []
    for (equation, dim, samples, method), sdgd in by_key.items():
        stde_row = by_key.get((equation, dim, samples, "sparse"))
        if method != "sdgd" or stde_row is None:
            continue
        entry = {"equation": equation, "dim": dim, "n_samples": samples,
                 "speed_up": stde_row["iterations_per_second"] / sdgd["iterations_per_second"],
                 "memory_ratio": sdgd["peak_rss_mib"] / stde_row["peak_rss_mib"],
                 "memory_ratio_above_idle": (sdgd["peak_rss_mib"] - idle_mib)
                 / max(stde_row["peak_rss_mib"] - idle_mib, 1.0)}
        if sdgd.get("device_peak_mib") and stde_row.get("device_peak_mib"):
            entry["device_memory_ratio"] = sdgd["device_peak_mib"] / stde_row["device_peak_mib"]
        out.append(entry)
    return out


def paper_training(size: Size, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Trains every runnable run of ``PLANS[size.name]``; one row per run."""
    plan = PLANS.get(size.name, PLANS["tiny"])
    runs, skipped = runnable(plan, log)
    idle = in_fresh_process(None)["peak_rss_mib"]
    log(f"  idle JAX process: {idle:.0f} MiB peak RSS")
    baselines: dict[tuple[str, int], float] = {}
    rows = []
    deadline = None if size.time_budget_s is None else time.monotonic() + size.time_budget_s
    for index, run in enumerate(runs):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            skipped += [f"{r.equation} d={r.dim} {r.method} |J|={r.n_samples}: over the "
                        f"{size.time_budget_s:.0f} s time budget" for r in runs[index:]]
            log(f"  time budget spent: skipping the last {len(runs) - index} runs")
            break
        row: dict[str, Any] = dataclasses.asdict(run)
        row["points_per_dim"] = run.points_per_dim
        try:
            row.update(in_fresh_process(run, left))
            key = (run.equation, run.dim)
            if key not in baselines:
                baselines[key] = sampled_radial_baseline_error(
                    make_equation(run.equation, run.dim), jax.random.PRNGKey(7))
            row["radial_time_error"] = baselines[key]
        except RunFailed as e:
            row["error"] = str(e)
        except Exception as e:  # a run failing must not stop the others
            row["error"] = _error_line(e)
        paper = PAPER_FIGURES.get((run.equation, run.dim, run.method, run.n_samples))
        if paper is not None:
            row["paper"] = dataclasses.asdict(paper)
        rows.append(row)
        log(_describe(row))
    hidden = "→".join([str(PAPER_NETWORK["width"])] * PAPER_NETWORK["depth"])
    return {
        "kind": "training",
        "description": (f"PINN training at the STDE paper's settings: tanh MLP d→{hidden}→1, "
                        f"Adam lr {PAPER_NETWORK['learning_rate']:g} decayed linearly to 0, "
                        f"{PAPER_NETWORK['batch']} residual points per step, |J| sampled "
                        "coordinates per point; each run in a fresh process."),
        "variable": "dim", "per": "dimension", "reference": "sdgd", "rows": rows,
        "idle_rss_mib": idle, "comparisons": compare_methods(rows, idle), "skipped": skipped,
        "paper_figures": [{"equation": e, "dim": d, "method": m, "n_samples": n,
                           **dataclasses.asdict(f)}
                          for (e, d, m, n), f in PAPER_FIGURES.items()],
        "notes": [
            "steps: as in the table; the paper trains 10⁴+ steps (here only the `gpu` plan "
            "comes near), so errors are after far fewer steps than the paper's.",
            "it/s: (steps - 1) / wall time after the first, compiling step; includes one "
            "held-out evaluation at the end.",
            "peak RSS: the run's whole process (VmHWM), an idle JAX process's "
            "peak RSS shown above; device peak: the accelerator allocator's peak bytes "
            "(GPU only). The paper's memory is GPU memory.",
            "trivial: the equation's untrained predictor ((1-|x|²)u*(0) on the ball, or the "
            "initial or terminal condition); best |x|²,t: least squares of u* on Legendre "
            "polynomials of |x|² (and t) scaled to [-1, 1], total degree ≤ 10, fitted and "
            "scored on the same 4000 fresh points (NaN for the problems scored at (0, 0) only).",
            "points ÷ d: residual points seen in training (steps × points per step) over d. "
            "A solution that varies along a dense direction of R^d (ridge's a·x, b·x with "
            "random signs) takes about d points before training gets below the trivial "
            "predictor: each point gives one residual, the direction has d unknown signs.",
            "SDGD: train_pinn's method 'sdgd' (Hessian-vector products, forward over reverse, "
            "on the same sampled coordinates); the paper's >1000× speed-up and >30× memory "
            "headline is over randomization with first-order AD at its largest d.",
        ],
    }


def _describe(row: dict[str, Any]) -> str:
    head = f"  {row['equation']:<18} d={row['dim']:<8} {row['method']:<6} |J|={row['n_samples']:<4}"
    if "error" in row:
        return f"{head} ERROR {row['error']}"
    return (f"{head} {row['steps']} steps {row['iterations_per_second']:8.2f} it/s "
            f"{row['peak_rss_mib']:7.0f} MiB  L2 {row['relative_l2_error']:.3g} "
            f"(trivial {row['trivial_predictor_error']:.3g}, "
            f"|x|²,t {row['radial_time_error']:.3g})")

