#!/usr/bin/env bash
# deploy/stack.sh: local infrastructure for development and integration tests.
#
#   deploy/stack.sh up       start PostgreSQL and Kafka (no-op for what already runs)
#   deploy/stack.sh down     stop both (no-op when nothing runs)
#   deploy/stack.sh status   report each (and PostgreSQL's live profile); exit 0 only when
#                            everything needed runs
#   deploy/stack.sh env      print `export DATABASE_URL=...` / `export KAFKA_BOOTSTRAP=...`
#   deploy/stack.sh profile [durable|fast]
#                            print the running PostgreSQL's profile, or switch it (reload)
#   deploy/stack.sh pg-stop-immediate
#                            stop PostgreSQL as if it crashed (`pg_ctl stop -m immediate`: no
#                            shutdown checkpoint; the next `up` recovers from the WAL), for
#                            fault tests; only a cluster started from this STACK_DIR
#
#   eval "$(deploy/stack.sh up)"     # progress goes to stderr, the exports to stdout
#                                    # (check the exit status: see deploy/run.sh)
#
# PostgreSQL profiles (STACK_PG_PROFILE, default durable)
# - durable: PostgreSQL's defaults, fsync=on, synchronous_commit=on, full_page_writes=on. A
#   commit that was acknowledged survives a crash of PostgreSQL or of the machine, which is
#   what ingest promises for an acknowledged webhook. `make run`, `make bench`, `make
#   stack-up` and a bare `deploy/stack.sh up` use it.
# - fast: fsync=off, synchronous_commit=off, full_page_writes=off. NOT DURABLE: a crash can
#   lose acknowledged commits or corrupt the cluster. Only for the test suite, chosen
#   explicitly: `STACK_PG_PROFILE=fast deploy/stack.sh up` (what `make test` does).
# The profile belongs to the running cluster, not to a file: it is applied with
# `ALTER SYSTEM SET ...` + `SELECT pg_reload_conf()` (all three settings are reloadable, no
# restart), so `up` switches a cluster that runs the other profile, and says so (to durable:
# then CHECKPOINT + sync, so what was written with fsync off reaches the disk); the last
# `up` wins. `up`, `status` and `profile` print the profile read live from the server
# (`SHOW fsync` etc.). A cluster started by an older stack.sh has the fast settings on its
# command line, which a reload cannot override: `up` then fails and says to restart it.
#
# Ports and places (environment; the defaults are what the services' defaults.toml expect)
#   STACK_DIR                    state directory, default <repo>/.stack
#   STACK_PG_PORT                PostgreSQL, default 54329
#   STACK_KAFKA_PORT             Kafka, default 61092
#   STACK_KAFKA_CONTROLLER_PORT  KRaft controller, default STACK_KAFKA_PORT + 1
# Kafka's defaults lie above Linux's ephemeral range (ip_local_port_range, 32768-60999 by
# default): the broker connects to its own controller before it binds its listener, and an
# outgoing connection given the listener's port as its source port made startup fail with
# "Address already in use" (seen with 59092).
# A second stack on other ports (e.g. to test this script beside a running one):
#   STACK_DIR=/tmp/s2 STACK_PG_PORT=55329 STACK_KAFKA_PORT=62092 deploy/stack.sh up
#
# Design
# - Everything lives in $STACK_DIR (<repo>/.stack, git-ignored); nothing system-wide is
#   configured or started. `rm -rf .stack` after `down` is a full reset.
# - PostgreSQL: a throwaway cluster from the Debian server binaries
#   (/usr/lib/postgresql/<newest>/bin), trust auth, on 127.0.0.1:54329, in the profile
#   above. initdb refuses to run as root, so as root the cluster is owned and
#   run by the `postgres` user (runuser); as a normal user it runs as that user. If
#   `postgres` cannot traverse the checkout's parents (e.g. under /root), the cluster is
#   put in /tmp/stack-pg.XXXXXX and .stack/pg is a symlink to it.
# - Kafka: a single-node KRaft broker+controller on 127.0.0.1:61092 (controller 61093),
#   its jars fetched from Maven Central by deploy/kafka/pom.xml into .stack/kafka/lib
#   (cached, keyed on the pom's hash), configured from deploy/kafka/server.properties.template
#   and logging through deploy/kafka/log4j2.properties to .stack/kafka/kafka.log.
#   The lib also holds the CLI tools, e.g.
#     java -cp '.stack/kafka/lib/*' org.apache.kafka.tools.TopicCommand \
#         --bootstrap-server 127.0.0.1:61092 --list
#   (also ConsoleProducer, consumer.ConsoleConsumer, consumer.group.ConsumerGroupCommand).
#   JVM heap: KAFKA_HEAP_OPTS (default -Xms1g -Xmx1g: with 512 MiB the broker kept ~300 MiB live
#   after a test run's topics and collected its young generation several times a second).
# - DATABASE_URL / KAFKA_BOOTSTRAP already set in the environment (to anything but this
#   stack's own address) mean "use mine": that service is then neither started nor
#   checked (nor its profile changed), and `env` echoes the user's value back.
# - A PostgreSQL / Kafka that already answers on the ports but was not started from this
#   STACK_DIR (another checkout's stack) is reused; `down` leaves it alone. Its PostgreSQL
#   profile is still switched to the one asked for.
#
# Failure policy
# - Fail fast and loudly: every error names the cause and, for a server that did not come
#   up, prints the tail of its log. Exit status is non-zero on any failure.
# - Never touch what is not ours: a port already used by another process is an error (we
#   do not pick another port silently; set STACK_*_PORT to choose others); `down` only
#   stops the processes recorded in $STACK_DIR.
# - Readiness has deadlines (PG_START_TIMEOUT, KAFKA_START_TIMEOUT, KAFKA_STOP_TIMEOUT
#   seconds, overridable from the environment); stale pid files are detected and removed.
# - Concurrent invocations are serialized with flock on $STACK_DIR/.lock.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEPLOY="$ROOT/deploy"
STACK="${STACK_DIR:-$ROOT/.stack}"
case "$STACK" in /*) ;; *) STACK="$PWD/$STACK" ;; esac

PG_PORT="${STACK_PG_PORT:-54329}"
PG_PROFILE="${STACK_PG_PROFILE:-durable}"
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
PG_START_TIMEOUT="${PG_START_TIMEOUT:-30}"

KAFKA_PORT="${STACK_KAFKA_PORT:-61092}"
KAFKA_CONTROLLER_PORT="${STACK_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_URL="127.0.0.1:$KAFKA_PORT"
KAFKA_CLUSTER_ID="q1Sh-9_ISia_zwGINzRvyQ"   # fixed: the data dir is throwaway anyway
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms1g -Xmx1g}"
# One thread for the broker's garbage collector: the stack shares a small machine with the
# services, and a young collection on every core stalled them all at once (docs/benchmarks.md).
KAFKA_GC_THREADS="${KAFKA_GC_THREADS:--XX:ParallelGCThreads=1 -XX:ConcGCThreads=1}"

KAFKA_DIR="$STACK/kafka"
KAFKA_LIB="$KAFKA_DIR/lib"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
KAFKA_LOG="$KAFKA_DIR/kafka.log"
KAFKA_PID="$KAFKA_DIR/kafka.pid"

# PG_DIR is normally $STACK/pg; see pg_resolve_dir for the exception.
PG_DIR="" PG_DATA="" PG_RUN="" PG_LOG="" PG_BIN=""

# ----------------------------------------------------------------------------- helpers

log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: ERROR: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# show_log_tail FILE: last lines of a server log, for failure messages.
show_log_tail() {
    [ -f "$1" ] || { log "(no log file $1)"; return 0; }
    log "---- last 40 lines of $1 ----"
    tail -n 40 "$1" >&2 || true
    log "---- end of $1 ----"
}

# apt_install PKG...: install Debian packages when root, else explain what is missing.
apt_install() {
    if ! is_root || ! command -v apt-get >/dev/null; then
        die "missing $*: install it (Debian: apt-get install -y $*) and retry"
    fi
    log "installing $* with apt-get (not found on this machine)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 \
        || die "apt-get install $* failed"
}

# external VAR OURS: true when the user set VAR to something other than our own address
# (after `eval "$(stack.sh env)"` VAR holds our address and is still ours to manage).
external() {
    local value="${!1:-}"
    [ -n "$value" ] && [ "$value" != "$2" ]
}

lock_stack() {
    mkdir -p "$STACK"
    exec 9>"$STACK/.lock"
    flock 9
}

# ----------------------------------------------------------------------------- PostgreSQL

# pg_newest_initdb: the initdb of the newest installed PostgreSQL major version, if any.
pg_newest_initdb() {
    local f
    for f in /usr/lib/postgresql/*/bin/initdb; do
        [ -x "$f" ] && printf '%s\n' "$f"
    done | sort -V | tail -n 1
}

