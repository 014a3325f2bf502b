#!/usr/bin/env bash
# `make run`: the whole system on this machine, working, until Ctrl-C.
#
# 1. the local stack (PostgreSQL + Kafka, deploy/stack.sh) in the DURABLE profile, and grpcurl
#    (for the demo); if the stack does not start, stop here with its error;
# 2. builds every binary, starts the Fyle/QBO sandbox (`--seed demo`: Fyle accounts host
#    58083, Fyle data host 58081, QBO 58082; the Fyle 10 requests/s limit on, QBO answering XML
#    unless `Accept: application/json`; its QBO webhooks go to ingest's POST /webhooks/qbo,
#    signed with its verifier token, the one ingest's defaults.toml `[qbo] verifier_tokens`
#    trusts) and the services listed in helm/attrsync/services.json (in their start order, each
#    on its gRPC and HTTP ops ports from that list, pointed at mapping's gRPC port from that
#    list), waits for gRPC health;
# 3. shows the walking skeleton: creates the demo workspace through mapping's gRPC, asks
#    ingest's gRPC GetWebhookEndpoint for the URL to register with Fyle (url_token mode: it
#    carries the workspace's token), posts a Fyle CATEGORY webhook to THAT URL with curl and
#    the same post without the token (refused, 401), reads the attribute back from fyle-sync
#    over gRPC and from PostgreSQL; then creates an Account in the QBO sandbox realm through
#    the sandbox's admin API and shows ingest's inbox row for the signed QBO webhook it sent
#    and qbo-sync's row for the Account (connected and pulled first with ConnectQbo and
#    SyncDimensions); before that account, fyle-sync connects the Fyle org (ConnectFyle) and
#    mapping turns category import on (UpdateImportSettings), so the account goes round THE
#    LOOP with no job and no further call: qbo-sync → import-to-fyle → an enabled category in
#    the Fyle sandbox (read back over Fyle's API) → fyle-sync → mapping's CATEGORY → ACCOUNT
#    mapping, each printed with the time since the account was created;
# 4. prints the endpoints and waits; Ctrl-C stops the services and the stack.
#
# Logs: $STACK_DIR/logs/<service>.log, default .stack/logs/ (the stack's start: stack.log; the
# sandbox's first line is its JSON line of URLs and credentials). Ports: see
# helm/attrsync/services.json. STACK_DIR / STACK_PG_PORT / STACK_KAFKA_PORT are passed on to
# deploy/stack.sh (see its header; STACK_KAFKA_CONTROLLER_PORT too); KEEP_STACK=1 leaves the
# stack running on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STACK="${STACK_DIR:-$ROOT/.stack}"
LOGS="$STACK/logs"
BIN="$ROOT/target/debug"
SERVICES_JSON="$ROOT/helm/attrsync/services.json"
GRPCURL_VERSION=v1.9.4
mkdir -p "$LOGS" "$STACK/bin"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
warn() { printf '\033[1;31m==> %s\033[0m\n' "$*" >&2; }

# services_table: one line per service, in start order: name binary env_prefix grpc_port http_port.
services_table() {
  python3 - "$SERVICES_JSON" <<'EOF'
import json, sys
services = json.load(open(sys.argv[1]))["services"]
for s in sorted(services, key=lambda s: s["start_order"]):
    print(s["name"], s["binary"], s["env_prefix"], s["schema"], s["grpc_port"], s["http_port"])
EOF
}

# stack_up: start the stack (durable profile) and export DATABASE_URL / KAFKA_BOOTSTRAP; on
# failure print the stack's own error and return non-zero. (`eval "$(stack.sh up)"` would
# swallow the failure: eval of an empty string succeeds.)
stack_up() {
  local rc
  # stderr (progress, errors) to the terminal and .stack/logs/stack.log; stdout (the exports)
  # to a file.
  set +e
  STACK_PG_PROFILE=durable bash "$ROOT/deploy/stack.sh" up 2>&1 >"$STACK/stack.env" \
    | tee "$LOGS/stack.log" >&2
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ]; then
    say "make run: the local stack did not start (deploy/stack.sh up exited $rc):"
    grep 'ERROR' "$LOGS/stack.log" >&2 || tail -n 5 "$LOGS/stack.log" >&2
    return 1
  fi
  # shellcheck disable=SC1091 # written just above
  source "$STACK/stack.env"
}

