#!/usr/bin/env bash
# One GPU run of the two papers' tables, within about 8 minutes on one H100/H200:
#
#   1. the collapsing paper's operator table (Dangel et al.): exact and stochastic
#      Laplacian and biharmonic of the D→768→768→512→512→1 tanh MLP, stde against nested
#      AD, jax.experimental.jet and folx: time, XLA flops and temp memory
#      (python -m benchmarks.run --suite laplacian|stochastic_laplacian|biharmonic|
#      stochastic_biharmonic --size paper);
#   2. the STDE paper's two-body Allen–Cahn at d = 10⁵ and 10⁶ with its settings (width 128,
#      Adam 1e-3 linear decay, 100 points, |J| = 16): it/s, device peak memory, relative L2
#      error beside the trivial and best |x|²,t predictors, SDGD at 10⁵ beside it
#      (python -m benchmarks.run --suite stde_paper --size gpu; benchmarks/suites/stde_paper.py,
#      PLANS["gpu"], says the steps), then the ridge problem at 10⁵ and 10⁶, while its time
#      budget lasts.
#
# Usage:  bash benchmarks/gpu.sh [--tiny] [OUT_DIR]
#   OUT_DIR (default: $OUT, else benchmarks/results/gpu) receives every suite's .json/.md/.png,
#   one log per suite and env.txt (devices, versions, nvidia-smi).
#   --tiny runs the same pipeline at the harness's tiny sizes on the CPU (< 1 minute).
#
# Installs nothing. Needs, installed beforehand: Python ≥ 3.11 with jax and a matching CUDA
# jaxlib (e.g. pip install "jax[cuda12]"), numpy, optax, matplotlib, tqdm, and folx for the
# folx columns (without it those rows say "error" and the rest runs); this checkout on
# PYTHONPATH (the script adds it). PYTHON selects the interpreter (default: python).
set -uo pipefail

tiny=0
out="${OUT:-}"
for arg in "$@"; do
  case "$arg" in
    --tiny) tiny=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) out="$arg" ;;
  esac
done
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${out:-$root/benchmarks/results/gpu}"
mkdir -p "$out"
cd "$root" || exit 1
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # peaks from the allocator, not a preallocated pool
python="${PYTHON:-python}"

if [ "$tiny" = 1 ]; then
  export JAX_PLATFORMS=cpu
  size=(--tiny)
  op_limit=300 train_limit=300  # generous: a shared CPU; idle, the whole run takes ~1 minute
else
  export JAX_PLATFORMS="${JAX_PLATFORMS:-cuda}"
  size=(--size paper)
  op_limit=60 train_limit=240
fi

{
  date -u
  "$python" -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices())"
  "$python" -c "import folx; print('folx', getattr(folx, '__version__', 'installed'))" 2>&1 | tail -1
  command -v nvidia-smi >/dev/null && nvidia-smi
} > "$out/env.txt" 2>&1

status=0
run_suite() {  # run_suite LIMIT_SECONDS SUITE ARGS...: one suite, its log beside its results
  local limit=$1 suite=$2
  shift 2
  echo "== $suite (limit ${limit} s)"
  timeout "$limit" "$python" -m benchmarks.run --suite "$suite" "$@" --out "$out" \
    --note "benchmarks/gpu.sh" 2>&1 | tee "$out/$suite.log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" != 0 ]; then
    echo "!! $suite exited with status $rc (124: over its ${limit} s limit)" | tee -a "$out/$suite.log"
    status=1
  fi
}

start=$SECONDS
run_suite "$op_limit" laplacian "${size[@]}"
run_suite "$op_limit" biharmonic "${size[@]}"
run_suite "$op_limit" stochastic_laplacian "${size[@]}"
run_suite "$op_limit" stochastic_biharmonic "${size[@]}"
# The training runs share a time budget inside the limit: a run that would overrun it is
# stopped and the later ones skipped, so the rows trained so far are still written.
budget=(--time-budget "$((train_limit - 20))")
if [ "$tiny" = 1 ]; then
  run_suite "$train_limit" stde_paper --tiny "${budget[@]}"
else
  run_suite "$train_limit" stde_paper --size gpu "${budget[@]}"
fi
echo "gpu.sh: $((SECONDS - start)) s; results in $out"
exit $status