pg_find_bin() {
    [ -n "$PG_BIN" ] && return 0
    local initdb
    initdb="$(pg_newest_initdb)"
    if [ -z "$initdb" ]; then
        apt_install postgresql
        initdb="$(pg_newest_initdb)"
        [ -n "$initdb" ] || die "postgresql installed but no /usr/lib/postgresql/*/bin/initdb"
    fi
    PG_BIN="$(dirname "$initdb")"
}

# When root, the cluster belongs to `postgres`, which must be able to traverse every
# parent of the data dir. If the checkout sits below a private directory (e.g. /root),
# the cluster goes to /tmp instead and .stack/pg is a symlink to it.
pg_resolve_dir() {
    local dir="$STACK/pg"
    if [ -L "$dir" ]; then
        dir="$(readlink -f "$dir")"
    elif is_root && [ ! -e "$dir" ] && ! runuser -u postgres -- test -x "$STACK"; then
        dir="$(mktemp -d /tmp/stack-pg.XXXXXX)"
        ln -s "$dir" "$STACK/pg"
        log "postgres cannot traverse $STACK; cluster kept in $dir (.stack/pg links to it)"
    fi
    PG_DIR="$dir" PG_DATA="$dir/data" PG_RUN="$dir/run" PG_LOG="$dir/postgres.log"
}

