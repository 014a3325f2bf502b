#!/usr/bin/env bash
# `make bench`: every benchmark, in release mode; `deploy/bench.sh NAME…` only those named
# (`make bench-ingest` = `deploy/bench.sh ingest`, likewise qbo_sync, fyle_sync, import and mapping). Each prints one JSON line at its end (name,
# figures, the baseline measured in the same run, ratio); they are collected into
# target/bench-results.jsonl for docs/benchmarks.md (a full run starts the file afresh; a named
# run replaces only its benchmarks' lines). PostgreSQL runs in the durable profile
# (deploy/stack.sh): what is measured is what a user gets. STACK_DIR / STACK_*_PORT run it on a
# stack of its own (see deploy/stack.sh), e.g. when the shared one cannot be switched.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/target/bench-results.jsonl"
# name | command
BENCHES=(
  "page_serving|cargo bench -p attrsync-sandbox --bench page_serving"
  "ingest|cargo bench -p attrsync-e2e --bench ingest"
  "qbo_sync|cargo bench -p attrsync-e2e --bench qbo_sync"
  "fyle_sync|cargo bench -p attrsync-e2e --bench fyle_sync"
  "import|cargo bench -p attrsync-e2e --bench import"
  "mapping|cargo bench -p attrsync-e2e --bench mapping"
)
selected=()
if [ "$#" -eq 0 ]; then
  selected=("${BENCHES[@]}")
else
  for name in "$@"; do
    found=""
    for bench in "${BENCHES[@]}"; do
      if [ "${bench%%|*}" = "$name" ]; then found="$bench"; fi
    done
    if [ -z "$found" ]; then
      echo "deploy/bench.sh: no benchmark called '$name' (known: $(printf '%s ' "${BENCHES[@]%%|*}"))" >&2
      exit 2
    fi
    selected+=("$found")
  done
fi
# Not `eval "$(stack.sh up)"`: that would swallow a failed start (eval of nothing succeeds).
if ! STACK_ENV=$(STACK_PG_PROFILE=durable bash "$ROOT/deploy/stack.sh" up); then
  echo "make bench: the local stack did not start (deploy/stack.sh up failed; its error is above)" >&2
  exit 1
fi
eval "$STACK_ENV"
mkdir -p "$ROOT/target"
if [ "$#" -eq 0 ]; then : >"$OUT"; else touch "$OUT"; fi
run() {
  echo "==> $*" >&2
  local line key
  # tee -a: without it, opening /dev/stderr truncates a log file that stderr is redirected to.
  line=$("$@" | tee -a /dev/stderr | grep '^{"' | tail -n 1)
  # The previous result of the same benchmark (its "bench" name) gives way to this one.
  key=$(printf '%s\n' "$line" | grep -o '"bench":"[^"]*"' | head -n 1 || true)
  if [ -n "$key" ]; then
    { grep -vF "$key" "$OUT" || true; } >"$OUT.tmp"
    mv "$OUT.tmp" "$OUT"
  fi
  printf '%s\n' "$line" >>"$OUT"
}
for bench in "${selected[@]}"; do
  # shellcheck disable=SC2086 # the command is words
  run ${bench#*|}
done
echo "results: $OUT" >&2
cat "$OUT"
