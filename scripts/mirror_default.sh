#!/usr/bin/env bash
# Stage 6 of the default model (issue 12), tried in session 15: the shipped stage-5 model
# given Santorum et al.'s contralateral channel, the scan reflected about its own
# estimated mid-sagittal plane (--mirror). Where the reflection would show what the mask
# hides (the truth in training, the lesion in a patient) the channel shows the prefill
# instead (card preprocessing "mirror_hides_mask"), so the network cannot copy it across
# the midline. The new channel's input weights start at zero: step 0 is the shipped fill.
# Same data, held-out subjects, crops, mask mix and timesteps as stage 5
# (scripts/onestep_default.sh); a higher learning rate, for the new channel to be learned.
# Resumable: rerun the same command (a larger STEPS continues with a warm restart).
# On a GPU machine, ten minutes of the same recipe:
#   RUN_DIR=runs/gpu-mirror DEVICE=cuda WORKERS=14 BATCH=16 MAX_MINUTES=10 bash scripts/mirror_default.sh
# Export with: .venv/bin/python scripts/export_default.py --run-dir runs/pseudo3d-mirror \
#   --steps 1 --n-samples 2 --flip --edge-taper 3 --antithetic --out OUT
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_training.sh runs/pseudo3d-mirror
if [ ! -f "$RUN_DIR/init/pseudo3d.safetensors" ]; then
    mkdir -p "$RUN_DIR/init"
    cp bidsfill/data/models/pseudo3d.safetensors bidsfill/data/models/pseudo3d.json "$RUN_DIR/init/"
fi
nohup .venv/bin/python -m bidsfill.cli.train \
    "${RESIDUAL_DATA[@]}" \
    --run-dir "$RUN_DIR" "${RESIDUAL_NETWORK[@]}" --mirror --high-t-fraction 1.0 --high-t-span 0.01 \
    --steps "${STEPS:-800}" --lr 1e-4 --warmup-steps 20 \
    --seed 6 "${RESIDUAL_LOOP[@]}" \
    --init-from "$RUN_DIR/init/pseudo3d.safetensors" \
    >>"$RUN_DIR/train.out" 2>&1 &
echo "training stage 6 (contralateral channel) in the background: pid $! (log: $RUN_DIR/train.out)"
