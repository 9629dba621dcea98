#!/usr/bin/env bash
# Stage 5 of the default model (issue 12), tried in session 13: the shipped stage-4 model
# (step 2,800) fine-tuned on the timesteps its one-step fill actually evaluates. Stage 4
# drew them from the noisiest 10 % of the schedule, where x_t still carries up to 15 % of
# the image (t = 900 of the cosine schedule), so the network learned to read x_t; at the
# fill's t = 999 it holds nothing but noise, and the network's answer still moves with
# that noise (4 fills beat 2 by 0.05 dB on unseen patients: the spread is error). Here
# every timestep comes from the noisiest 1 % (--high-t-span 0.01, signal under 1.4 %), so
# the network learns to ignore the noise and give the posterior mean itself.
# Same data, held-out subjects, crops and mask mix as stage 4 (scripts/direct_default.sh).
# Resumable: rerun the same command (a larger STEPS continues with a warm restart).
# On a GPU machine, ten minutes of the same recipe:
#   RUN_DIR=runs/gpu-onestep DEVICE=cuda WORKERS=14 BATCH=16 MAX_MINUTES=10 bash scripts/onestep_default.sh
# Export with: .venv/bin/python scripts/export_default.py --run-dir runs/pseudo3d-onestep \
#   --steps 1 --n-samples 2 --flip --edge-taper 3 --out OUT
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_training.sh runs/pseudo3d-onestep
if [ ! -f "$RUN_DIR/init/pseudo3d.safetensors" ]; then
    mkdir -p "$RUN_DIR/init"
    cp bidsfill/data/models/pseudo3d.safetensors bidsfill/data/models/pseudo3d.json "$RUN_DIR/init/"
fi
nohup .venv/bin/python -m bidsfill.cli.train \
    "${RESIDUAL_DATA[@]}" \
    --run-dir "$RUN_DIR" "${RESIDUAL_NETWORK[@]}" --high-t-fraction 1.0 --high-t-span 0.01 \
    --steps "${STEPS:-600}" --lr 5e-5 --warmup-steps 20 \
    --seed 6 "${RESIDUAL_LOOP[@]}" \
    --init-from "$RUN_DIR/init/pseudo3d.safetensors" \
    >>"$RUN_DIR/train.out" 2>&1 &
echo "training stage 5 (one-step timesteps) in the background: pid $! (log: $RUN_DIR/train.out)"
