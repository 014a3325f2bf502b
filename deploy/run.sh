#!/usr/bin/env bash
# `make run`: the whole system on this machine, working, until Ctrl-C.
#
# 1. the local stack (PostgreSQL + Kafka, deploy/stack.sh) and grpcurl (for the demo);
# 2. builds every binary, starts the five services and the Fyle/QBO sandbox, waits for health;
# 3. shows the walking skeleton: creates the demo workspace through mapping's gRPC, posts a
#    Fyle CATEGORY webhook to ingest with curl, and reads the attribute back from fyle-sync
#    over gRPC and from PostgreSQL;
# 4. prints the endpoints and waits; Ctrl-C stops the services and the stack.
#
# Logs: .stack/logs/<service>.log. Ports: see README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STACK="$ROOT/.stack"
LOGS="$STACK/logs"
BIN="$ROOT/target/debug"
GRPCURL_VERSION=v1.9.4
mkdir -p "$LOGS" "$STACK/bin"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

PIDS=()
stop_all() {
  say "stopping services"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP_STACK:-0}" != 1 ]; then bash "$ROOT/deploy/stack.sh" down || true; fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

say "starting PostgreSQL and Kafka"
eval "$(bash "$ROOT/deploy/stack.sh" up)"

GRPCURL="$STACK/bin/grpcurl"
if [ ! -x "$GRPCURL" ]; then
  say "installing grpcurl $GRPCURL_VERSION (Go module proxy, about a minute, once)"
  GOBIN="$STACK/bin" go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION" >&2
fi

say "building"
(cd "$ROOT" && cargo build --bins >&2)

export MAPPING__TELEMETRY__LOG_FORMAT=pretty FYLE_SYNC__TELEMETRY__LOG_FORMAT=pretty \
  INGEST__TELEMETRY__LOG_FORMAT=pretty QBO_SYNC__TELEMETRY__LOG_FORMAT=pretty \
  IMPORT_TO_FYLE__TELEMETRY__LOG_FORMAT=pretty

start() {
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PIDS+=("$!")
}

wait_grpc() {
  local name=$1 addr=$2 deadline=$((SECONDS + 60))
  until "$GRPCURL" -plaintext "$addr" grpc.health.v1.Health/Check >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      say "$name did not become healthy; last log lines:"; tail -n 30 "$LOGS/$name.log" >&2; exit 1
    fi
    sleep 0.5
  done
}

say "starting services"
start sandbox "$BIN/sandbox" --seed demo
for _ in $(seq 1 100); do [ -s "$LOGS/sandbox.log" ] && break; sleep 0.1; done
start mapping "$BIN/mapping"
wait_grpc mapping 127.0.0.1:50051
start ingest "$BIN/ingest"
start fyle-sync "$BIN/fyle-sync"
start qbo-sync "$BIN/qbo-sync"
start import-to-fyle "$BIN/import-to-fyle"
wait_grpc ingest 127.0.0.1:50055
wait_grpc fyle-sync 127.0.0.1:50052
wait_grpc qbo-sync 127.0.0.1:50053
wait_grpc import-to-fyle 127.0.0.1:50054

say "demo: the workspace of Fyle org orNoatdUnm1w (created once, found afterwards)"
WORKSPACE=$("$GRPCURL" -plaintext -d '{"fyle_org_id": "orNoatdUnm1w"}' 127.0.0.1:50051 \
  attrsync.v1.MappingService/ListWorkspaces | sed -n 's/.*"id": "\{0,1\}\([0-9]*\)"\{0,1\},$/\1/p' | head -n 1)
if [ -z "$WORKSPACE" ]; then
  WORKSPACE=$("$GRPCURL" -plaintext -d '{"name": "Demo", "fyle_org_id": "orNoatdUnm1w", "qbo_realm_id": "9130357766900456"}' \
    127.0.0.1:50051 attrsync.v1.MappingService/CreateWorkspace | sed -n 's/.*"id": "\{0,1\}\([0-9]*\)"\{0,1\},$/\1/p' | head -n 1)
fi
echo "workspace id: $WORKSPACE"

say "demo: Fyle creates the category Travel / Flight (curl → ingest)"
# Stamped now, so every run is a new event (the same body twice is acknowledged as a duplicate).
NOW=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)
curl -sS -X POST "http://127.0.0.1:8080/workspaces/$WORKSPACE/fyle/exports/" \
  -H 'content-type: application/json' \
  -d '{"action":"CREATED","resource":"CATEGORY","data":{"id":22330099,"org_id":"orNoatdUnm1w","name":"Travel","sub_category":"Flight","is_enabled":true,"updated_at":"'"$NOW"'"}}'
echo

say "demo: fyle-sync has it (grpcurl → fyle-sync)"
for _ in $(seq 1 50); do
  OUT=$("$GRPCURL" -plaintext -d "{\"workspace_id\": $WORKSPACE, \"attribute_type\": \"CATEGORY\"}" \
    127.0.0.1:50052 attrsync.v1.FyleSyncService/ListExpenseAttributes)
  if grep -q 'Travel / Flight' <<<"$OUT"; then break; fi
  sleep 0.2
done
echo "$OUT"
say "demo: and in PostgreSQL"
psql "$DATABASE_URL" -c "SELECT workspace_id, attribute_type, value, source_id, active FROM fyle_sync.expense_attributes WHERE workspace_id = $WORKSPACE"

SANDBOX_LINE=$(head -n 1 "$LOGS/sandbox.log")
FYLE_URL=$(sed -n 's/.*"fyle_url":"\([^"]*\)".*/\1/p' <<<"$SANDBOX_LINE")
QBO_URL=$(sed -n 's/.*"qbo_url":"\([^"]*\)".*/\1/p' <<<"$SANDBOX_LINE")

cat >&2 <<EOT

Running. Endpoints:
  ingest         http://127.0.0.1:8080   (POST /workspaces/{id}/fyle/exports/, /healthz, /readyz)
  ingest gRPC    127.0.0.1:50055
  mapping        127.0.0.1:50051         fyle-sync 127.0.0.1:50052
  qbo-sync       127.0.0.1:50053         import-to-fyle 127.0.0.1:50054
  Fyle sandbox   $FYLE_URL   (org orNoatdUnm1w; credentials: first line of .stack/logs/sandbox.log)
  QBO sandbox    $QBO_URL   (realm 9130357766900456; try $QBO_URL/_sandbox/stats)
  PostgreSQL     $DATABASE_URL
  Kafka          $KAFKA_BOOTSTRAP
  grpcurl        $GRPCURL
Logs in .stack/logs/. Ctrl-C stops everything.
EOT
wait
