"""Suite plumbing: sizes, a sweep runner that measures every method per sweep value."""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import jax

from benchmarks.common import (
    PAPER_HIDDEN,
    Prepared,
    grad_temp_bytes,
    measure_interleaved,
    prepare,
    relative_difference,
)


@dataclasses.dataclass(frozen=True)
class Size:
    """Problem sizes of one run.

    Attributes:
      name: ``tiny``, ``small``, ``paper`` or ``gpu`` (the ``stde_paper`` suite's runs
        per size are its own ``PLANS[name]``).
      hidden: hidden widths of the tanh MLP.
      batches: batch sizes of the batch sweeps.
      samples: sample counts of the sample sweeps.
      sweep_batch: batch size used in sample/ratio sweeps.
      laplacian_dim, biharmonic_dim, stochastic_dim: ``D`` of those suites.
      pinn_dims: the ``D`` of the PINN suite; ``pinn_batch`` and ``pinn_samples`` its batch
        and sampled coordinates per step.
      repeats: timed calls per measurement.
      vmc_electrons: electron counts of the VMC suites; ``vmc_walkers`` their batch of
        walkers and ``vmc_width`` the wavefunction's feature width.
      scale_dims: the ``D`` of the ``scale`` suite (which uses the PINN's network, batch
        and samples).
      time_budget_s: seconds the ``stde_paper`` suite may train in all (``None``: no
        limit); a run that would overrun it is stopped, later runs are skipped, and the
        rows trained so far are still reported.
    """

    name: str
    hidden: tuple[int, ...]
    batches: tuple[int, ...]
    samples: tuple[int, ...]
    sweep_batch: int
    laplacian_dim: int
    biharmonic_dim: int
    stochastic_dim: int
    pinn_dims: tuple[int, ...]
    pinn_hidden: tuple[int, ...]
    pinn_batch: int
    pinn_samples: int
    repeats: int
    vmc_electrons: tuple[int, ...] = (4, 16)
    vmc_walkers: int = 64
    vmc_width: int = 32
    scale_dims: tuple[int, ...] = (100, 1000, 10_000, 100_000, 1_000_000)
    time_budget_s: float | None = None


SIZES = {
    "tiny": Size("tiny", (8, 8), (1, 2), (1, 2), 2, 4, 3, 4, (10, 20), (8,), 2, 2, 2,
                 vmc_electrons=(4,), vmc_walkers=2, vmc_width=8, scale_dims=(10, 20)),
    "small": Size("small", (256, 256, 128, 128), (1, 8, 32), (1, 4, 16, 32), 8, 50, 5, 50,
                  (100, 1000, 10000), (128, 128, 128), 16, 16, 7, vmc_electrons=(4, 16, 32)),
    "paper": Size("paper", PAPER_HIDDEN, (1, 16, 64), (1, 4, 16, 64), 16, 50, 5, 50,
                  (100, 1000, 10000), PAPER_HIDDEN, 64, 16, 5,
                  vmc_electrons=(4, 16, 32, 64)),
}
SIZES["gpu"] = dataclasses.replace(SIZES["paper"], name="gpu")
"""``gpu``: the paper sizes, and the ``stde_paper`` suite's plan for one GPU (benchmarks/gpu.sh)."""

Case = dict[str, tuple[Callable[..., Any], Sequence[Any]]]
"""Per method: the function to compile and its arguments."""


def run_sweep(variable: str, values: Sequence[int], build: Callable[[int], Case], repeats: int,
              reference: str = "nested", compare: Callable[[str], bool] = lambda _: True,
              grad_methods: Sequence[str] = (), log: Callable[[str], None] = print
              ) -> list[dict[str, Any]]:
    """Measures every method of ``build(value)`` for each sweep value.

    Args:
      variable: the swept quantity's name (``batch``, ``samples``, ``dim``, …).
      values: its values.
      build: ``value -> {method: (fn, args)}``.
      repeats: timed calls per measurement.
      reference: the method other outputs are compared with.
      compare: whether a method's output should equal the reference's (same directions).
      grad_methods: methods whose differentiable variant's temp bytes are also recorded
        at the last sweep value (gradient of the summed output w.r.t. the first argument).
      log: progress printer.

    Returns:
      Rows ``{variable: value, "method", figures…, "rel_diff", "error"}``.
    """
    rows = []
    for value in values:
        case = build(value)
        prepared: dict[str, Prepared] = {}
        row_of: dict[str, dict[str, Any]] = {m: {variable: value, "method": m} for m in case}
        for method, (fn, args) in case.items():
            try:
                prepared[method] = prepare(fn, args)
                if method in grad_methods and value == values[-1]:
                    row_of[method]["grad_temp_bytes"] = grad_temp_bytes(fn, args)
            except Exception as e:  # a method failing must not stop the others
                row_of[method]["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                log(traceback.format_exc(limit=3))
        measured = measure_interleaved(prepared, repeats)
        base = measured[reference].output if reference in measured else None
        for method, row in row_of.items():
            if method in measured:
                row.update(measured[method].as_dict())
                if base is not None and compare(method):
                    row["rel_diff"] = relative_difference(measured[method].output, base)
            rows.append(row)
            log(_describe(row, variable))
        jax.clear_caches()
    return rows


def _describe(row: dict[str, Any], variable: str) -> str:
    if "error" in row:
        return f"  {variable}={row[variable]:<6} {row['method']:<16} ERROR {row['error']}"
    flops = row["flops"] or float("nan")
    return (f"  {variable}={row[variable]:<6} {row['method']:<16} {row['median_s'] * 1e3:9.2f} ms  "
            f"{flops:10.3e} flops  {row['temp_bytes'] / 2**20:8.2f} MiB temp")
