#!/usr/bin/env bash
# Refresh requirements/lock.txt on purpose: build a fresh venv with the newest versions that
# pyproject.toml allows, run the fast suite and the real-model smoke tests there, and only if
# they pass rewrite the lock from that venv. Then run the whole suite with the new lock
# (bash scripts/setup.sh && .venv/bin/python -m pytest -q) before committing it.
#   bash scripts/update-lock.sh            # about 30-40 min on 2 CPU cores
#   KEEP_VENV=1 bash scripts/update-lock.sh  # keep the trial venv for a look
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOCK=requirements/lock.txt
work=$(mktemp -d)
trap '[ -n "${KEEP_VENV:-}" ] || rm -rf "$work"' EXIT
venv="$work/venv"
"$PY" -m venv "$venv"
"$venv/bin/python" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
"$venv/bin/python" -m pip install -q -e ".[default,dev]"    # newest allowed: no lock here
"$venv/bin/lang-neurons" doctor --lock /dev/null            # versions, known-bad releases, KV cache, language ID
# The fast suite: every test but the real-model, notebook, docs-site and lock ones (the whole suite runs after).
"$venv/bin/python" -m pytest -q -x -m "not real_model and not locked" --ignore=tests/integration/test_notebooks.py --ignore=tests/integration/test_docs.py
# Real-model smoke tests: KV-cache generation on Gemma, and steering still flips the language.
"$venv/bin/python" -m pytest -q -x tests/real_model/test_real_model.py \
  -k "cached_and_uncached or loads_as_gemma3 or language_arithmetic_flips"
{
  sed -n '/^# Made:/q;p' "$LOCK"
  echo "# Made: $(date -u +%Y-%m-%d), by scripts/update-lock.sh (fast suite and real-model smoke tests passed)."
  "$venv/bin/python" -m pip freeze --exclude-editable | grep -v -i -E '^(torch|pip|setuptools|wheel)=='
} > "$work/lock.txt"
mv "$work/lock.txt" "$LOCK"
git --no-pager diff --stat -- "$LOCK" || true
echo "rewrote $LOCK: now run the whole suite on it (bash scripts/setup.sh && .venv/bin/python -m pytest -q) before committing"