PIDS=()
stop_all() {
  if [ "${#PIDS[@]}" -gt 0 ]; then
    say "stopping services"
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  fi
  wait 2>/dev/null || true
  if [ "${KEEP_STACK:-0}" != 1 ]; then bash "$ROOT/deploy/stack.sh" down || true; fi
}

TABLE=$(services_table) || { say "cannot read $SERVICES_JSON"; exit 1; }
declare -A GRPC_PORT HTTP_PORT
ORDER=()
while read -r name _ prefix schema grpc http; do
  ORDER+=("$name")
  GRPC_PORT[$name]=$grpc
  HTTP_PORT[$name]=$http
  # The listeners and schema come from the list, not from each binary's defaults.toml.
  export "${prefix}__GRPC__LISTEN=127.0.0.1:$grpc" "${prefix}__HTTP__LISTEN=127.0.0.1:$http" \
    "${prefix}__DATABASE__SCHEMA=$schema" "${prefix}__TELEMETRY__LOG_FORMAT=pretty"
done <<<"$TABLE"
[ -n "${GRPC_PORT[mapping]:-}" ] || { say "$SERVICES_JSON lists no mapping service"; exit 1; }
# Every service but mapping asks mapping's gRPC about workspaces (mapping.endpoint); mapping
# itself has no such key.
while read -r name _ prefix _; do
  [ "$name" = mapping ] || export "${prefix}__MAPPING__ENDPOINT=http://127.0.0.1:${GRPC_PORT[mapping]}"
done <<<"$TABLE"
# mapping imports a new custom field through import-to-fyle before saving it (#64).
[ -z "${GRPC_PORT[import-to-fyle]:-}" ] ||
  export "MAPPING__IMPORT_TO_FYLE__ENDPOINT=http://127.0.0.1:${GRPC_PORT[import-to-fyle]}"

trap stop_all EXIT
trap 'exit 130' INT TERM

say "starting PostgreSQL and Kafka (durable profile)"
stack_up || exit 1

GRPCURL="$STACK/bin/grpcurl"
if [ ! -x "$GRPCURL" ]; then
  say "installing grpcurl $GRPCURL_VERSION (Go module proxy, about a minute, once)"
  GOBIN="$STACK/bin" go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION" >&2
fi

say "building"
(cd "$ROOT" && cargo build --bins >&2)

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

# wait_sandbox: until the sandbox has printed its JSON line (URLs and credentials); stop with its
# log if it exits or does not print it (e.g. one of its ports is taken).
wait_sandbox() {
  local pid=$1 deadline=$((SECONDS + 30))
  until grep -q '^{' "$LOGS/sandbox.log" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      say "the sandbox did not start; its log:"; tail -n 30 "$LOGS/sandbox.log" >&2; exit 1
    fi
    sleep 0.1
  done
}

INGEST_HTTP=http://127.0.0.1:${HTTP_PORT[ingest]}
# The QBO sandbox's webhooks (a change made through its admin API) are POSTed to ingest, signed
# (intuit-signature) with the sandbox's default verifier token `simulator-verifier-token`, which
# is also ingest's default `[qbo] verifier_tokens`. Changes are batched for 200 ms (production
# aggregates over minutes), so the demo's change reaches ingest within a second; the sandbox
# tries each delivery 3 times, so one made before ingest listens is lost, as with Intuit.
QBO_WEBHOOK_URL="$INGEST_HTTP/webhooks/qbo"
QBO_REALM=9130357766900456

say "starting the Fyle/QBO sandbox (QBO webhooks → $QBO_WEBHOOK_URL)"
start sandbox "$BIN/sandbox" --seed demo --qbo-webhook-url "$QBO_WEBHOOK_URL" --qbo-batch-window-ms 200
wait_sandbox "${PIDS[-1]}"
SANDBOX_LINE=$(grep -m 1 '^{' "$LOGS/sandbox.log")
json_field() { sed -n 's/.*"'"$1"'":"\([^"]*\)".*/\1/p' <<<"$SANDBOX_LINE"; }
FYLE_ACCOUNTS_URL=$(json_field fyle_accounts_url)
FYLE_URL=$(json_field fyle_url)
QBO_URL=$(json_field qbo_url)

