#!/usr/bin/env bash
# Create .venv with lang_neurons and its dev tools. CPU torch is installed first so that the
# torch requirement (a range) does not pull a multi-GB CUDA build; set TORCH_SPEC to change it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
.venv/bin/python -m pip install -q -e ".[dev]"
