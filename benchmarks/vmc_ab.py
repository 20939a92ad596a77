"""Two VMC methods head to head: ``python -m benchmarks.vmc_ab --electrons 32``.

Compiles the kinetic energy of a batch of walkers (or, with ``--gradient``, the mean
energy's parameter gradient) of :mod:`benchmarks.suites.vmc`'s wavefunction for each
method, calls them in interleaved rounds (the order rotating) and prints, per method,
the median and fastest call, XLA's flops and temp bytes and the ratio of medians to
the last method. ``--accuracy`` instead compares each method's float32 kinetic energies
with a float64 ``jax.hessian`` reference, walker by walker. Pin the process to one core
(``taskset -c 1 python -m benchmarks.vmc_ab ...``) on a shared machine; run it in
several fresh processes to see the spread.

Example:
  ``taskset -c 1 python -m benchmarks.vmc_ab --electrons 16 --walkers 16 --rounds 20``
  prints the 16-walker rows of README's VMC table (stde against folx_sparse).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks.suites import vmc


def _wrapped(method: str, gradient: bool) -> Callable[..., Any]:
    wrap = vmc.energy_gradient if gradient else vmc.walkers_kinetic
    return wrap(vmc.KINETIC[method])


def timing(methods: Sequence[str], electrons: int, walkers: int, rounds: int,
           gradient: bool = False, width: int = 32) -> list[str]:
    """Interleaved medians of ``methods`` (names of ``vmc.KINETIC``), one line each.

    Example:
      >>> lines = timing(["stde_collapsed", "nested"], electrons=4, walkers=2, rounds=3,
      ...                width=8)
      >>> lines[-1].split()[:2]
      ['nested:', 'median']

    """
    params, batch = vmc.setup(electrons, walkers, width)
    prepared = {m: common.prepare(_wrapped(m, gradient), (params, batch)) for m in methods}
    measured = common.measure_interleaved(prepared, rounds, max_seconds=float("inf"))
    reference = measured[methods[-1]].median_s
    return [f"{m}: median {r.median_s * 1e3:.2f} ms ({r.median_s / reference:.3f}x "
            f"{methods[-1]}), min {r.min_s * 1e3:.2f} ms, {(r.flops or 0) / 1e9:.3f} GFLOP, "
            f"temp {(r.temp_bytes or 0) / 2 ** 20:.1f} MiB" for m, r in measured.items()]


def accuracy(methods: Sequence[str], electrons: int, walkers: int, width: int = 32
             ) -> list[str]:
    """Relative errors of float32 kinetic energies against float64 ``jax.hessian``.

    Every method gets the same float32 parameters and walkers; the reference gets them
    converted to float64 (``jax_enable_x64`` is switched on for the call).
    """
    params, batch = vmc.setup(electrons, walkers, width)
    with jax.enable_x64(True):
        wide = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), (params, batch))
        exact = np.asarray(jax.jit(vmc.walkers_kinetic(vmc.nested_kinetic))(*wide))
    lines = []
    for m in methods:
        relative = np.abs(np.asarray(jax.jit(_wrapped(m, False))(params, batch)) - exact
                          ) / np.abs(exact)
        lines.append(f"{m}: relative error median {np.median(relative):.2e}, "
                     f"max {relative.max():.2e} (walker {int(relative.argmax())})")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--electrons", type=int, default=16)
    parser.add_argument("--walkers", type=int, default=16)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds")
    parser.add_argument("--methods", default="stde_collapsed,folx_sparse",
                        help=f"comma-separated, from {', '.join(vmc.KINETIC)}; ratios are "
                             "to the last")
    parser.add_argument("--gradient", action="store_true",
                        help="time the mean energy's parameter gradient")
    parser.add_argument("--accuracy", action="store_true",
                        help="errors against float64 instead of times")
    args = parser.parse_args(argv)
    common.runtime_workarounds()
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(vmc.KINETIC))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {sorted(vmc.KINETIC)}")
    if args.accuracy:
        lines = accuracy(methods, args.electrons, args.walkers, args.width)
    else:
        lines = timing(methods, args.electrons, args.walkers, args.rounds, args.gradient,
                       args.width)
    print(f"{args.electrons} electrons, {args.walkers} walkers, jax {jax.__version__}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