say "starting services"
# The first in start order (mapping: the others call it) is healthy before the rest start.
FIRST=1
while read -r name binary _; do
  start "$name" "$BIN/$binary"
  if [ "$FIRST" = 1 ]; then wait_grpc "$name" "127.0.0.1:${GRPC_PORT[$name]}"; FIRST=0; fi
done <<<"$TABLE"
for name in "${ORDER[@]:1}"; do wait_grpc "$name" "127.0.0.1:${GRPC_PORT[$name]}"; done

MAPPING_GRPC=127.0.0.1:${GRPC_PORT[mapping]}
FYLE_SYNC_GRPC=127.0.0.1:${GRPC_PORT[fyle-sync]}
INGEST_GRPC=127.0.0.1:${GRPC_PORT[ingest]}
QBO_SYNC_GRPC=127.0.0.1:${GRPC_PORT[qbo-sync]}

say "demo: the workspace of Fyle org orNoatdUnm1w (created once, found afterwards)"
WORKSPACE=$("$GRPCURL" -plaintext -d '{"fyle_org_id": "orNoatdUnm1w"}' "$MAPPING_GRPC" \
  attrsync.v1.MappingService/ListWorkspaces | sed -n 's/.*"id": "\{0,1\}\([0-9]*\)"\{0,1\},$/\1/p' | head -n 1)
if [ -z "$WORKSPACE" ]; then
  WORKSPACE=$("$GRPCURL" -plaintext -d '{"name": "Demo", "fyle_org_id": "orNoatdUnm1w", "qbo_realm_id": "'"$QBO_REALM"'"}' \
    "$MAPPING_GRPC" attrsync.v1.MappingService/CreateWorkspace | sed -n 's/.*"id": "\{0,1\}\([0-9]*\)"\{0,1\},$/\1/p' | head -n 1)
fi
echo "workspace id: $WORKSPACE"

say "demo: the URL to register with Fyle (grpcurl → ingest GetWebhookEndpoint)"
# New workspaces are in url_token mode: the URL carries the workspace's secret token, and a
# post without it is refused. Printed masked (the token is a credential).
ENDPOINT=$("$GRPCURL" -plaintext -d "{\"workspace_id\": $WORKSPACE}" "$INGEST_GRPC" \
  attrsync.v1.IngestService/GetWebhookEndpoint)
WEBHOOK_URL=$(sed -n 's/.*"url": "\([^"]*\)".*/\1/p' <<<"$ENDPOINT" | head -n 1)
AUTH_MODE=$(sed -n 's/.*"mode": "\([^"]*\)".*/\1/p' <<<"$ENDPOINT" | head -n 1)
TOKEN=$(sed -n 's/.*[?&]token=\([^&]*\).*/\1/p' <<<"$WEBHOOK_URL")
TOKENLESS_URL=${WEBHOOK_URL%%\?*}
if [ -n "$TOKEN" ]; then
  echo "url:  $TOKENLESS_URL?token=${TOKEN:0:6}…   (mode ${AUTH_MODE:-?})"
else
  echo "url:  ${WEBHOOK_URL:-?}   (mode ${AUTH_MODE:-?}: no token in the URL)"
  warn "GetWebhookEndpoint answered no url_token URL: $ENDPOINT"
fi

say "demo: Fyle creates the category Travel / Flight (curl → that URL)"
# Stamped now, so every run is a new event (the same body twice is acknowledged as a duplicate).
NOW=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)
CATEGORY_BODY='{"action":"CREATED","resource":"CATEGORY","data":{"id":22330099,"org_id":"orNoatdUnm1w","name":"Travel","sub_category":"Flight","is_enabled":true,"updated_at":"'"$NOW"'"}}'
# post_webhook URL: POSTs the category body; prints the answer, then its HTTP status (last line).
post_webhook() {
  curl -sS -X POST "$1" -H 'content-type: application/json' -d "$CATEGORY_BODY" -w '\n%{http_code}' \
    || printf '\n000'
}
ANSWER=$(post_webhook "${WEBHOOK_URL:-$INGEST_HTTP/workspaces/$WORKSPACE/fyle/exports/}")
STATUS=$(tail -n 1 <<<"$ANSWER")
echo "HTTP $STATUS $(sed '$d' <<<"$ANSWER")"
[ "$STATUS" = 200 ] || warn "ingest did not accept the webhook (HTTP $STATUS); see $LOGS/ingest.log"

