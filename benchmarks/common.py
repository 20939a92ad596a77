"""Shared pieces of the benchmark harness: measuring compiled functions, fits.

The network is :func:`stde.pinn.harness.mlp` (every suite, the trainer and the tests use it).

Every figure comes from one ``jax.jit``-compiled executable: XLA flops
(``compiled.cost_analysis()``), temporary buffer bytes
(``compiled.memory_analysis().temp_size_in_bytes``) and the median wall time of
``repeats`` calls after one warm-up call (``block_until_ready``), the methods compared
timed in interleaved rounds. Flops and bytes are deterministic; wall times depend on
the machine's load.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

COMPILER_OPTIONS: dict[str, str] = {}
"""XLA options for every compilation of a run (``--compiler-option``); empty: XLA's defaults."""

PAPER_HIDDEN = (768, 768, 512, 512)
"""Hidden widths of the collapsing paper's tanh MLP ``D → 768 → 768 → 512 → 512 → 1``."""


JAXLIB_0_10_CPU_DEADLOCK = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
"""The XLA flag avoiding a jaxlib 0.10.x CPU deadlock (see :func:`runtime_workarounds`)."""


def runtime_workarounds() -> list[str]:
    """Sets ``XLA_FLAGS`` workarounds for known XLA runtime bugs; returns what it set.

    jaxlib 0.10.x's CPU runtime can deadlock on larger ``vmap``-ped programs with its
    concurrency-optimized scheduler: every thread parks and ``block_until_ready``
    never returns. Seen on the ``vmc`` suite at 12 and 16 electrons (64 walkers) for
    ``jax.hessian`` and stde alike; turning the scheduler off avoids it (as an
    environment flag only: the per-compilation option does not). jaxlib ≥ 0.11 needs
    nothing. Must run before JAX's backend starts; applies to every method alike.

    Returns:
      The flags added to ``XLA_FLAGS`` (empty when none was needed or the user set it).
    """
    import jaxlib

    if tuple(int(p) for p in jaxlib.__version__.split(".")[:2]) >= (0, 11):
        return []
    flags = os.environ.get("XLA_FLAGS", "")
    if JAXLIB_0_10_CPU_DEADLOCK.split("=")[0] in flags:
        return []
    os.environ["XLA_FLAGS"] = f"{flags} {JAXLIB_0_10_CPU_DEADLOCK}".strip()
    return [JAXLIB_0_10_CPU_DEADLOCK]


def machine_info() -> dict[str, Any]:
    """Platform, CPU count, backend and library versions, for labelling results."""
    import jaxlib

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    try:
        import folx

        info["folx"] = getattr(folx, "__version__", "installed")
    except ImportError:
        info["folx"] = None
    return info


def machine_label(info: dict[str, Any]) -> str:
    """One line naming the machine, e.g. for a plot title."""
    return (f"{info['backend']} · {info['processor']} · {info['cpu_count']} CPUs · "
            f"jax {info['jax']}")


def _first(analysis: Any) -> dict[str, Any]:
    """``cost_analysis()`` is a dict in some jax versions, a list of dicts in others."""
    if isinstance(analysis, list | tuple):
        return analysis[0] if analysis else {}
    return analysis or {}


@dataclasses.dataclass
class Measurement:
    """Figures of one compiled function.

    Attributes:
      median_s: median wall time of one call (after compilation and one warm-up).
      min_s: fastest call.
      flops: XLA's flop count of the optimised HLO.
      temp_bytes: temporary buffer bytes of the executable.
      compile_s: lowering + compilation time.
      output: the first call's result (kept for cross-method checks, not serialised).
    """

    median_s: float
    min_s: float
    flops: float | None
    temp_bytes: int | None
    compile_s: float
    output: Any = dataclasses.field(repr=False, default=None)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures (without the output)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "output"}


def compile_stats(compiled: Any) -> tuple[float | None, int | None]:
    """``(flops, temp_bytes)`` of a compiled executable."""
    flops = _first(compiled.cost_analysis()).get("flops")
    memory = compiled.memory_analysis()
    temp = None if memory is None else int(memory.temp_size_in_bytes)
    return (None if flops is None else float(flops)), temp


@dataclasses.dataclass
class Prepared:
    """A compiled function with its arguments, static figures and first output."""

    call: Callable[[], Any]
    flops: float | None
    temp_bytes: int | None
    compile_s: float
    output: Any


def compile_jitted(fn: Callable[..., Any], args: Sequence[Any]) -> Any:
    """``jax.jit(fn)`` compiled for ``args`` with the run's :data:`COMPILER_OPTIONS`."""
    return jax.jit(fn).lower(*args).compile(compiler_options=dict(COMPILER_OPTIONS) or None)


def prepare(fn: Callable[..., Any], args: Sequence[Any]) -> Prepared:
    """Compiles ``jax.jit(fn)`` for ``args``, reads its static figures, runs it once."""
    start = time.perf_counter()
    compiled = compile_jitted(fn, args)
    compile_s = time.perf_counter() - start
    flops, temp = compile_stats(compiled)
    output = jax.block_until_ready(compiled(*args))
    return Prepared(lambda: compiled(*args), flops, temp, compile_s, output)


def measure_interleaved(prepared: dict[str, Prepared], repeats: int,
                        max_seconds: float = 30.0) -> dict[str, Measurement]:
    """Times every prepared function in rounds, one call of each per round.

    The order rotates from round to round, so a change in the machine's load hits
    every method alike and the ratios between methods stay fair on a shared machine.

    Args:
      prepared: per method, what :func:`prepare` returned.
      repeats: rounds (fewer if ``max_seconds`` runs out; at least 3).
      max_seconds: stop starting rounds after this much wall time.

    Returns:
      Per method, its :class:`Measurement`.
    """
    names = list(prepared)
    times: dict[str, list[float]] = {name: [] for name in names}
    budget_end = time.perf_counter() + max_seconds
    for round_ in range(repeats if names else 0):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            t0 = time.perf_counter()
            jax.block_until_ready(prepared[name].call())
            times[name].append(time.perf_counter() - t0)
        if round_ >= 2 and time.perf_counter() > budget_end:
            break
    return {name: Measurement(statistics.median(times[name]), min(times[name]), p.flops,
                              p.temp_bytes, p.compile_s, p.output)
            for name, p in prepared.items()}


def grad_temp_bytes(fn: Callable[..., Any], args: Sequence[Any]) -> int | None:
    """Temp bytes of ``grad`` (w.r.t. the first argument) of ``sum(fn(*args))``, compiled only."""
    compiled = compile_jitted(jax.grad(lambda *a: jnp.sum(fn(*a))), args)
    return compile_stats(compiled)[1]


def fit_slope(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares line ``y ≈ intercept + slope · x``; returns ``(slope, intercept)``."""
    x = np.asarray(xs, float)
    y = np.asarray(ys, float)
    if len(x) < 2 or np.ptp(x) == 0:
        return float("nan"), float(y.mean()) if len(y) else float("nan")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def relative_difference(a: Any, b: Any) -> float:
    """``max|a-b| / max(max|b|, tiny)`` over all leaves."""
    a_leaves = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(a)]
    b_leaves = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(b)]
    diff = max(float(np.max(np.abs(x - y))) for x, y in zip(a_leaves, b_leaves))
    scale = max(float(np.max(np.abs(y))) for y in b_leaves)
    return diff / max(scale, 1e-30)
