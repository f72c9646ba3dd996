#!/usr/bin/env bash
# Set up and run the test suite (the quick tier; `scripts/test.sh -m slow` runs the long one).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
