#!/usr/bin/env bash
# Launch (or resume: same command) the training of the shipped default pseudo3d model in
# the background. Checkpoints, logs and caches go to runs/pseudo3d-default/ (git-ignored);
# rerunning continues exactly from the latest checkpoint. Save the resume state for the next
# session with `bash scripts/save_training_state.sh`. Export afterwards with
#   .venv/bin/bidsfill-train --run-dir runs/pseudo3d-default --export-only \
#       --export bidsfill/data/models/pseudo3d.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_training.sh runs/pseudo3d-default
nohup .venv/bin/python -m bidsfill.cli.train \
    --mni --bids-dir "${BIDS_DIR:-/work/shared/data/healthy-t1w}" \
    --participant-label spm152 cit168 gd01 \
    --val-participant-label head01 gd01:right \
    --run-dir "$RUN_DIR" --arch pseudo3d --channels 24 48 96 --num-res-blocks 1 \
    --patch 64 64 6 --region 96 96 32 --prediction-type sample --beta-schedule cosine \
    --steps 4000 --batch-size 2 --lr 2e-4 --warmup-steps 200 --ema-decay 0.999 \
    --outside-weight 0.1 --checkpoint-every 100 --val-every 500 --val-steps 10 --val-cases 2 \
    --mask-bank 256 --seed 0 --threads "$THREADS" --max-minutes "$MAX_MINUTES" \
    >>"$RUN_DIR/train.out" 2>&1 &
echo "training in the background: pid $! (log: $RUN_DIR/train.out)"
