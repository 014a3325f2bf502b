#!/usr/bin/env bash
# `make bench`: every benchmark, in release mode. Each prints one JSON line at its end
# (name, figures, the baseline measured in the same run, ratio); they are collected into
# target/bench-results.jsonl for docs/benchmarks.md. PostgreSQL runs in the durable profile
# (deploy/stack.sh): what is measured is what a user gets.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/target/bench-results.jsonl"
# Not `eval "$(stack.sh up)"`: that would swallow a failed start (eval of nothing succeeds).
if ! STACK_ENV=$(STACK_PG_PROFILE=durable bash "$ROOT/deploy/stack.sh" up); then
  echo "make bench: the local stack did not start (deploy/stack.sh up failed; its error is above)" >&2
  exit 1
fi
eval "$STACK_ENV"
mkdir -p "$ROOT/target"
: >"$OUT"
run() {
  echo "==> $*" >&2
  # tee -a: without it, opening /dev/stderr truncates a log file that stderr is redirected to.
  "$@" | tee -a /dev/stderr | grep '^{"' | tail -n 1 >>"$OUT"
}
run cargo bench -p attrsync-sandbox --bench page_serving
echo "results: $OUT" >&2
cat "$OUT"
