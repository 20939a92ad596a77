"""Peak memory and time of sparse-STDE PINN training steps at very high dimension.

Runs ``--steps`` training steps of :mod:`train_pinn` (Sine–Gordon, two-body solution,
sparse STDE) at each ``--dims`` value, each in a fresh subprocess so that the reported
peak resident set size (``ru_maxrss``: the whole process, JAX runtime and compilation
included) belongs to that dimension alone.

Run: ``python examples/measure_memory.py --dims 10000 100000``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def measure(dim: int, steps: int, batch: int, n_samples: int, width: int) -> dict:
    """Trains ``steps`` steps at ``dim`` in a subprocess; returns its JSON summary."""
    config = (f"equation='sine_gordon', dim={dim}, method='sparse', n_samples={n_samples}, "
              f"steps={steps}, batch={batch}, width={width}, n_test={batch}, "
              f"eval_every={steps}, quiet=True")
    fields = ("dim", "relative_l2_error", "trivial_predictor_error", "iterations_per_second",
              "compile_seconds", "peak_rss_mib")
    code = (f"import json\n"
            f"from train_pinn import Config, train\n"
            f"s = train(Config({config}))\n"
            f"print('JSON' + json.dumps({{k: s[k] for k in {fields!r}}}))\n")
    # ``python -c`` imports from its working directory: run it here, beside train_pinn.py.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=HERE).stdout
    line = next(x for x in out.splitlines() if x.startswith("JSON"))
    return json.loads(line[4:])


def main() -> None:
    """Parses options, measures every dimension, prints one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n-samples", type=int, default=16)
    parser.add_argument("--width", type=int, default=128)
    args = parser.parse_args()
    for dim in args.dims:
        result = measure(dim, args.steps, args.batch, args.n_samples, args.width)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
