# Shared by the default model's stage scripts (sourced, not run): the run folder,
# thread and time settings, and seeding a fresh machine's run folder from the resume state
# committed in training/NAME (latest checkpoint, latest.json, config, logs, init weights),
# so the run continues exactly.
# Usage: source scripts/_training.sh DEFAULT_RUN_DIR
RUN_DIR=${RUN_DIR:-$1}
THREADS=${THREADS:-1}
MAX_MINUTES=${MAX_MINUTES:-0}
SEED_DIR=training/$(basename "$1")
mkdir -p "$RUN_DIR"
if [ ! -f "$RUN_DIR/latest.json" ] && [ -f "$SEED_DIR/latest.json" ]; then
    cp -r "$SEED_DIR"/. "$RUN_DIR"/
    echo "resuming from the committed state in $SEED_DIR"
fi
export OMP_NUM_THREADS=$THREADS ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=$THREADS
# The residual default's data and network (stages 3-5: residual_default.sh,
# direct_default.sh, lowres_default.sh): 14 training scans (the four scorecard scans held
# out), real and synthetic masks, the pseudo3d residual network on the nonlocal prefill.
DATA=${DATA:-$(cd .. && pwd)/shared/data}
RESIDUAL_DATA=(
    --mni --bids-dir "$DATA/healthy-t1w"
    --participant-label ds2748s52 ds2748s53 ds2748s54 ds2748s55 ds2748s56 ds2748s57
    ds2748s58 ds2748s59 ds2748s60 ixi012 phadni01 niimath01 spm152 cit168
    --real-masks "$DATA/lesion-masks" --real-max-ml 120
    --mask-kinds real=0.4 ms=0.3 tumour=0.1 cavity=0.1 random=0.1
)
RESIDUAL_NETWORK=(
    --arch pseudo3d --channels 24 48 96 --num-res-blocks 1 --patch 64 64 6 --region 96 96 32
    --prediction-type sample --beta-schedule cosine --prefill --residual
)
# The loop settings every stage of the residual default shares (each stage script adds its
# own steps, learning rate, warm-up, seed, timesteps and starting weights).
RESIDUAL_LOOP=(
    --batch-size "${BATCH:-4}" --ema-decay 0.995 --outside-weight 0.1
    --checkpoint-every 50 --val-every 0 --mask-bank 1024
    --threads "$THREADS" --num-workers "${WORKERS:-1}"
    --max-minutes "$MAX_MINUTES" --device "${DEVICE:-auto}"
)
