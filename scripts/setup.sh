#!/usr/bin/env bash
# Create .venv and install bidsfill with its test tools. Idempotent: a second run only
# checks. Torch: an existing torch in the venv is kept; otherwise torch==$BIDSFILL_TORCH
# (default 2.13.0) is installed - a CPU build on machines that carry that wheel locally,
# PyPI's CUDA build on a GPU workstation. Set BIDSFILL_TORCH_INDEX to use another index
# (e.g. https://download.pytorch.org/whl/cu124).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${BIDSFILL_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if [ -n "${BIDSFILL_TORCH_INDEX:-}" ]; then
        "${PIP[@]}" install "torch==${BIDSFILL_TORCH:-2.13.0}" --index-url "$BIDSFILL_TORCH_INDEX"
    else
        "${PIP[@]}" install "torch==${BIDSFILL_TORCH:-2.13.0}"
    fi
fi
if ! "$VENV/bin/python" -c "import bidsfill, pytest" 2>/dev/null || [ pyproject.toml -nt "$VENV/.bidsfill-installed" ]; then
    "${PIP[@]}" install -e ".[test]"
    touch "$VENV/.bidsfill-installed"
fi
"$VENV/bin/python" -c "import bidsfill, torch; print('bidsfill', bidsfill.__version__, '| torch', torch.__version__, '| CUDA', torch.cuda.is_available())"
