"""Shared helpers for the narrated tutorials: the ``--tiny`` switch and section titles."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax


def tiny() -> bool:
    """Whether to run at test size: ``--tiny`` on the command line or ``STDE_TUTORIAL_TINY=1``."""
    return "--tiny" in sys.argv[1:] or os.environ.get("STDE_TUTORIAL_TINY", "") not in ("", "0")


def section(title: str) -> None:
    """Prints a section title."""
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)))


def median_seconds(functions: dict[str, Callable[..., Any]], *args: Any,
                   repeats: int = 51) -> dict[str, float]:
    """Median wall time of each compiled function on ``args``, interleaved.

    Each function is called once first (compilation is not timed); then every round
    calls each function once, in turn, and waits for its result
    (``jax.block_until_ready``), so that a load change on a shared machine hits all of
    them alike. One call alone says little: timings of microseconds vary by 2x from call
    to call.
    """
    for fn in functions.values():
        jax.block_until_ready(fn(*args))
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}
