#!/usr/bin/env bash
# Stage 2 of the shipped default model: grow the stage-1 weights (scripts/train_default.sh,
# EMA at step 1500, kept in runs/pseudo3d-prefill/init/) into a model with the --prefill
# channel (a nonlocal fill of the mask that the network learns to correct) and fine-tune it,
# the real scan drawn three times as often as each template. Resumable like stage 1: rerun
# the same command; on a fresh machine it starts from the state committed in
# training/pseudo3d-prefill/ (saved with RUN_DIR=runs/pseudo3d-prefill
# bash scripts/save_training_state.sh). Export with
#   .venv/bin/bidsfill-train --run-dir runs/pseudo3d-prefill --export-only \
#       --export bidsfill/data/models/pseudo3d.safetensors --sampling-steps 10 --sampling-n-samples 4
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_training.sh runs/pseudo3d-prefill
if [ ! -f "$RUN_DIR/init/pseudo3d.safetensors" ]; then
    echo "prefill_default.sh: the stage-1 weights $RUN_DIR/init/pseudo3d.safetensors are missing." >&2
    exit 66
fi
nohup .venv/bin/python -m bidsfill.cli.train \
    --mni --bids-dir "${BIDS_DIR:-/work/shared/data/healthy-t1w}" \
    --participant-label spm152 cit168 gd01 \
    --val-participant-label head01 gd01:right \
    --run-dir "$RUN_DIR" --arch pseudo3d --channels 24 48 96 --num-res-blocks 1 \
    --patch 64 64 6 --region 96 96 32 --prediction-type sample --beta-schedule cosine --prefill \
    --steps 1000 --batch-size 2 --lr 2e-4 --warmup-steps 50 --ema-decay 0.995 \
    --outside-weight 0.1 --checkpoint-every 100 --val-every 400 --val-steps 10 --val-cases 2 \
    --mask-bank 256 --seed 1 --threads "$THREADS" --max-minutes "$MAX_MINUTES" \
    --volume-weight gd01=3 --init-from "$RUN_DIR/init/pseudo3d.safetensors" \
    >>"$RUN_DIR/train.out" 2>&1 &
echo "training stage 2 in the background: pid $! (log: $RUN_DIR/train.out)"