say "demo: the same curl without the token is refused"
ANSWER=$(post_webhook "$TOKENLESS_URL")
STATUS=$(tail -n 1 <<<"$ANSWER")
echo "HTTP $STATUS $(sed '$d' <<<"$ANSWER")"
[ "$STATUS" = 401 ] || warn "expected 401 without the token, got HTTP $STATUS"

say "demo: fyle-sync has it (grpcurl → fyle-sync)"
for _ in $(seq 1 50); do
  OUT=$("$GRPCURL" -plaintext -d "{\"workspace_id\": $WORKSPACE, \"attribute_type\": \"CATEGORY\"}" \
    "$FYLE_SYNC_GRPC" attrsync.v1.FyleSyncService/ListExpenseAttributes)
  if grep -q 'Travel / Flight' <<<"$OUT"; then break; fi
  sleep 0.2
done
echo "$OUT"
say "demo: and in PostgreSQL"
psql "$DATABASE_URL" -c "SELECT workspace_id, attribute_type, value, source_id, active FROM fyle_sync.expense_attributes WHERE workspace_id = $WORKSPACE"

say "demo: qbo-sync connects the QBO company and pulls it (grpcurl → qbo-sync ConnectQbo, SyncDimensions)"
# The sandbox starts afresh every run, so the realm is connected again with its current token.
QBO_REFRESH=$(sed -n 's/.*"realm_id":"'"$QBO_REALM"'","refresh_token":"\([^"]*\)".*/\1/p' <<<"$SANDBOX_LINE")
"$GRPCURL" -plaintext -d "{\"workspace_id\": $WORKSPACE, \"realm_id\": \"$QBO_REALM\", \"refresh_token\": \"$QBO_REFRESH\"}" \
  "$QBO_SYNC_GRPC" attrsync.v1.QboSyncService/ConnectQbo || warn "ConnectQbo failed; see $LOGS/qbo-sync.log"
"$GRPCURL" -plaintext -d "{\"workspace_id\": $WORKSPACE, \"force\": true}" \
  "$QBO_SYNC_GRPC" attrsync.v1.QboSyncService/SyncDimensions | grep -E '"(entity|outcome|fetched)"' | paste - - - \
  || warn "SyncDimensions failed; see $LOGS/qbo-sync.log"

