"""Summaries (ratios, slopes, targets) and output files (JSON, Markdown, PNG)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from benchmarks.common import fit_slope, machine_label

STDE_METHODS = ("stde_collapsed", "stde_operator", "stde_collapsed_lap2", "stde_sparse")


def add_ratios(suite: dict[str, Any]) -> None:
    """Adds ``time_ratio`` / ``flops_ratio`` (to the suite's reference method) to each row."""
    variable, reference = suite["variable"], suite.get("reference", "nested")
    base = {r[variable]: r for r in suite["rows"] if r["method"] == reference and "median_s" in r}
    for row in suite["rows"]:
        ref = base.get(row[variable])
        if ref is None or "median_s" not in row:
            continue
        row["time_ratio"] = row["median_s"] / ref["median_s"]
        if row.get("flops") and ref.get("flops"):
            row["flops_ratio"] = row["flops"] / ref["flops"]


def add_slopes(suite: dict[str, Any]) -> None:
    """Least-squares slope of time and flops against the swept variable, per method."""
    variable = suite["variable"]
    slopes: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(r["method"] for r in suite["rows"]):
        rows = [r for r in suite["rows"] if r["method"] == method and "median_s" in r]
        xs = [r[variable] for r in rows]
        slopes[method] = {
            "time_s": fit_slope(xs, [r["median_s"] for r in rows])[0],
            "flops": fit_slope(xs, [r["flops"] or 0.0 for r in rows])[0],
        }
    suite["slopes"] = slopes


@dataclasses.dataclass(frozen=True)
class Target:
    """``figure(method) / figure(baseline)`` at sweep value ``at`` compared with ``bound``.

    With ``baseline=None`` the figure is itself a ratio (``peak_rss_ratio``: peak memory
    over the parameters and optimiser state) and is compared with ``bound`` directly.
    """

    suite: str
    figure: str  # "median_s", "flops", "temp_bytes", "iterations_per_s" or "peak_rss_ratio"
    baseline: str | None
    bound: float
    at: int | None = None  # sweep value; None = the largest measured
    at_least: bool = False  # True: the ratio must be ≥ bound
    methods: tuple[str, ...] = STDE_METHODS  # the rows held to the bound

    def describe(self) -> str:
        """E.g. ``laplacian: time ≤ 0.65× nested``."""
        name = {"median_s": "time", "flops": "XLA flops", "temp_bytes": "temp bytes",
                "iterations_per_s": "iterations/s",
                "peak_rss_ratio": "peak RSS"}[self.figure]
        of = "params + Adam state" if self.baseline is None else self.baseline
        return f"{self.suite}: {name} {'≥' if self.at_least else '≤'} {self.bound}× {of}"


TRAINING_STEPS = ("train_stde_sparse", "train_stde_sparse_row_blocks")

TARGETS = (
    Target("laplacian", "flops", "nested", 0.52, at=64),
    Target("laplacian", "median_s", "nested", 0.65, at=64),
    Target("laplacian", "median_s", "folx", 0.9, at=64),
    Target("laplacian", "temp_bytes", "folx", 1.0, at=64),
    Target("stochastic_laplacian", "median_s", "taylor", 0.55),
    Target("stochastic_biharmonic", "median_s", "taylor", 0.8),
    Target("stochastic_biharmonic", "median_s", "nested", 0.2),
    Target("stochastic_biharmonic", "median_s", "nested_jvp", 0.2),
    Target("biharmonic", "median_s", "nested", 0.6, at=64),
    Target("pinn", "iterations_per_s", "sdgd_hvp", 2.5, at_least=True),
    Target("vmc", "median_s", "folx", 1.0, at=4),
    Target("vmc", "median_s", "folx", 1.0, at=16),
    Target("vmc", "median_s", "folx_sparse", 1.0, at=16),
    Target("vmc", "median_s", "folx_sparse", 1.0, at=32),
    Target("vmc", "median_s", "folx_sparse", 1.0, at=64),
    Target("vmc_gradient", "median_s", "folx_sparse", 1.0, at=16),
    Target("vmc_gradient", "median_s", "folx_sparse", 1.0, at=32),
    Target("vmc_gradient", "median_s", "folx_sparse", 1.0, at=64),
    Target("scale", "flops", "primal", 1.5, at=100_000),
    Target("scale", "median_s", "primal", 2.0, at=100_000),
    Target("scale", "flops", "primal", 1.5, at=1_000_000),
    Target("scale", "median_s", "primal", 2.0, at=1_000_000),
    # Whole training steps (value, gradient, Adam; donated), each in its own process.
    Target("scale", "median_s", "train_primal", 1.5, at=1_000_000, methods=TRAINING_STEPS),
    Target("scale", "median_s", "primal", 1.5, at=1_000_000, methods=TRAINING_STEPS),
    Target("scale", "peak_rss_ratio", None, 1.5, at=1_000_000, methods=TRAINING_STEPS),
)


def evaluate_targets(suites: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target's measured ratio for each stde method present in its suite.

    A target whose sweep value was not measured (a smaller ``--size``) is read at the
    largest value measured, once: not again where another target already reads it.
    """
    out = []
    seen = set()
    for target in TARGETS:
        suite = suites.get(target.suite)
        if suite is None:
            continue
        variable = suite["variable"]
        measured = [r for r in suite["rows"] if "median_s" in r]
        values = sorted({r[variable] for r in measured})
        if not values:
            continue
        at = target.at if target.at in values else values[-1]
        by_method = {r["method"]: r for r in measured if r[variable] == at}
        base = {target.figure: 1.0} if target.baseline is None else \
            by_method.get(target.baseline)
        for method in target.methods:
            row = by_method.get(method)
            if row is None or base is None or not row.get(target.figure) \
                    or not base.get(target.figure):
                continue
            ratio = row[target.figure] / base[target.figure]
            met = ratio >= target.bound if target.at_least else ratio <= target.bound
            key = (target.describe(), method, at)
            if key in seen:
                continue
            seen.add(key)
            out.append({"target": target.describe(), "method": method, variable: at,
                        "at": f"{variable}={at}", "ratio": ratio, "bound": target.bound,
                        "met": bool(met)})
    return out


def _fmt(x: Any, scale: float = 1.0, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x * scale:.{digits}g}"


def markdown(result: dict[str, Any]) -> str:
    """The whole run as Markdown: machine, targets, one table per suite."""
    info = result["machine"]
    lines = [f"# stde benchmarks ({result['size']})", "",
             f"Command: `{result['command']}`", "",
             f"Machine: {machine_label(info)}; {info['platform']}; load average at start "
             f"{_fmt_load(info.get('load_average'))}. {result.get('machine_note', '')}", ""]
    if any(suite.get("kind") != "training" for suite in result["suites"].values()):
        lines += ["Time: median wall time of one jitted call after compilation and warm-up, "
                  "the methods of a sweep point timed in interleaved rounds (one call each per "
                  "round, order rotating) so that load changes hit all alike; "
                  "flops and temp bytes: XLA's `cost_analysis()` / `memory_analysis()` of the "
                  "compiled executable (deterministic). Ratios are to the suite's reference "
                  "(nested AD; SDGD for the PINN step).", ""]
    if result.get("workarounds"):
        flags = " ".join(f"`{f}`" for f in result["workarounds"])
        lines += [f"XLA_FLAGS set by the harness for every method (a jaxlib 0.10 CPU runtime "
                  f"deadlock, see `benchmarks.common.runtime_workarounds`): {flags}.", ""]
    if result.get("compiler_options"):
        options = ", ".join(f"`{k}={v}`" for k, v in result["compiler_options"].items())
        lines += [f"XLA compiler options for every method: {options}.", ""]
    if result.get("targets"):
        lines += ["## Targets", "", "| target | method | at | measured | met |",
                  "|---|---|---|---|---|"]
        for t in result["targets"]:
            lines.append(f"| {t['target']} | {t['method']} | {t['at']} | {t['ratio']:.3f}× | "
                         f"{'yes' if t['met'] else '**no**'} |")
        lines.append("")
    for name, suite in result["suites"].items():
        if suite.get("kind") == "training":
            lines += training_markdown(name, suite)
            continue
        variable, reference = suite["variable"], suite.get("reference", "nested")
        lines += [f"## {name}", "", suite["description"], ""]
        lines += [f"| {variable} | method | time ms | × {reference} | GFLOP | × {reference} | "
                  "temp MiB | grad temp MiB | rel. diff |", "|---|---|---|---|---|---|---|---|---|"]
        for r in suite["rows"]:
            if "error" in r:
                lines.append(f"| {r[variable]} | {r['method']} | error: {r['error'][:80]} "
                             "| | | | | | |")
                continue
            lines.append(
                f"| {r[variable]} | {r['method']} | {_fmt(r['median_s'], 1e3)} | "
                f"{_fmt(r.get('time_ratio'))} | {_fmt(r.get('flops'), 1e-9)} | "
                f"{_fmt(r.get('flops_ratio'))} | {_fmt(r.get('temp_bytes'), 2**-20)} | "
                f"{_fmt(r.get('grad_temp_bytes'), 2**-20)} | {_fmt(r.get('rel_diff'), 1, 2)} |")
        per = suite["per"]
        lines += ["", f"Least-squares slope per {per}: " + "; ".join(
            f"{m} {_fmt(s['time_s'], 1e3)} ms, {_fmt(s['flops'], 1e-6)} MFLOP"
            for m, s in suite.get("slopes", {}).items()), ""]
        lines += [f"* {note}" for note in suite.get("notes", [])] + [""]
    return "\n".join(lines)


def training_markdown(name: str, suite: dict[str, Any]) -> list[str]:
    """A training suite's section: one row per run with the paper's figures beside it."""
    lines = [f"## {name}", "", suite["description"], "",
             f"Idle JAX process (imports, one jit): {_fmt(suite.get('idle_rss_mib'))} MiB peak "
             "RSS.", "",
             "| equation | d | method | \\|J\\| | steps | points ÷ d | it/s | peak RSS MiB "
             "| device peak MiB | rel. L2 | trivial | best \\|x\\|²,t | paper it/s | paper MB "
             "| paper L2 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in suite["rows"]:
        head = (f"| {r['equation']} | {r['dim']} | {r['method']} | {r['n_samples']} | "
                f"{r['steps']} | {_fmt_points(r.get('points_per_dim'))} |")
        if "error" in r:
            lines.append(f"{head} error: {r['error'][:80]} | | | | | | | | | |")
            continue
        paper = r.get("paper") or {}
        hardware = f" ({paper['hardware']})" if paper else ""
        lines.append(
            f"{head} {_fmt(r.get('iterations_per_second'))} | {_fmt(r['peak_rss_mib'], 1, 4)} | "
            f"{_fmt(r.get('device_peak_mib'), 1, 4)} | {_fmt(r['relative_l2_error'], 1, 2)} | "
            f"{_fmt(r['trivial_predictor_error'], 1, 2)} | {_fmt(r.get('radial_time_error'), 1, 2)}"
            f" | {_fmt(paper.get('iterations_per_second'))}{hardware} | "
            f"{_fmt(paper.get('memory_mb'), 1, 4)} | "
            f"{_fmt(paper.get('relative_l2_error'), 1, 2)} |")
    if suite.get("paper_figures"):
        lines += ["", "The paper's own figures (its hardware, its 10⁴+ steps; memory is GPU "
                  "memory), whether or not this run reached their d:", "",
                  "| equation | d | method | \\|J\\| | it/s | MB | rel. L2 | hardware | source |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for f in suite["paper_figures"]:
            lines.append(f"| {f['equation']} | {f['dim']} | {f['method']} | {f['n_samples']} | "
                         f"{_fmt(f['iterations_per_second'])} | {_fmt(f['memory_mb'], 1, 4)} | "
                         f"{_fmt(f['relative_l2_error'], 1, 2)} | {f['hardware']} | "
                         f"{f['source']} |")
    if suite.get("comparisons"):
        lines += ["", "SDGD (HVP) against sparse STDE, same equation, d and |J|:", "",
                  "| equation | d | \\|J\\| | speed-up (STDE it/s ÷ SDGD it/s) | memory ratio "
                  "(SDGD ÷ STDE, peak RSS) | above idle | device memory ratio |",
                  "|---|---|---|---|---|---|---|"]
        for c in suite["comparisons"]:
            lines.append(f"| {c['equation']} | {c['dim']} | {c['n_samples']} | "
                         f"{_fmt(c['speed_up'])}× | {_fmt(c['memory_ratio'])}× | "
                         f"{_fmt(c['memory_ratio_above_idle'])}× | "
                         f"{_fmt(c.get('device_memory_ratio'))} |")
    lines += [""] + [f"* {note}" for note in suite.get("notes", [])] + [""]
    if suite.get("skipped"):
        lines += ["Skipped (in the plan, not trainable in this checkout): "
                  + "; ".join(suite["skipped"]) + ".", ""]
    return lines


def _fmt_points(x: Any) -> str:
    """A count ratio such as points ÷ d: whole numbers from 1 up, two digits below."""
    if x is None:
        return "–"
    return f"{x:,.0f}" if x >= 1 else f"{x:.2g}"


def _fmt_load(load: Any) -> str:
    return "–" if not load else " / ".join(f"{x:.2f}" for x in load)


def plot(result: dict[str, Any], path: Path) -> None:
    """One log-log panel per suite: median time against the swept variable, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suites = result["suites"]
    cols = min(3, len(suites))
    rows = math.ceil(len(suites) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax, (name, suite) in zip(axes.flat, suites.items()):
        if suite.get("kind") == "training":
            _plot_training(ax, name, suite)
            continue
        variable = suite["variable"]
        for method in dict.fromkeys(r["method"] for r in suite["rows"]):
            pts = sorted((r[variable], r["median_s"] * 1e3) for r in suite["rows"]
                         if r["method"] == method and "median_s" in r)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=method)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(variable)
        ax.set_ylabel("median time [ms]")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(suites):]:
        ax.axis("off")
    fig.suptitle(f"stde benchmarks ({result['size']}): {machine_label(result['machine'])}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_training(ax: Any, name: str, suite: dict[str, Any]) -> None:
    """Relative L2 error against d per equation and method, with the two baselines dashed."""
    rows = [r for r in suite["rows"] if "error" not in r]
    for label in dict.fromkeys((r["equation"], r["method"], r["n_samples"]) for r in rows):
        pts = sorted((r["dim"], r["relative_l2_error"], r["trivial_predictor_error"],
                      r.get("radial_time_error", math.nan))
                     for r in rows if (r["equation"], r["method"], r["n_samples"]) == label)
        dims, errors, trivial, radial = zip(*pts)
        line, = ax.plot(dims, errors, marker="o", label=f"{label[0]} {label[1]} |J|={label[2]}")
        ax.plot(dims, radial, linestyle="--", marker="_", color=line.get_color(), alpha=0.6)
        ax.plot(dims, trivial, linestyle=":", marker="x", color=line.get_color(), alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("d")
    ax.set_ylabel("relative L2 error (–/-- best |x|²,t; x/·· trivial)")
    ax.set_title(name, fontsize=10)
    if rows:
        ax.legend(fontsize=6)


def write(result: dict[str, Any], directory: Path, stem: str, figure: bool = True) -> list[Path]:
    """Writes ``stem.json``, ``stem.md`` and (optionally) ``stem.png`` under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{stem}.json", directory / f"{stem}.md"]
    paths[0].write_text(json.dumps(result, indent=1, default=_json_default))
    paths[1].write_text(markdown(result))
    if figure:
        paths.append(directory / f"{stem}.png")
        plot(result, paths[-1])
    return paths


def _json_default(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)
