#!/usr/bin/env bash
# Set up and run the whole test suite (slow tests included), then lint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install-test-deps.sh
.venv/bin/python -m pytest tests "$@"
.venv/bin/ruff check bidsfill tests benchmarks run.py
