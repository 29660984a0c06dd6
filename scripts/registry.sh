#!/usr/bin/env bash
# Start/stop a real local schema registry (Apicurio Registry, Confluent-compatible API at
# /apis/ccompat/v7) for tests and demos. No Docker: the runnable build comes from Maven
# Central (io.apicurio:apicurio-registry-app:<ver>:tar.gz:all) and is cached across clones.
# Storage is in-memory (H2): every start is an empty registry.
#
#   scripts/registry.sh up               # idempotent; waits until the API answers
#   scripts/registry.sh down [--purge]   # idempotent; --purge also deletes the data dir
#   scripts/registry.sh status           # exit 0 if the API answers, else 1
#   scripts/registry.sh url              # the Confluent-compatible URL clients use
#
# Which build: Apicurio 3.3.3 needs Java 21+ (it starts in about 5 s); 3.0.9 runs on
# Java 17 (about 8 s). The script takes 3.3.3 when it finds a Java 21+ (JAVA, JAVA_HOME,
# java on PATH, or a JDK in /usr/lib/jvm), else 3.0.9 on the Java it has.
#
# Environment (all optional):
#   REGISTRY_PORT           HTTP port on 127.0.0.1                       (8081)
#   REGISTRY_MGMT_PORT      management port on 127.0.0.1 (3.3.x)         (9001)
#   REGISTRY_VERSION        Apicurio version                             (3.3.3 with Java 21+, else 3.0.9)
#   REGISTRY_CACHE_DIR      unpacked builds                              ($HOME/.cache/streamscore/registry)
#   REGISTRY_DATA_DIR       pid file and log                             (<repo>/.local/registry)
#   REGISTRY_HEAP_OPTS      JVM heap flags                               (-Xmx512m)
#   REGISTRY_START_TIMEOUT  seconds to wait for the API in `up`          (90)
#   REGISTRY_STOP_TIMEOUT   seconds to wait after SIGTERM in `down`      (20)
#   REGISTRY_MVN_ARGS       extra Maven args (e.g. -o, -Dmaven.repo.local=...)
#   JAVA                    java binary
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd)"

REGISTRY_HOST=127.0.0.1
REGISTRY_PORT="${REGISTRY_PORT:-8081}"
REGISTRY_MGMT_PORT="${REGISTRY_MGMT_PORT:-9001}"
REGISTRY_CACHE_DIR="${REGISTRY_CACHE_DIR:-$HOME/.cache/streamscore/registry}"
REGISTRY_DATA_DIR="${REGISTRY_DATA_DIR:-$REPO_ROOT/.local/registry}"
REGISTRY_HEAP_OPTS="${REGISTRY_HEAP_OPTS:--Xmx512m}"
REGISTRY_START_TIMEOUT="${REGISTRY_START_TIMEOUT:-90}"
REGISTRY_STOP_TIMEOUT="${REGISTRY_STOP_TIMEOUT:-20}"
REGISTRY_MVN_ARGS="${REGISTRY_MVN_ARGS:-}"
PID_FILE="$REGISTRY_DATA_DIR/registry.pid"
LOG_FILE="$REGISTRY_DATA_DIR/registry.log"
URL="http://$REGISTRY_HOST:$REGISTRY_PORT/apis/ccompat/v7"