# as_pg CMD...: run a PostgreSQL server binary as the cluster's owner.
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pg_running() {
    [ -f "$PG_DATA/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

pg_init() {
    [ -f "$PG_DATA/PG_VERSION" ] && return 0
    log "initdb $PG_DATA ($PG_BIN)"
    mkdir -p "$PG_DATA" "$PG_RUN"
    chmod 700 "$PG_DATA"
    if is_root; then
        chown -R postgres: "$PG_DIR"
        as_pg test -x "$PG_DATA" \
            || die "user postgres cannot reach $PG_DATA: make its parent directories traversable (chmod o+x)"
    fi
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --no-locale \
        >"$PG_DIR/initdb.log" 2>&1 || { show_log_tail "$PG_DIR/initdb.log"; die "initdb failed"; }
}

pg_check_version() {
    local have want
    have="$(cat "$PG_DATA/PG_VERSION")"
    want="$(basename "$(dirname "$PG_BIN")")"
    [ "$have" = "$want" ] || die "$PG_DATA was created by PostgreSQL $have but the binaries are $want: run '$0 down && rm -rf $STACK/pg'"
}

pg_up() {
    pg_find_bin
    pg_resolve_dir
    if pg_running; then
        log "PostgreSQL already running on 127.0.0.1:$PG_PORT ($PG_DATA)"
        pg_wait_ready
        pg_apply_profile
        return 0
    fi
    if port_open "$PG_PORT"; then
        # Another checkout's stack (or a leftover of an earlier run) may hold the port: a
        # server that accepts the same trust login is as good as ours for tests.
        if PGCONNECT_TIMEOUT=3 pg_psql -c 'select 1' >/dev/null 2>&1; then
            log "reusing the PostgreSQL already answering on 127.0.0.1:$PG_PORT (not started by this checkout; 'down' leaves it)"
            pg_apply_profile
            return 0
        fi
        die "port $PG_PORT is in use by another process (not a usable PostgreSQL); stop it, or choose another port (STACK_PG_PORT) or server (DATABASE_URL)"
    fi
    local sock="$PG_RUN/.s.PGSQL.$PG_PORT"
    [ "${#sock}" -lt 100 ] || die "socket path $sock is too long for a unix socket; move the checkout to a shorter path"
    pg_init
    pg_check_version
    mkdir -p "$PG_RUN"
    is_root && chown postgres: "$PG_RUN"
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    # The profile's settings are deliberately not on the command line (a reload could not
    # change them there): the cluster starts in the profile it last ran (postgresql.auto.conf)
    # and pg_apply_profile switches it if needed.
    local opts="-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_RUN -c max_connections=300"
    as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t "$PG_START_TIMEOUT" -o "$opts" \
        >/dev/null 2>&1 9>&- || { show_log_tail "$PG_LOG"; die "PostgreSQL did not start"; }
    pg_wait_ready
    pg_apply_profile
}

# pg_psql ARGS...: psql as the superuser against the stack's PostgreSQL (TCP, trust).
pg_psql() {
    PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-5}" psql -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 -Atq "$@"
}

PG_PROFILE_SETTINGS="fsync synchronous_commit full_page_writes"

# pg_live_settings: the live values of the profile's settings, read from the server
# (SHOW, in a new session), as "fsync=on synchronous_commit=on full_page_writes=on".
pg_live_settings() {
    local name value out=""
    for name in $PG_PROFILE_SETTINGS; do
        value="$(pg_psql -c "SHOW $name")" || return 1
        out+="${out:+ }$name=$value"
    done
    printf '%s\n' "$out"
}

# pg_profile_of "fsync=.. synchronous_commit=.. full_page_writes=..": durable, fast or mixed.
# durable: fsync and full_page_writes on, synchronous_commit anything but off (on, local,
# remote_write, remote_apply all wait for the local WAL flush); fast: all three off.
pg_profile_of() {
    local kv fsync="" sc="" fpw=""
    for kv in $1; do
        case "$kv" in
            fsync=*) fsync="${kv#*=}" ;;
            synchronous_commit=*) sc="${kv#*=}" ;;
            full_page_writes=*) fpw="${kv#*=}" ;;
        esac
    done
    if [ "$fsync" = on ] && [ "$fpw" = on ] && [ -n "$sc" ] && [ "$sc" != off ]; then
        echo durable
    elif [ "$fsync" = off ] && [ "$sc" = off ] && [ "$fpw" = off ]; then
        echo fast
    else
        echo mixed
    fi
}

