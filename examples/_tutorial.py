"""Shared helpers for the narrated tutorials: the ``--tiny`` switch and section titles."""

from __future__ import annotations

import os
import sys


def tiny() -> bool:
    """Whether to run at test size: ``--tiny`` on the command line or ``STDE_TUTORIAL_TINY=1``."""
    return "--tiny" in sys.argv[1:] or os.environ.get("STDE_TUTORIAL_TINY", "") not in ("", "0")


def section(title: str) -> None:
    """Prints a section title."""
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)))
