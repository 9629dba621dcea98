#!/usr/bin/env bash
# Set up and run the whole test suite (slow tests included), then lint.
#
# It installs, and says so before it starts:
#   - .venv with torch and bidsfill[test] from pip (scripts/setup.sh);
#   - unless chromium and chromedriver are on PATH already: Debian's chromium,
#     chromium-driver and fonts-dejavu-core with apt-get, about 25 packages and 440 MB
#     with their dependencies, for the browser tests of the reports
#     (scripts/install-test-deps.sh). apt-get needs root: it runs through sudo otherwise.
#
# `bash scripts/test.sh --plan` prints that list and exits without installing anything.
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

plan() {
    echo "scripts/test.sh will install:"
    if [ -x .venv/bin/python ] && .venv/bin/python -c "import bidsfill, torch, pytest" 2>/dev/null; then
        echo "  - nothing into .venv (it has torch and bidsfill[test]; scripts/setup.sh only checks)"
    else
        echo "  - .venv: torch==${BIDSFILL_TORCH:-2.13.0} and bidsfill[test] with pip (scripts/setup.sh)"
    fi
    if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
        echo "  - no Debian packages (chromium and chromedriver are on PATH)"
    else
        local how="as root"
        if [ "$(id -u)" -ne 0 ]; then how="through sudo: it needs root"; fi
        echo "  - Debian packages chromium, chromium-driver and fonts-dejavu-core with apt-get," \
            "$how (about 25 packages, 440 MB with their dependencies; for the browser" \
            "tests of the reports; scripts/install-test-deps.sh)"
    fi
}

if [ "${1:-}" = "--plan" ]; then
    plan
    exit 0
fi
plan
bash scripts/setup.sh
bash scripts/install-test-deps.sh
.venv/bin/python -m pytest tests "$@"
.venv/bin/ruff check bidsfill tests benchmarks run.py