# pg_report_profile SETTINGS: the one line saying which profile PostgreSQL runs.
pg_report_profile() {
    local profile
    profile="$(pg_profile_of "$1")"
    case "$profile" in
        durable) log "PostgreSQL profile: durable ($1)" ;;
        fast) log "PostgreSQL profile: FAST, NOT DURABLE ($1): a crash can lose acknowledged commits; for the test suite only" ;;
        *) log "PostgreSQL profile: MIXED, not durable ($1)" ;;
    esac
}

# pg_apply_profile: make the running PostgreSQL run $PG_PROFILE (ALTER SYSTEM + reload, no
# restart), then print the profile it runs, read back from the server.
pg_apply_profile() {
    local want="$PG_PROFILE" value live have
    live="$(pg_live_settings)" || die "cannot read the settings of the PostgreSQL on 127.0.0.1:$PG_PORT"
    have="$(pg_profile_of "$live")"
    if [ "$have" != "$want" ]; then
        # A setting given on the server's command line (as an older stack.sh did), or per
        # database/role, outranks postgresql.auto.conf: a reload cannot change it.
        local pinned
        pinned="$(pg_psql -F= -c "SELECT name, source FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes') AND source NOT IN ('default', 'configuration file')" | paste -sd' ')" \
            || die "cannot read pg_settings of the PostgreSQL on 127.0.0.1:$PG_PORT"
        if [ -n "$pinned" ]; then
            pg_report_profile "$live"
            die "PostgreSQL on 127.0.0.1:$PG_PORT runs the $have profile and cannot be switched to $want by a reload: $pinned (a cluster started by an older deploy/stack.sh has the fast settings on its command line). Restart it: 'deploy/stack.sh down && STACK_PG_PROFILE=$want deploy/stack.sh up' (this stops whatever uses it)"
        fi
        log "PostgreSQL on 127.0.0.1:$PG_PORT runs the $have profile ($live): switching it to $want (ALTER SYSTEM + pg_reload_conf(), no restart)"
        value=on
        [ "$want" = fast ] && value=off
        local name args=()
        for name in $PG_PROFILE_SETTINGS; do
            args+=(-c "ALTER SYSTEM SET $name = $value")
        done
        pg_psql "${args[@]}" -c 'SELECT pg_reload_conf()' >/dev/null \
            || die "could not switch the PostgreSQL on 127.0.0.1:$PG_PORT to the $want profile"
        # The postmaster applies the reload asynchronously; new sessions see it once it has.
        local deadline=$((SECONDS + 10))
        while live="$(pg_live_settings)" && [ "$(pg_profile_of "$live")" != "$want" ]; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                die "PostgreSQL on 127.0.0.1:$PG_PORT still runs $live 10s after the reload (see $PG_LOG)"
            fi
            sleep 0.2
        done
        log "PostgreSQL switched to the $want profile"
        if [ "$want" = durable ]; then
            # What was written while fsync was off may still be only in the kernel's page cache;
            # the PostgreSQL docs (fsync) ask for it to be flushed once when fsync is turned
            # back on: a checkpoint (shared buffers to the files), then sync(1) of the data's
            # file system.
            local datadir
            pg_psql -c CHECKPOINT >/dev/null || die "CHECKPOINT failed on 127.0.0.1:$PG_PORT"
            datadir="$(pg_psql -c 'SHOW data_directory')" || datadir=""
            if [ -n "$datadir" ] && [ -e "$datadir" ]; then sync -f "$datadir"; else sync; fi
            log "flushed what was written while fsync was off (CHECKPOINT + sync)"
        fi
    fi
    pg_report_profile "$live"
}

