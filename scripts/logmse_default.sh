#!/usr/bin/env bash
# Stage 5 of the default model (issue 12), tried in session 12: the shipped stage-4 model
# (step 2,800) fine-tuned with each crop's log-MSE (--log-mse-eps) instead of one MSE
# pooled over the batch. The pooled loss lets a crop full of lesion outweigh a crop with a
# few lesion voxels by its voxel count, while the scorecard averages each case's PSNR
# alike, small MS lesions as much as a 50 ml stroke. Same data, held-out subjects, crops,
# mask mix and timesteps as stage 4 (scripts/direct_default.sh).
# Resumable: rerun the same command (a larger STEPS continues with a warm restart).
# On a GPU machine, ten minutes of the same recipe:
#   RUN_DIR=runs/gpu-logmse DEVICE=cuda WORKERS=14 BATCH=16 MAX_MINUTES=10 bash scripts/logmse_default.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_training.sh runs/pseudo3d-logmse
if [ ! -f "$RUN_DIR/init/pseudo3d.safetensors" ]; then
    mkdir -p "$RUN_DIR/init"
    cp bidsfill/data/models/pseudo3d.safetensors bidsfill/data/models/pseudo3d.json "$RUN_DIR/init/"
fi
nohup .venv/bin/python -m bidsfill.cli.train \
    "${RESIDUAL_DATA[@]}" \
    --run-dir "$RUN_DIR" "${RESIDUAL_NETWORK[@]}" --high-t-fraction 1.0 \
    --log-mse-eps "${EPS:-0.001}" \
    --steps "${STEPS:-600}" --lr 5e-5 --warmup-steps 20 \
    --seed 5 "${RESIDUAL_LOOP[@]}" \
    --init-from "$RUN_DIR/init/pseudo3d.safetensors" \
    >>"$RUN_DIR/train.out" 2>&1 &
echo "training stage 5 (log-MSE) in the background: pid $! (log: $RUN_DIR/train.out)"
