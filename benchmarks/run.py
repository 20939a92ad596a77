"""Command line: ``python -m benchmarks.run --suite NAME [--size small|paper|gpu] [--tiny]``.

Runs the chosen suites (``all`` runs every operator suite; the training suite
``stde_paper`` runs only by name) in one process, prints progress and writes
``benchmarks/results/<suite>-<size>[-<tag>].{json,md,png}``, for ``stde_paper``
``stde-paper[-<size>][-<tag>]`` (no size at ``small``, its committed run). XLA options given
with ``--compiler-option`` apply to every method alike and are recorded in the output.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import jax

from benchmarks import common, report
from benchmarks.common import machine_info
from benchmarks.suites import SIZES, SUITES, TRAINING_SUITES, Size

RESULTS = Path(__file__).parent / "results"


def run(suites: list[str], size: str | Size, repeats: int | None = None, quiet: bool = False,
        command: str = "", compiler_options: dict[str, str] | None = None,
        time_budget_s: float | None = None) -> dict[str, Any]:
    """Runs ``suites`` at ``size`` (a name from ``SIZES`` or a :class:`Size`).

    ``time_budget_s`` bounds the training suite (``Size.time_budget_s``).

    ``compiler_options`` (XLA options such as ``xla_cpu_experimental_ynn_fusion_type``)
    apply to every compilation of the run, every method alike.

    Returns:
      The result dictionary (machine, config, per-suite rows with ratios and slopes,
      targets); nothing is written.
    """
    size = SIZES[size] if isinstance(size, str) else size
    size_name = size.name
    if repeats is not None:
        size = dataclasses.replace(size, repeats=repeats)
    if time_budget_s is not None:
        size = dataclasses.replace(size, time_budget_s=time_budget_s)
    log = (lambda _: None) if quiet else (lambda s: print(s, flush=True))
    result: dict[str, Any] = {"size": size_name, "command": command, "machine": machine_info(),
                              "config": size.__dict__, "suites": {},
                              "compiler_options": dict(compiler_options or {})}
    start = time.perf_counter()
    common.COMPILER_OPTIONS.clear()
    common.COMPILER_OPTIONS.update(compiler_options or {})
    try:
        for name in suites:
            log(f"== {name} ({size_name})")
            suite = SUITES[name](size, log=log)
            if suite.get("kind") != "training":  # training rows carry their own figures
                report.add_ratios(suite)
                report.add_slopes(suite)
            result["suites"][name] = suite
    finally:
        common.COMPILER_OPTIONS.clear()
    result["total_s"] = time.perf_counter() - start
    result["targets"] = report.evaluate_targets(result["suites"])
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="all", choices=["all", *SUITES],
                        help="suite to run (default: all)")
    parser.add_argument("--size", default="small", choices=list(SIZES),
                        help="problem size (default: small, a few minutes on 2 cores; gpu: "
                             "paper sizes and stde_paper's GPU plan)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny shapes, 2 repeats: a smoke test of the harness")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output directory")
    parser.add_argument("--note", default="", help="free text about the machine (e.g. 'shared')")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--compiler-option", action="append", default=[], metavar="KEY=VALUE",
                        help="XLA option for every compilation (repeatable), e.g. "
                             "xla_cpu_experimental_ynn_fusion_type= (empty value)")
    parser.add_argument("--tag", default="", help="suffix of the output files' names")
    parser.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                        help="stde_paper: train at most this long in all; a run that would "
                             "overrun it is stopped, later ones skipped, the rest reported")
    args = parser.parse_args(argv)
    workarounds = common.runtime_workarounds()
    jax.config.update("jax_platforms", jax.config.jax_platforms or "cpu")
    size = "tiny" if args.tiny else args.size
    names = [s for s in SUITES if s not in TRAINING_SUITES] if args.suite == "all" \
        else [args.suite]
    command = "python -m benchmarks.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    options = {}
    for option in args.compiler_option:
        key, equals, value = option.partition("=")
        if not equals or not key:
            parser.error(f"--compiler-option needs KEY=VALUE, got {option!r}")
        options[key] = value
    result = run(names, size, args.repeats, command=command.strip(), compiler_options=options,
                 time_budget_s=args.time_budget)
    result["machine_note"] = args.note
    result["workarounds"] = workarounds
    stem = "-".join(filter(None, [args.suite, size, args.tag]))
    if args.suite == "stde_paper":
        stem = "-".join(filter(None, ["stde-paper", "" if size == "small" else size, args.tag]))
    paths = report.write(result, args.out, stem, figure=not args.no_plot)
    print("\n".join(["", *(f"{t['target']} [{t['method']}, {t['at']}]: {t['ratio']:.3f}× "
                           f"({'met' if t['met'] else 'NOT met'})" for t in result["targets"])]))
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
