#!/usr/bin/env bash
# A missing-contrast synthesis model (cWDM, issue 15 part 3) for one target contrast:
#   TARGET=T2w SOURCES="T1w FLAIR" bash scripts/train_synthesis.sh   # -> cwdm-t2w
#   TARGET=T1w SOURCES="T2w FLAIR" bash scripts/train_synthesis.sh   # -> cwdm-t1w
#   TARGET=FLAIR SOURCES="T1w T2w" CHANNELS="16 32 64" bash scripts/train_synthesis.sh
# Trains on the MS patients sub-ms07 and sub-ms19 of ../shared/data/multicontrast (every
# session with the target and all sources) and holds out sub-ms26 and sub-tcgadu7294,
# the split of the shipped cwdm-flair; writes bidsfill/data/models/cwdm-<target>.safetensors
# and its card when the time is up. Rerunning resumes from RUN_DIR/latest.pt.
# On a GPU machine: DEVICE=cuda MINUTES=10 bash scripts/train_synthesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${TARGET:-T2w}
SOURCES=${SOURCES:-T1w FLAIR}
NAME=cwdm-$(echo "$TARGET" | tr '[:upper:]' '[:lower:]')
source scripts/_training.sh "runs/$NAME"
DATA=${DATA:-$(cd .. && pwd)/shared/data}
# shellcheck disable=SC2086  # SOURCES and CHANNELS are word lists
.venv/bin/python -m bidsfill.cli.train --task synthesize --target "$TARGET" --sources $SOURCES \
    --bids-dir "$DATA/multicontrast" --participant-label ms07 ms19 \
    --val-participant-label ms26 tcgadu7294 --run-dir "$RUN_DIR" \
    --channels ${CHANNELS:-8 16 32} --patch 64 64 64 --batch-size 1 --lr 3e-4 \
    --steps 100000 --max-minutes "${MINUTES:-15}" --threads "$THREADS" --seed 1 \
    --device "${DEVICE:-auto}" --export "bidsfill/data/models/$NAME.safetensors"
# the card's data note (the sha256 covers the weights only, so the card may be amended)
.venv/bin/python - "bidsfill/data/models/$NAME.json" <<'PY'
import json, sys
card = json.load(open(sys.argv[1]))
card["training"]["data_note"] = (
    "Trained only on sub-ms07 and sub-ms19 of the open_ms_data MNI set (CC-BY; cite Lesjak "
    "et al., Neuroinformatics 2017, doi:10.1007/s12021-017-9348-7): skull-stripped, "
    "bias-corrected, 1 mm MNI. sub-ms26 and sub-tcgadu7294 (TCGA-LGG, licence unclear) "
    "were used for scoring only, never for training; no BRATS 2013 (CC BY-NC-SA) case was "
    "used. Sources must be co-registered on one grid and skull-stripped like the training data."
)
json.dump(card, open(sys.argv[1], "w"), indent=2)
open(sys.argv[1], "a").write("\n")
PY