log() { printf 'registry.sh: %s\n' "$*"; }
err() { printf 'registry.sh: %s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

answers() { curl -sf -o /dev/null --max-time 2 "$URL/subjects"; }
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$REGISTRY_HOST/$1" 2>/dev/null; }

java_major() {  # major version of java binary $1, or 0
    local v
    v="$("$1" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')" || true
    v="${v#1.}"
    echo "${v%%[.+-]*}" | grep -E '^[0-9]+$' || echo 0
}

# Sets JAVA (the binary) and REGISTRY_VERSION (unless given).
choose_java() {
    local candidates=() c best="" best_major=0 m
    [[ -n "${JAVA:-}" ]] && candidates+=("$JAVA")
    [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
    command -v java >/dev/null 2>&1 && candidates+=("$(command -v java)")
    for c in /usr/lib/jvm/*/bin/java; do [[ -x "$c" ]] && candidates+=("$c"); done
    if [[ -n "${JAVA:-}" ]]; then
        best="$JAVA"; best_major="$(java_major "$JAVA")"
    else
        for c in "${candidates[@]}"; do
            [[ -x "$c" ]] || continue
            m="$(java_major "$c")"
            if ((m > best_major)); then best="$c"; best_major="$m"; fi
        done
    fi
    [[ -n "$best" ]] || { err "java not found (Java 17+ needed; 21+ for Apicurio 3.3)"; exit 1; }
    JAVA="$best"
    if [[ -z "${REGISTRY_VERSION:-}" ]]; then
        if ((best_major >= 21)); then REGISTRY_VERSION=3.3.3; else REGISTRY_VERSION=3.0.9; fi
    fi
}

# Unpacks the runnable build into $REGISTRY_CACHE_DIR/<version> (once); sets APP_DIR.
ensure_app() {
    APP_DIR="$REGISTRY_CACHE_DIR/$REGISTRY_VERSION"
    if [[ -f "$APP_DIR/.complete" ]]; then return 0; fi
    command -v mvn >/dev/null 2>&1 || { err "mvn not found: Maven fetches Apicurio Registry from Maven Central"; exit 1; }
    local t0 m2 tgz
    t0="$(now)"
    m2="$(mvn -q -B help:evaluate -Dexpression=settings.localRepository -DforceStdout $REGISTRY_MVN_ARGS 2>/dev/null || true)"
    [[ -d "$m2" ]] || m2="$HOME/.m2/repository"
    log "fetching io.apicurio:apicurio-registry-app:$REGISTRY_VERSION (tar.gz:all) from Maven Central..."
    # shellcheck disable=SC2086
    if ! mvn -q -B $REGISTRY_MVN_ARGS dependency:get -Dtransitive=false \
        -Dartifact="io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all" >"/tmp/registry-mvn-$$.log" 2>&1; then
        cat "/tmp/registry-mvn-$$.log" >&2
        rm -f "/tmp/registry-mvn-$$.log"
        err "Maven could not fetch Apicurio Registry $REGISTRY_VERSION"
        exit 1
    fi
    rm -f "/tmp/registry-mvn-$$.log"
    tgz="$m2/io/apicurio/apicurio-registry-app/$REGISTRY_VERSION/apicurio-registry-app-$REGISTRY_VERSION-all.tar.gz"
    [[ -f "$tgz" ]] || { err "not found after download: $tgz"; exit 1; }
    rm -rf "$APP_DIR"
    mkdir -p "$APP_DIR"
    tar xzf "$tgz" -C "$APP_DIR"
    touch "$APP_DIR/.complete"
    log "Apicurio Registry $REGISTRY_VERSION unpacked in $APP_DIR in $(elapsed "$t0")s"
}

# The runnable jar of the unpacked build.
app_jar() {
    local jar
    jar="$(find "$APP_DIR" -maxdepth 3 \( -name quarkus-run.jar -o -name '*-runner.jar' \) | head -n1)"
    [[ -n "$jar" ]] || { err "no quarkus-run.jar or *-runner.jar in $APP_DIR"; exit 1; }
    echo "$jar"
}

# True if $1 is a live java process started by this script on our port.
is_our_registry() {
    local pid="$1" cmd
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmd" == *apicurio* && "$cmd" == *"quarkus.http.port=$REGISTRY_PORT"* ]]
}

registry_pid() {
    local pid
    [[ -f "$PID_FILE" ]] || return 0
    pid="$(head -n1 "$PID_FILE" 2>/dev/null || true)"
    if is_our_registry "$pid"; then echo "$pid"; else rm -f "$PID_FILE"; fi
}

cmd_up() {
    local t0
    t0="$(now)"
    if answers; then
        log "a registry already answers at $URL, nothing to do"
        return 0
    fi
    if port_open "$REGISTRY_PORT"; then
        err "$REGISTRY_HOST:$REGISTRY_PORT is taken by something that is not a schema registry; set REGISTRY_PORT"
        exit 1
    fi
    choose_java
    mkdir -p "$REGISTRY_DATA_DIR"
    # Serialize concurrent `up` runs (two pytest workers may each ask for the registry).
    exec 9>"$REGISTRY_DATA_DIR/.lock"
    flock 9
    if answers; then
        log "a registry already answers at $URL, nothing to do"
        return 0
    fi
    local pid
    pid="$(registry_pid)"
    if [[ -z "$pid" ]]; then
        ensure_app
        local jar heap
        jar="$(app_jar)"
        read -r -a heap <<<"$REGISTRY_HEAP_OPTS"
        echo "==== registry.sh: starting Apicurio $REGISTRY_VERSION $(date -Is) ====" >>"$LOG_FILE"
        (
            cd "$REGISTRY_DATA_DIR"
            # the management port (health, metrics) stays on loopback; 3.0.x ignores these keys
            exec setsid nohup "$JAVA" "${heap[@]}" -Dapicurio.registry=1 \
                -Dquarkus.http.host="$REGISTRY_HOST" -Dquarkus.http.port="$REGISTRY_PORT" \
                -Dquarkus.management.host="$REGISTRY_HOST" -Dquarkus.management.port="$REGISTRY_MGMT_PORT" \
                -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 \
                -jar "$jar" </dev/null >>"$LOG_FILE" 2>&1 9>&-
        ) &
        echo $! >"$PID_FILE"
        pid="$(cat "$PID_FILE")"
    else
        log "registry already started (pid $pid), waiting for it to answer"
    fi
    local deadline
    deadline=$(($(date +%s) + REGISTRY_START_TIMEOUT))
    until answers; do
        if ! is_our_registry "$pid"; then
            err "registry process exited during startup"
            rm -f "$PID_FILE"
            tail -n 40 "$LOG_FILE" >&2 || true
            exit 1
        fi
        if (($(date +%s) >= deadline)); then
            err "registry did not answer at $URL within ${REGISTRY_START_TIMEOUT}s; stopping it"
            tail -n 40 "$LOG_FILE" >&2 || true
            kill -TERM "$pid" 2>/dev/null || true
            rm -f "$PID_FILE"
            exit 1
        fi
        sleep 0.25
    done
    local rss
    rss="$(awk '/VmRSS/ { printf "%d MB", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null || echo "? MB")"
    log "Apicurio Registry $REGISTRY_VERSION (java $(java_major "$JAVA")) up at $URL (pid $pid, RSS $rss) in $(elapsed "$t0")s; log: $LOG_FILE"
}

cmd_down() {
    local purge=0 arg
    for arg in "$@"; do
        case "$arg" in
            --purge) purge=1 ;;
            *) err "unknown option for down: $arg"; exit 2 ;;
        esac
    done
    local pid=""
    [[ -d "$REGISTRY_DATA_DIR" ]] && pid="$(registry_pid)"
    if [[ -n "$pid" ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        local i
        for ((i = 0; i < REGISTRY_STOP_TIMEOUT * 10; i++)); do
            is_our_registry "$pid" || break
            sleep 0.1
        done
        if is_our_registry "$pid"; then
            err "registry (pid $pid) did not exit after ${REGISTRY_STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$PID_FILE"
        log "registry (pid $pid) stopped"
    else
        log "registry not running"
        if answers; then log "note: a registry not started by this script answers at $URL; left alone"; fi
    fi
    if ((purge)) && [[ -d "$REGISTRY_DATA_DIR" ]]; then
        rm -rf "$REGISTRY_DATA_DIR"
        log "purged $REGISTRY_DATA_DIR"
    fi
}

cmd_status() {
    local pid=""
    [[ -d "$REGISTRY_DATA_DIR" ]] && pid="$(registry_pid)"
    if answers; then
        if [[ -n "$pid" ]]; then log "running (pid $pid) at $URL"; else log "running at $URL (not started by this script)"; fi
        return 0
    fi
    log "not running"
    return 1
}

usage() {
    echo "usage: $0 {up|down [--purge]|status|url}" >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
sub="$1"
shift
case "$sub" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    url) echo "$URL" ;;
    *) usage ;;
esac
