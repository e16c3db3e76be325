#!/usr/bin/env bash
# The full comparison: every neuron steering method (each beside its random control, residual
# DiffMean and the unsteered baseline, with translation BLEU/chrF) and every paper's protocol,
# on the defaults' model and corpus. Each protocol's run reuses the first run's statistics.
#   bash scripts/full-comparison.sh [OUT]      # OUT defaults to runs/full
#   LN_FLAGS="--model M --corpus C" bash scripts/full-comparison.sh OUT   # flags added to every run (they win)
# Writes OUT/methods, OUT/kojima, OUT/tang, OUT/gurgurov (each an index.html report) and
# OUT/times.txt (wall-clock seconds per step). On the 2-core machine it took 2 h 11 min
# (methods 53 min, kojima 40, tang 22, gurgurov 16; docs/results.md, "The full comparison").
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/full}
read -r -a ln <<< "${LN:-.venv/bin/lang-neurons}"      # the command (LN="python -m lang_neurons.cli" works too)
read -r -a flags <<< "${LN_FLAGS:-}"
mkdir -p "$OUT"
: > "$OUT/times.txt"
step() {  # step NAME ARGS...: one lang-neurons run into OUT/NAME, its time appended to times.txt
  local name=$1 start=$SECONDS
  shift
  "${ln[@]}" run --out "$OUT/$name" "$@" "${flags[@]}"
  echo "$name $((SECONDS - start))" >> "$OUT/times.txt"
}
step methods --methods add,diffmean,override,pin --translation-items 20
for protocol in kojima tang gurgurov; do
  mkdir -p "$OUT/$protocol"
  cp "$OUT/methods/run.json" "$OUT/methods"/stats.* "$OUT/$protocol/"   # the same statistics: reused, not recorded again
  step "$protocol" --protocol "$protocol"
done
cat "$OUT/times.txt"
