#!/usr/bin/env bash
# Set up (first run only takes long) and serve the embedded all-MiniLM-L6-v2 on 127.0.0.1:50051.
# Extra arguments go to `tokvec serve`, e.g. --address 0.0.0.0:50051 or --model /path/to/encoder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/tokvec serve "$@"
