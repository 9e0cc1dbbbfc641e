#!/usr/bin/env bash
# Scaling baselines on the GPUs of one host: the GPT-2-small training step (B=8 per GPU, T=1024, AdamW)
# through Mithril's JAX mesh (vs jax.jit + optax, same shardings) and its torch backend under torchrun
# (vs DDP, eager and compiled), at every GPU count up to $GPUS (default: all).
#
#   bash benchmarks/gpu_scaling.sh            # results in benchmarks/results/gpu-scaling (or $OUT/gpu-scaling)
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
for p in mithril-core mithril-numpy mithril-torch mithril-jax; do
  PYTHONPATH="$ROOT/packages/$p/src${PYTHONPATH:+:$PYTHONPATH}"
done
export PYTHONPATH XLA_PYTHON_CLIENT_PREALLOCATE=false NCCL_NVLS_ENABLE=0
DEST=${OUT:-$ROOT/benchmarks/results}/gpu-scaling
mkdir -p "$DEST"
N=${GPUS:-$(nvidia-smi -L | wc -l)}
COUNTS=$(seq -s, 1 "$N" | sed 's/,$//')
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$DEST/gpus.txt"
timeout 300 "$PY" benchmarks/bench_scaling.py --devices "$COUNTS" --memory --out "$DEST/jax" 2>&1 | grep -v Warning | tee "$DEST/jax.log"
for n in $(seq 1 "$N"); do
  for mode in ${MODES-"" "--jit"}; do
    timeout 400 "$PY" -m torch.distributed.run --nproc_per_node="$n" benchmarks/bench_scaling_torch.py $mode \
      --out "$DEST/torch" 2>&1 | grep -v -i "warn" | tail -n 5 | tee -a "$DEST/torch.log"
  done
done
