#!/usr/bin/env bash
# Set up, build the demo dataset and run bidsfill on it: participant level, then group.
# Outputs: demo/out (derivatives, sub-*.html, group_T1w.tsv); work dir: demo/work.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BIN=.venv/bin
DEMO=${BIDSFILL_DEMO_DIR:-demo}
"$BIN/bidsfill-demo" "$DEMO"
"$BIN/bidsfill" "$DEMO/bids" "$DEMO/out" participant \
    --derivatives "$DEMO/bids/derivatives/lesions" -w "$DEMO/work" "$@"
"$BIN/bidsfill" "$DEMO/bids" "$DEMO/out" group
echo "Done: open $DEMO/out/sub-01.html; the group table is $DEMO/out/group_T1w.tsv"
