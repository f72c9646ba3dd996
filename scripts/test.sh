#!/usr/bin/env bash
# Set up and run the test suite (the quick tier; `scripts/test.sh -m slow` runs the long one).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The gates first (seconds): lint, formatting, and mypy strict on every module not listed as pending
# in pyproject.toml. Then the tests.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