say "demo: fyle-sync connects the Fyle org; mapping turns category import on (grpcurl → ConnectFyle, UpdateImportSettings)"
FYLE_REFRESH=$(python3 -c 'import json, sys
creds = json.loads(sys.argv[1])
print(next(c["refresh_token"] for c in creds["fyle"] if c["org_id"] == "orNoatdUnm1w"))' "$SANDBOX_LINE")
"$GRPCURL" -plaintext -d "{\"workspace_id\": $WORKSPACE, \"refresh_token\": \"$FYLE_REFRESH\"}" \
  "$FYLE_SYNC_GRPC" attrsync.v1.FyleSyncService/ConnectFyle >/dev/null && echo "Fyle org orNoatdUnm1w connected" \
  || warn "ConnectFyle failed; see $LOGS/fyle-sync.log"
"$GRPCURL" -plaintext -d "{\"workspace_id\": $WORKSPACE, \"import_settings\": {\"import_categories\": true}}" \
  "$MAPPING_GRPC" attrsync.v1.MappingService/UpdateImportSettings >/dev/null \
  && echo "import_categories on: QBO expense accounts become Fyle categories" \
  || warn "UpdateImportSettings failed; see $LOGS/mapping.log"

say "demo: QBO gets an Account (sandbox admin API → signed QBO webhook → ingest POST /webhooks/qbo)"
now_ms() { date +%s%3N; }
LAST_QBO=$(psql "$DATABASE_URL" -tAq -c "SELECT coalesce(max(id), 0) FROM ingest.inbox WHERE source = 'qbo'")
# No ':' allowed in QBO names; the time keeps the name unique across runs.
ACCOUNT_NAME="Demo Travel $(date -u +%H%M%S)"
LOOP_START=$(now_ms)
ACCOUNT=$(curl -sS -X POST "$QBO_URL/_sandbox/qbo/realms/$QBO_REALM/Account" \
  -H 'content-type: application/json' -d '{"Name": "'"$ACCOUNT_NAME"'", "AccountType": "Expense"}' || true)
ACCOUNT_ID=$(sed -n 's/.*"Id":"\([^"]*\)".*/\1/p' <<<"$ACCOUNT")
if [ -n "$ACCOUNT_ID" ]; then
  echo "created Account $ACCOUNT_ID \"$ACCOUNT_NAME\" in realm $QBO_REALM"
else
  warn "the sandbox did not create the Account: $ACCOUNT"
fi
ARRIVED=0
for _ in $(seq 1 50); do
  ARRIVED=$(psql "$DATABASE_URL" -tAq -c "SELECT count(*) FROM ingest.inbox WHERE source = 'qbo' AND id > $LAST_QBO")
  [ "$ARRIVED" -gt 0 ] && break
  sleep 0.2
done
[ "$ARRIVED" -gt 0 ] || warn "no QBO webhook reached ingest within 10 s; see $LOGS/ingest.log and $QBO_URL/_sandbox/stats"
psql "$DATABASE_URL" -c "SELECT source, workspace_id, action, resource, body->>'id' AS entity_id, disposition, received_at FROM ingest.inbox WHERE source = 'qbo' ORDER BY id DESC LIMIT 3"
say "demo: qbo-sync fetched it (Kafka → qbo-sync → one coalesced QBO query → destination_attributes)"
for _ in $(seq 1 50); do
  FOUND=$(psql "$DATABASE_URL" -tAq -c "SELECT count(*) FROM qbo_sync.destination_attributes WHERE workspace_id = $WORKSPACE AND qbo_entity = 'Account' AND destination_id = '${ACCOUNT_ID:-none}'")
  [ "${FOUND:-0}" -gt 0 ] && break
  sleep 0.2
done
[ "${FOUND:-0}" -gt 0 ] || warn "qbo-sync did not store Account ${ACCOUNT_ID:-?} within 10 s; see $LOGS/qbo-sync.log"
psql "$DATABASE_URL" -c "SELECT workspace_id, attribute_type, display_name, value, destination_id, active, updated_at FROM qbo_sync.destination_attributes WHERE workspace_id = $WORKSPACE AND qbo_entity = 'Account' ORDER BY updated_at DESC LIMIT 3"

say "demo: the loop — QBO account → import-to-fyle → Fyle category → fyle-sync → mapping (no job, no call)"
# pick PYTHON_EXPR: reads JSON on stdin (grpcurl's camelCase keys made snake_case), prints
# PYTHON_EXPR of it (d) or nothing.
pick() {
  python3 -c 'import json, re, sys
def snake(v):
    if isinstance(v, dict):
        return {re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), k): snake(x) for k, x in v.items()}
    return [snake(x) for x in v] if isinstance(v, list) else v
try:
    d = snake(json.load(sys.stdin))
    v = eval(sys.argv[1], {"d": d, "json": json})
    print("" if v is None else v)
except Exception:
    pass' "$1"
}
CATEGORY_ID=""
for _ in $(seq 1 150); do
  CATEGORY_ID=$("$GRPCURL" -plaintext -d "{\"workspace_id\": $WORKSPACE, \"attribute_type\": \"CATEGORY\", \"page_size\": 1000}" \
    "$FYLE_SYNC_GRPC" attrsync.v1.FyleSyncService/ListExpenseAttributes 2>/dev/null \
    | pick "next((a['source_id'] for a in d.get('attributes', []) if a['value'] == '$ACCOUNT_NAME' and a.get('active')), None)")
  [ -n "$CATEGORY_ID" ] && break
  sleep 0.2
