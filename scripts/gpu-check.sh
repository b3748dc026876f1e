#!/usr/bin/env bash
# GPU readiness check (docs/benchmarks.md, "GPU"): on a machine with an NVIDIA GPU and no
# network, in under 8 minutes, run from the repository root:
#
#   scripts/gpu-check.sh                 # CUDA; results in $OUT (default ./gpu-check-out)
#   scripts/gpu-check.sh --cpu-dry-run   # every stage on the CPU, small sizes (no GPU needed)
#
# Stages (scripts/gpu_check.py): CUDA forces vs the NumPy reference, CUDA vs CPU neighbour
# lists, RNG streams CPU vs CUDA, NVE energy conservation, FIRE on BOTAN file 1, CUDA graphs
# on vs off, recompile counts, kernel launches / host syncs per step (torch.profiler),
# `tbotan benchmark md --device cuda` at 32 x 4096, `tbotan benchmark train --device cuda
# --compile --amp`, and `tbotan predict --device cuda`.  A stage whose estimated cost exceeds
# the time left is skipped, never overrun (budget: $GPU_CHECK_BUDGET seconds, default 420).
# Output: $OUT/gpu-check.json (status, seconds and results per stage), $OUT/gpu-check.log,
# the benchmarks' JSON and the logs of the CLI calls.
#
# Python packages the device image may lack (it has torch, torch-geometric, h5py and
# matplotlib): jsonschema (with attrs, referencing, rpds-py, jsonschema-specifications),
# pyyaml, tqdm, scipy, gsd, freud-analysis.  Carry their cp312 wheels in ./wheels (or
# $WHEELS), filled on a machine with network:
#
#   pip download --python-version 3.12 --only-binary=:all: \
#       --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
#       -d wheels/ jsonschema pyyaml tqdm gsd freud-analysis scipy
#
# (with dependencies; add --no-deps and list them yourself to keep the folder small).  The
# script installs from that folder, offline, only what does not import; the package itself is
# used from src/ (PYTHONPATH), not installed.  The BOTAN data are looked up in
# $TBOTAN_BOTAN_DATA, ./shared/data/botan-T0.44 and ../shared/data/botan-T0.44; the stages
# needing them say so when they are absent.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-gpu-check-out}
WHEELS=${WHEELS:-wheels}
DEVICE=${DEVICE:-cuda}
BUDGET=${GPU_CHECK_BUDGET:-420}
for arg in "$@"; do
  case "$arg" in
    --cpu-dry-run) DEVICE=cpu; BUDGET=${GPU_CHECK_BUDGET:-1500} ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
missing=()
for spec in jsonschema:jsonschema yaml:pyyaml tqdm:tqdm scipy:scipy gsd:gsd freud:freud-analysis \
            h5py:h5py torch_geometric:torch-geometric; do
  module=${spec%%:*}; package=${spec#*:}
  "$PY" -c "import $module" 2>/dev/null || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing Python packages: ${missing[*]}" | tee -a "$OUT/gpu-check.log"
  if [ -d "$WHEELS" ]; then
    "$PY" -m pip install --no-index --find-links "$WHEELS" "${missing[@]}" 2>&1 \
      | tail -n 3 | tee -a "$OUT/gpu-check.log"
  else
    echo "no wheel folder $WHEELS: stages needing ${missing[*]} will fail" | tee -a "$OUT/gpu-check.log"
  fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
exec timeout --signal=INT $((BUDGET + 60)) "$PY" scripts/gpu_check.py --out "$OUT" \
  --device "$DEVICE" --budget "$BUDGET"
