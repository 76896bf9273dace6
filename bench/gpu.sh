#!/usr/bin/env bash
# The benchmark's accelerator run, sized for one GPU session (~10 minutes):
# the train step of the workloads' LM at its gpu size (Adam against the
# hypergradient with each reduction, and GreedyLR), then the LM's
# rate-sensitivity sweep at that size, every (rate, seed) of a row as one
# vmapped program. Results go to $RES (resumable: run it again to finish a
# sweep that hit its time limit) and, as one archive, to $OUT.
#
#   RES=gpu_results OUT=/tmp bash bench/gpu.sh
set -uo pipefail
RES=${RES:-gpu_results}
OUT=${OUT:-/tmp}
SCALE=${SCALE:-1}
SIZE=${SIZE:-gpu}
mkdir -p "$RES"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import jax, optax, flax; print('jax', jax.__version__, 'optax', optax.__version__, 'flax', flax.__version__, jax.devices())"
} > "$RES/machine.txt" 2>&1
if [ ! -f "$RES/workloads/step_cost.md" ]; then
  timeout "${STEP_COST_S:-160}" python3 -m bench workloads --out "$RES" \
    --only lm --size "$SIZE" --step-cost 2>&1 | tee -a "$RES/log.txt"
fi
timeout "${SWEEP_S:-400}" python3 -m bench workloads --out "$RES" --only lm \
  --size "$SIZE" --vmap --reuse --seeds 0 1 --peaks 5e-4 1e-3 2e-3 4e-3 \
  --steps-scale "$SCALE" --rows greedy_budget \
  --sweep-rows cosine learned_scale wsd greedy mechanic schedule_free prodigy \
  --sweep-seeds all 2>&1 | tee -a "$RES/log.txt"
tar czf "$OUT/gpu_results.tgz" "$RES"
