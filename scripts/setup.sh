#!/usr/bin/env bash
# Create .venv with lang_neurons, its default extra (the offline default corpus and the embedded
# model) and its dev tools, at the tested versions of requirements/lock.txt.
# CPU torch is installed first so that the torch requirement (a range) does not pull a multi-GB
# CUDA build; set TORCH_SPEC to change it. Every other package, transitive ones included, is
# pinned by the lock; the last step checks the venv against it. Refresh the lock only with
# scripts/update-lock.sh (docs/howto/lock.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOCK=requirements/lock.txt
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -c "$LOCK" "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -q -c "$LOCK" -e ".[default,dev]"
.venv/bin/lang-neurons doctor --no-model --lock "$LOCK"