done
if [ -n "$CATEGORY_ID" ]; then
  echo "+$(( $(now_ms) - LOOP_START )) ms  Fyle category $CATEGORY_ID \"$ACCOUNT_NAME\" enabled, stored by fyle-sync"
  # The category as Fyle's own API serves it (fyle-sync's token for the org).
  TOKEN_JSON=$("$GRPCURL" -plaintext -d "{\"workspace_id\": $WORKSPACE}" "$FYLE_SYNC_GRPC" attrsync.v1.FyleSyncService/GetAccessToken)
  FYLE_TOKEN=$(pick "d['access_token']" <<<"$TOKEN_JSON")
  curl -sS -G "$FYLE_URL/platform/v1/admin/categories" --data-urlencode "id=eq.$CATEGORY_ID" \
    -H "authorization: Bearer $FYLE_TOKEN" \
    | pick "'in Fyle: ' + json.dumps({k: d['data'][0][k] for k in ('id', 'name', 'code', 'is_enabled', 'updated_at')})" \
    || true
else
  warn "no enabled Fyle category \"$ACCOUNT_NAME\" within 30 s; see $LOGS/import-to-fyle.log"
fi
MAPPED=""
for _ in $(seq 1 150); do
  [ -n "$CATEGORY_ID" ] || break
  MAPPED=$("$GRPCURL" -plaintext -d "{\"workspace_id\": $WORKSPACE, \"source_type\": \"CATEGORY\", \"source_id\": \"$CATEGORY_ID\"}" \
    "$MAPPING_GRPC" attrsync.v1.MappingService/ListMappings 2>/dev/null \
    | pick "next((m['destination_type'] + ' ' + m['destination_id'] + ' \"' + m['destination_value'] + '\" auto_mapped=' + str(m.get('auto_mapped', False)) for m in d.get('mappings', [])), None)")
  [ -n "$MAPPED" ] && break
  sleep 0.2
done
if [ -n "$MAPPED" ]; then
  echo "+$(( $(now_ms) - LOOP_START )) ms  mapping: CATEGORY $CATEGORY_ID → $MAPPED"
else
  [ -z "$CATEGORY_ID" ] || warn "no mapping for category $CATEGORY_ID within 30 s; see $LOGS/mapping.log"
fi

{
  echo
  echo "Running. Endpoints (helm/attrsync/services.json):"
  printf '  %-15s %-17s %s\n' service gRPC "HTTP (/healthz, /readyz, /metrics)"
  for name in "${ORDER[@]}"; do
    printf '  %-15s %-17s %s\n' "$name" "127.0.0.1:${GRPC_PORT[$name]}" "http://127.0.0.1:${HTTP_PORT[$name]}"
  done
  cat <<EOT
  Fyle webhooks  POST $INGEST_HTTP/workspaces/{id}/fyle/exports/?token=…   (the URL from:
                 $GRPCURL -plaintext -d '{"workspace_id": $WORKSPACE}' $INGEST_GRPC attrsync.v1.IngestService/GetWebhookEndpoint)
  QBO webhooks   POST $QBO_WEBHOOK_URL   (also /api/workspaces/qbo/webhook_callback/; intuit-signature)
  Fyle accounts  $FYLE_ACCOUNTS_URL   (POST /oauth/token, /oauth/cluster: tokens for org orNoatdUnm1w)
  Fyle data      $FYLE_URL   (/platform/v1/...; 10 requests/s per client)
  QBO sandbox    $QBO_URL   (realm $QBO_REALM; XML unless Accept: application/json; webhooks → ingest)
                 curl -H 'Accept: application/json' $QBO_URL/_sandbox/stats
  Sandbox creds  first line of $LOGS/sandbox.log (Fyle clients, QBO app, realm refresh tokens)
  PostgreSQL     $DATABASE_URL   (durable profile)
  Kafka          $KAFKA_BOOTSTRAP
  grpcurl        $GRPCURL
Logs in $LOGS/. Ctrl-C stops everything.
EOT
} >&2
wait