pg_wait_ready() {
    local deadline=$((SECONDS + PG_START_TIMEOUT))
    until pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            show_log_tail "$PG_LOG"
            die "PostgreSQL not accepting connections after ${PG_START_TIMEOUT}s"
        fi
        sleep 0.2
    done
    log "PostgreSQL ready"
}

pg_down() {
    [ -e "$STACK/pg" ] || { log "PostgreSQL: not set up"; return 0; }
    pg_find_bin
    pg_resolve_dir
    if ! pg_running; then
        log "PostgreSQL: not running"
        return 0
    fi
    log "stopping PostgreSQL"
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null \
        || { show_log_tail "$PG_LOG"; die "PostgreSQL did not stop"; }
}

# pg_stop_immediate: stop our PostgreSQL without a shutdown checkpoint, as if it crashed
# (what is not in the WAL on disk is gone; the next start replays the WAL).
pg_stop_immediate() {
    [ -e "$STACK/pg" ] || die "no PostgreSQL set up in $STACK"
    pg_find_bin
    pg_resolve_dir
    pg_running || die "PostgreSQL of $STACK is not running"
    log "stopping PostgreSQL immediately (pg_ctl stop -m immediate)"
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 60 >/dev/null \
        || { show_log_tail "$PG_LOG"; die "PostgreSQL did not stop"; }
}

pg_status() {
    local live
    if external DATABASE_URL "$PG_URL"; then
        log "PostgreSQL: external (DATABASE_URL is set), not managed here"
        return 0
    fi
    if [ ! -e "$STACK/pg" ]; then
        if port_open "$PG_PORT" && live="$(pg_live_settings 2>/dev/null)"; then
            log "PostgreSQL: not set up in $STACK, but one answers on 127.0.0.1:$PG_PORT ('up' reuses it)"
            pg_report_profile "$live"
            return 0
        fi
        log "PostgreSQL: not set up"
        return 1
    fi
    pg_find_bin
    pg_resolve_dir
    if pg_running; then
        log "PostgreSQL: running on 127.0.0.1:$PG_PORT (data $PG_DATA)"
        live="$(pg_live_settings)" || { log "PostgreSQL: cannot read its settings"; return 1; }
        pg_report_profile "$live"
    else
        log "PostgreSQL: stopped"
        return 1
    fi
}

# ----------------------------------------------------------------------------- Kafka

java_check() {
    command -v java >/dev/null || apt_install openjdk-17-jre-headless
    local major
    major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
    [ "${major%%.*}" -ge 17 ] 2>/dev/null || die "Kafka 4 needs Java 17 or newer (found '${major:-unknown}')"
}

# Jars from Maven Central, cached in .stack/kafka/lib and refetched when the pom changes.
kafka_fetch_jars() {
    local pom="$DEPLOY/kafka/pom.xml" hash
    hash="$(sha256sum "$pom" | cut -d' ' -f1)"
    if [ -f "$KAFKA_LIB/.pom.sha256" ] && [ "$(cat "$KAFKA_LIB/.pom.sha256")" = "$hash" ]; then
        return 0
    fi
    command -v mvn >/dev/null || apt_install maven
    log "fetching Kafka jars with Maven ($pom)"
    local tmp="$KAFKA_DIR/lib.tmp"
    rm -rf "$tmp"
    mkdir -p "$KAFKA_DIR"
    if ! mvn -B -q -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
            -DoutputDirectory="$tmp" >"$KAFKA_DIR/mvn.log" 2>&1; then
        show_log_tail "$KAFKA_DIR/mvn.log"
        die "mvn could not fetch the Kafka jars"
    fi
    echo "$hash" >"$tmp/.pom.sha256"
    rm -rf "$KAFKA_LIB"
    mv "$tmp" "$KAFKA_LIB"
}

