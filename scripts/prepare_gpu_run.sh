#!/usr/bin/env bash
# Make what the GPU run (bench/gpu.py) carries to a GPU machine that cannot reach the network:
#   .whl/  the wheels its image lacks or holds at other versions: grpcio, health checking,
#          reflection and protobuf at constraints.txt's releases, for CPython 3.12 (the image's)
#   .gpu/tokenizer/  all-MiniLM-L6-v2's tokenizer files (the models are built there, random weights)
# Both are ignored by git. At the end it prints the command to run there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null  # .venv: pip and the embedded model's files
for path in /.whl/ /.gpu/; do
    grep -qxF "$path" .git/info/exclude 2>/dev/null || echo "$path" >>.git/info/exclude
done
rm -rf .whl .gpu
platforms=()
for n in 2_28 2_27 2_17; do platforms+=(--platform "manylinux_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64)
# --no-deps: every wheel is named here, at the one version the soak ran on (two versions of one
# package stop the whole install there).
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl -r <(grep -v '^#' constraints.txt)
.venv/bin/python - <<'PY'
import sys
from pathlib import Path

sys.path.insert(0, "bench")
from corpus import default_model
from gpu_checks import copy_tokenizer

print("tokenizer:", copy_tokenizer(Path(default_model()), Path(".gpu/tokenizer")))
PY
du -sh .whl .gpu
cat <<'HOW'
On the GPU machine (carry .whl and .gpu), from the repository root:
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
  PYTHONPATH=/tmp/site:$PWD/client:$PWD/server python3 bench/gpu.py --out $OUT \
      --tokenizer .gpu/tokenizer --budget-s 370
HOW
