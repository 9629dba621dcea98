#!/usr/bin/env bash
# Copy the resume state of the default model's training (latest checkpoint, latest.json,
# config, logs, and the starting weights of a fine-tuning run) from runs/NAME into
# training/NAME, which is committed, so a later session on a fresh machine can continue it
# with scripts/train_default.sh (stage 1) or scripts/finetune_default.sh (stage 2).
# Caches are not copied (rebuilt). RUN_DIR=runs/pseudo3d-ft for stage 2.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${RUN_DIR:-runs/pseudo3d-default}
OUT=training/$(basename "$RUN_DIR")
latest=$(python3 -c "import json,sys; print(json.load(open('$RUN_DIR/latest.json'))['checkpoint'])")
rm -rf "$OUT"
mkdir -p "$OUT/checkpoints"
cp "$RUN_DIR/$latest" "$OUT/$latest"
cp "$RUN_DIR/latest.json" "$RUN_DIR/config.json" "$OUT/"
for f in train_log.csv val_log.csv nawm_scores.json; do
    [ -f "$RUN_DIR/$f" ] && cp "$RUN_DIR/$f" "$OUT/"
done
[ -d "$RUN_DIR/init" ] && cp -r "$RUN_DIR/init" "$OUT/"
echo "saved $(cat "$OUT/latest.json") to $OUT"