kafka_render_config() {
    sed -e "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
        -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
        "$DEPLOY/kafka/server.properties.template" >"$KAFKA_PROPS"
}

kafka_format() {
    [ -f "$KAFKA_DATA/meta.properties" ] && return 0
    log "formatting Kafka storage $KAFKA_DATA"
    mkdir -p "$KAFKA_DATA"
    java -cp "$KAFKA_LIB/*" -Dlog4j2.configurationFile="$DEPLOY/kafka/log4j2.properties" \
        kafka.tools.StorageTool format --standalone -t "$KAFKA_CLUSTER_ID" -c "$KAFKA_PROPS" \
        >"$KAFKA_DIR/format.log" 2>&1 \
        || { show_log_tail "$KAFKA_DIR/format.log"; die "kafka-storage format failed"; }
}

# kafka_pid: print the broker's pid when it runs; remove a stale pid file.
kafka_pid() {
    [ -f "$KAFKA_PID" ] || return 1
    local pid
    pid="$(cat "$KAFKA_PID")"
    local cmdline=""
    [ -n "$pid" ] && cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" || true)"
    if [[ "$cmdline" == *" kafka.Kafka "* ]]; then
        echo "$pid"
        return 0
    fi
    log "removing stale Kafka pid file (pid '$pid' is not a running broker)"
    rm -f "$KAFKA_PID"
    return 1
}

# kafka_api_versions_ok: send a Kafka ApiVersions v0 request over bash's /dev/tcp and
# check the reply (same correlation id, error code 0): proof that the broker serves requests.
kafka_api_versions_ok() {
    # shellcheck disable=SC2016 # $1 and $reply belong to the inner bash
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        # size=10 | api_key=18 ApiVersions | version=0 | correlation_id=7 | client_id=null
        printf "\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x07\xff\xff" >&3
        reply="$(head -c 10 <&3 | od -An -tx1 | tr -d " \n")"
        # reply: size(4) correlation_id(4)=7 error_code(2)=0
        [ "${reply:8:12}" = "000000070000" ]
    ' _ "$KAFKA_PORT" 2>/dev/null
}

kafka_wait_ready() {
    local pid="$1" log_offset="$2" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$KAFKA_PID"
            show_log_tail "$KAFKA_LOG"
            die "Kafka exited during startup"
        fi
        # (process substitution, not a pipe: with pipefail, grep -q quitting early
        # would fail the pipeline through tail's SIGPIPE)
        if grep -q 'Kafka Server started' < <(tail -c +"$((log_offset + 1))" "$KAFKA_LOG") \
                && kafka_api_versions_ok; then
            log "Kafka ready on $KAFKA_URL"
            return 0
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            show_log_tail "$KAFKA_LOG"
            die "Kafka not ready after ${KAFKA_START_TIMEOUT}s (pid $pid left running; '$0 down' stops it)"
        fi
        sleep 0.5
    done
}

kafka_up() {
    local pid
    if pid="$(kafka_pid)"; then
        log "Kafka already running on $KAFKA_URL (pid $pid)"
        kafka_wait_ready "$pid" 0   # returns at once unless it is still starting
        return 0
    fi
    local port
    if port_open "$KAFKA_PORT" && kafka_api_versions_ok; then
        log "reusing the Kafka already answering on $KAFKA_URL (not started by this checkout; 'down' leaves it)"
        return 0
    fi
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        port_open "$port" && die "port $port is in use by another process (not a usable Kafka); stop it, or choose other ports (STACK_KAFKA_PORT, STACK_KAFKA_CONTROLLER_PORT) or brokers (KAFKA_BOOTSTRAP)"
    done
    java_check
    kafka_fetch_jars
    kafka_render_config
    kafka_format
    local log_offset=0
    [ -f "$KAFKA_LOG" ] && log_offset="$(stat -c %s "$KAFKA_LOG")"
    log "starting Kafka on $KAFKA_URL (log $KAFKA_LOG)"
    # setsid: own session, so a Ctrl-C aimed at the caller does not kill the broker.
    # 9>&-: do not hand the stack lock to the long-lived child.
    # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS and KAFKA_GC_THREADS are lists of JVM flags
    (exec setsid nohup java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 $KAFKA_GC_THREADS \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$DEPLOY/kafka/log4j2.properties" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_PROPS" \
        </dev/null >>"$KAFKA_LOG" 2>&1 9>&-) &
    pid=$!
    echo "$pid" >"$KAFKA_PID"
    kafka_wait_ready "$pid" "$log_offset"
}

