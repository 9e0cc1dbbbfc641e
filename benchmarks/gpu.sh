#!/usr/bin/env bash
# GPU runtime benchmarks: Mithril's torch (cuda) and JAX (gpu) backends against native code, same run.
#
#   bash benchmarks/gpu.sh [part] [extra run.py args...]
#
# part: small   every runtime model (seed MLP, MLP 10x2048, seed CNN, GPT-2-small shapes B=1 T=64)
#       gpt     GPT-2-small shapes with a GPU-sized batch: 12 layers, d=768, 12 heads, T=1024, B=8
#       train   the full training step (forward, cross-entropy, backward, AdamW) of that GPT-2-small shape:
#               Mithril torch eager / jit=True and JAX jit=True against torch.nn + torch.optim.AdamW,
#               torch.compile of the whole step and jax.jit + optax.adamw (suite "train", bench_train.py)
#       all     small and gpt (default; may exceed a 10-minute command limit on a cold machine: run the parts)
#
# Runs from the repository root. Needs python with numpy, pluggy and torch and/or jax; the Mithril
# packages need not be pip-installed: their src folders go on PYTHONPATH here (and their backends are
# registered in-process when no entry points exist). A missing torch or jax skips that family.
# Results: benchmarks/results/gpu-<part>/results.{md,json} (or $OUT/gpu-<part> when $OUT is set).
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
PART=${1:-all}
[ $# -gt 0 ] && shift
for p in mithril-core mithril-numpy mithril-torch mithril-jax mithril-ggml; do
  PYTHONPATH="$ROOT/packages/$p/src${PYTHONPATH:+:$PYTHONPATH}"
done
export PYTHONPATH
export XLA_PYTHON_CLIENT_PREALLOCATE=false
DEST=${OUT:-$ROOT/benchmarks/results}

echo "== environment"
"$PY" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for m in ("numpy", "pluggy", "torch", "jax", "jaxlib", "ggml"):
    try:
        mod = importlib.import_module(m)
        print(f"{m:8s} {getattr(mod, '__version__', '?')}")
    except Exception as e:  # noqa: BLE001
        print(f"{m:8s} MISSING ({type(e).__name__}: {e})")
try:
    import torch
    print("cuda", torch.cuda.is_available(), torch.version.cuda,
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception:
    pass
try:
    import jax
    print("jax devices", jax.devices())
except Exception as e:  # noqa: BLE001
    print("jax devices: none:", e)
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

if ! "$PY" -c "import numpy, pluggy" 2>/dev/null; then
  echo "numpy and pluggy are needed to import mithril; install them (offline wheels) first" >&2
  exit 2
fi
DEVICE=cuda
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  DEVICE=gpu  # no usable torch: JAX only (run.py skips what is missing)
fi

status=0
run_part() {  # name, run.py args...
  local name=$1; shift
  echo "== part $name"
  "$PY" -u benchmarks/run.py --device "$DEVICE" --only "${SUITE:-runtime}" --out "$DEST/gpu-$name" "$@" || status=$?
}
case "$PART" in
  small) run_part small "$@" ;;
  gpt)   run_part gpt --models gpt --gpt 12,768,12,1024,8 "$@" ;;
  train) SUITE=train run_part train --models gpt --gpt 12,768,12,1024,8 "$@" ;;
  all)   run_part small "$@"; run_part gpt --models gpt --gpt 12,768,12,1024,8 "$@" ;;
  *) echo "unknown part $PART (small | gpt | train | all)" >&2; exit 2 ;;
esac
exit $status
