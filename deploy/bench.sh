#!/usr/bin/env bash
# `make bench`: every benchmark, in release mode. Each prints one JSON line at its end
# (name, figures, the baseline measured in the same run, ratio); they are collected into
# target/bench-results.jsonl for docs/benchmarks.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/target/bench-results.jsonl"
mkdir -p "$ROOT/target"
: >"$OUT"
eval "$(bash "$ROOT/deploy/stack.sh" env)"
run() {
  echo "==> $*" >&2
  "$@" | tee /dev/stderr | grep '^{"' | tail -n 1 >>"$OUT"
}
run cargo bench -p attrsync-sandbox --bench page_serving
echo "results: $OUT" >&2
cat "$OUT"