kafka_down() {
    local pid
    if ! pid="$(kafka_pid)"; then
        log "Kafka: not running"
        return 0
    fi
    log "stopping Kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "Kafka still running after ${KAFKA_STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.3
    done
    rm -f "$KAFKA_PID"
}

kafka_status() {
    if external KAFKA_BOOTSTRAP "$KAFKA_URL"; then
        log "Kafka: external (KAFKA_BOOTSTRAP is set), not managed here"
        return 0
    fi
    local pid
    if pid="$(kafka_pid)"; then
        if kafka_api_versions_ok; then
            log "Kafka: running on $KAFKA_URL (pid $pid)"
        else
            log "Kafka: process $pid runs but does not answer on $KAFKA_URL (starting? see $KAFKA_LOG)"
            return 1
        fi
    elif port_open "$KAFKA_PORT" && kafka_api_versions_ok; then
        log "Kafka: not started from $STACK, but one answers on $KAFKA_URL ('up' reuses it)"
    else
        log "Kafka: stopped"
        return 1
    fi
}

# ----------------------------------------------------------------------------- commands

cmd_env() {
    local db="$PG_URL" kafka="$KAFKA_URL"
    external DATABASE_URL "$PG_URL" && db="$DATABASE_URL"
    external KAFKA_BOOTSTRAP "$KAFKA_URL" && kafka="$KAFKA_BOOTSTRAP"
    printf 'export DATABASE_URL=%q\n' "$db"
    printf 'export KAFKA_BOOTSTRAP=%q\n' "$kafka"
}

cmd_up() {
    lock_stack
    if external DATABASE_URL "$PG_URL"; then
        log "DATABASE_URL is set: using it, not starting PostgreSQL (nor setting its profile)"
    else
        pg_up
    fi
    if external KAFKA_BOOTSTRAP "$KAFKA_URL"; then
        log "KAFKA_BOOTSTRAP is set: using it, not starting Kafka"
    else
        kafka_up
    fi
    cmd_env
}

cmd_down() {
    [ -d "$STACK" ] || { log "nothing to stop ($STACK does not exist)"; return 0; }
    lock_stack
    kafka_down
    pg_down
}

# cmd_profile [durable|fast]: print the live profile of the stack's PostgreSQL, or switch it.
cmd_profile() {
    if external DATABASE_URL "$PG_URL"; then
        die "DATABASE_URL is set: that PostgreSQL is not managed here"
    fi
    pg_psql -c 'select 1' >/dev/null 2>&1 || die "no PostgreSQL answers on 127.0.0.1:$PG_PORT ('$0 up' starts it)"
    if [ -n "${1:-}" ]; then
        PG_PROFILE="$1"
        check_profile
        lock_stack
        pg_apply_profile
    else
        local live
        live="$(pg_live_settings)" || die "cannot read the settings of the PostgreSQL on 127.0.0.1:$PG_PORT"
        pg_report_profile "$live"
        pg_profile_of "$live"
    fi
}

check_profile() {
    case "$PG_PROFILE" in
        durable | fast) ;;
        *) die "STACK_PG_PROFILE must be 'durable' or 'fast' (got '$PG_PROFILE')" ;;
    esac
}

cmd_status() {
    local rc=0
    pg_status || rc=1
    kafka_status || rc=1
    return "$rc"
}

usage() {
    sed -n '2,17s/^# \{0,1\}//p' "$0"
}

main() {
    case "${1:-}" in
        up) check_profile; cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        env) cmd_env ;;
        profile) cmd_profile "${2:-}" ;;
        pg-stop-immediate) lock_stack; pg_stop_immediate ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
