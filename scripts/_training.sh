# Shared by train_default.sh and prefill_default.sh (sourced, not run): the run folder,
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
