#!/usr/bin/env bash
# Issue 17: every diffusion architecture the app offers, trained from scratch with the same
# data, mask mix, residual parameterisation (except RePaint's unconditional model), model
# grid, optimiser and budget, then exported with its card to bidsfill/data/models/<method>.
# The data are the default model's stage 3 (scripts/residual_default.sh): the same training
# subjects and real + synthetic masks, the same four held-out scans.
#
#   MINUTES=12 PARALLEL=2 bash scripts/train_family.sh            # every method
#   METHODS="seqpos wdm3d" MINUTES=12 bash scripts/train_family.sh # some
#   METHODS=pseudo3d-mirror ...  # with and without symmetry (issue 15): the same pseudo3d
#                                # recipe plus the contralateral channel, not shipped
#
# The budget is wall-clock minutes per model (--max-minutes) on 1 torch thread and 1 data
# worker, PARALLEL models at a time; the steps each reached are in its card. Resumable:
# rerun the same command and each run continues from its latest checkpoint in
# runs/family/<method> (the minutes then count again). On a GPU machine add DEVICE=cuda
# WORKERS=14 BATCH=16; EXTRA="--steps 2 --checkpoint-every 2" makes a quick smoke run. Runs in
# the foreground; start it with nohup for a long budget.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-$(cd .. && pwd)/shared/data}
MINUTES=${MINUTES:-12}
PARALLEL=${PARALLEL:-2}
METHODS=${METHODS:-"pseudo3d slicewise seqpos wdm3d ddpm3d ldm3d repaint"}
OUT=${OUT:-bidsfill/data/models}
RUNS=${RUNS:-runs/family}
export OMP_NUM_THREADS=1 ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1

common=(
    --mni --bids-dir "$DATA/healthy-t1w"
    --participant-label ds2748s52 ds2748s53 ds2748s54 ds2748s55 ds2748s56 ds2748s57
        ds2748s58 ds2748s59 ds2748s60 ixi012 phadni01 niimath01 spm152 cit168
    --real-masks "$DATA/lesion-masks" --real-max-ml 120
    --mask-kinds real=0.4 ms=0.3 tumour=0.1 cavity=0.1 random=0.1
    --prediction-type sample --beta-schedule cosine --high-t-fraction 0.3
    --steps 100000 --batch-size "${BATCH:-4}" --lr 2e-4 --warmup-steps 50 --ema-decay 0.995
    --outside-weight 0.1 --checkpoint-every 50 --val-every 0 --mask-bank 1024 --seed 3
    --threads 1 --num-workers "${WORKERS:-1}" --device "${DEVICE:-auto}"
    --max-minutes "$MINUTES"
)

# Per method: its network, patch and conditioning, and the card's default sampling.
# Conditional models predict the correction of the nonlocal prefill (one DDIM step is their
# posterior-mean estimate, as for the default); RePaint's model sees healthy tissue only
# and resamples (Kropp et al.: jump length 5).
arch_args() {
    case $1 in
        pseudo3d | slicewise | seqpos)
            echo "--arch $1 --channels 24 48 96 --num-res-blocks 1 --patch 64 64 6 --region 96 96 32 --prefill --residual" ;;
        pseudo3d-mirror)  # issue 15: pseudo3d with Santorum et al.'s contralateral channel
            echo "--arch pseudo3d --mirror --channels 24 48 96 --num-res-blocks 1 --patch 64 64 6 --region 96 96 32 --prefill --residual" ;;
        wdm3d)
            echo "--arch wdm3d --channels 16 32 64 --num-res-blocks 1 --patch 64 64 32 --region 96 96 48 --prefill --residual" ;;
        ddpm3d)
            echo "--arch ddpm3d --channels 16 32 64 --num-res-blocks 1 --patch 32 32 32 --region 64 64 48 --prefill --residual" ;;
        ldm3d)  # its autoencoder trains first, on the same step counter
            echo "--arch ldm3d --channels 16 32 64 --num-res-blocks 1 --patch 32 32 32 --region 64 64 48 --prefill --residual --stage-steps autoencoder=${AE_STEPS:-120}" ;;
        repaint)
            echo "--arch pseudo3d --unconditional --channels 24 48 96 --num-res-blocks 1 --patch 64 64 6 --region 96 96 32" ;;
        *) echo "unknown method $1" >&2; return 64 ;;
    esac
}
sampling() {
    case $1 in
        repaint) echo '{"steps": 10, "n_samples": 1}' ;;
        *) echo '{"steps": 1, "n_samples": 1}' ;;
    esac
}

# Every run reuses the registered priors of the default model's run when they are here
# (the MNI registration of each training scan); each draws its own mask bank, since the
# bank holds region-sized crops (the same seed draws the same masks for the same region).
PRIORS=${PRIORS:-runs/pseudo3d-residual/cache}

train_one() {
    local method=$1 run=$RUNS/$1
    mkdir -p "$run/cache"
    for f in "$PRIORS"/priors-*.npz; do
        if [ -e "$f" ]; then ln -sf "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$run/cache/"; fi
    done
    # shellcheck disable=SC2046
    .venv/bin/python -m bidsfill.cli.train "${common[@]}" $(arch_args "$method") \
        --run-dir "$run" ${EXTRA:-} >>"$run/train.out" 2>&1
    # pseudo3d's equal-budget models are for the comparisons only: the shipped default stays
    local dest=$OUT/$method.safetensors
    case $method in pseudo3d*) dest=$run/$method.safetensors ;; esac
    .venv/bin/python scripts/export_default.py --run-dir "$run" --out "$dest" \
        --sampling "$(sampling "$method")" >>"$run/train.out" 2>&1
    echo "$method: $(tail -n 1 "$run/train.out")"
}

running=0
for method in $METHODS; do
    arch_args "$method" >/dev/null
    train_one "$method" &
    running=$((running + 1))
    if [ "$running" -ge "$PARALLEL" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait
