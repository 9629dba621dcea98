#!/usr/bin/env bash
# Issue 15, with and without FLAIR: the shipped default fine-tuned on the multi-contrast
# MS patients twice, with the same data, masks, steps budget and seed:
#   runs/flair/pseudo3d-flair   --flair: the FLAIR as an extra channel (its first-layer
#                               weights start at zero, so step 0 is the default exactly)
#   runs/flair/pseudo3d-t1w     the same fine-tuning without it (the control)
# Training subjects: sub-ms07, sub-ms19 (CC-BY; their own lesions, grown by 2 voxels, are
# never inside a training mask). Held out for benchmarks/compare_flair.py: sub-ms26 and
# sub-tcgadu7294. Inside every training mask the FLAIR shows a simulated bright lesion
# (bidsfill.evaluate.simulate.bright_lesion), as a patient's FLAIR would.
#
#   MINUTES=15 bash scripts/train_flair.sh     # both at once, 1 torch thread each
# The recipe is the shipped default's stage 4 (scripts/direct_default.sh): timesteps from
# the noisiest 10 % only (the one-step fill evaluates nothing else), a learning rate at
# the level stage 4 ended its cycles with, and the default's sampling in the exported
# cards (1 step, 2 fills, flip, 3 mm edge taper), so each model is scored as the default
# is. HIGH_T, LR, EMA change it (the first runs used HIGH_T=0.3 LR=1e-4 EMA=0.99).
# A user with more patients passes their dataset: DATA_DIR=/data/bids SUBJECTS="p1 p2 ..."
# Resumable: rerun the same command. On a GPU machine add DEVICE=cuda WORKERS=14 BATCH=16.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-$(cd .. && pwd)/shared/data/multicontrast}
MASKS=${MASKS:-$(cd .. && pwd)/shared/data/lesion-masks}
SUBJECTS=${SUBJECTS:-"ms07 ms19"}
MINUTES=${MINUTES:-15}
RUNS=${RUNS:-runs/flair}
INIT=${INIT:-bidsfill/data/models/pseudo3d.safetensors}
export OMP_NUM_THREADS=1 ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1
# shellcheck disable=SC2206
common=(
    --bids-dir "$DATA_DIR" --participant-label $SUBJECTS
    --real-masks "$MASKS" --real-max-ml 120
    --mask-kinds real=0.4 ms=0.3 tumour=0.2 cavity=0.1
    --arch pseudo3d --channels 24 48 96 --num-res-blocks 1 --patch 64 64 6 --region 96 96 32
    --prefill --residual --prediction-type sample --beta-schedule cosine --high-t-fraction "${HIGH_T:-1.0}"
    --steps 100000 --batch-size "${BATCH:-4}" --lr "${LR:-3e-5}" --warmup-steps 20 --ema-decay "${EMA:-0.995}"
    --outside-weight 0.1 --checkpoint-every 25 --val-every 0 --mask-bank 512 --seed 5
    --threads 1 --num-workers "${WORKERS:-1}" --device "${DEVICE:-auto}"
    --max-minutes "$MINUTES" --init-from "$INIT"
)
train_one() {
    local name=$1 run=$RUNS/$1
    shift
    mkdir -p "$run"
    .venv/bin/python -m bidsfill.cli.train "${common[@]}" "$@" --run-dir "$run" >>"$run/train.out" 2>&1
    .venv/bin/python scripts/export_default.py --run-dir "$run" --out "$run/$name.safetensors" \
        --n-samples 2 --flip --edge-taper 3 >>"$run/train.out" 2>&1
    echo "$name: $(tail -n 1 "$run/train.out")"
}
train_one pseudo3d-flair --flair &
train_one pseudo3d-t1w &
wait
