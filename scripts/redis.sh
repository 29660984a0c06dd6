#!/usr/bin/env bash
# Start/stop a real local redis-server (no persistence) for tests and demos.
#
#   scripts/redis.sh up               # idempotent; installs redis-server via apt if missing
#   scripts/redis.sh down [--purge]   # idempotent; --purge also deletes the data dir
#   scripts/redis.sh status           # exit 0 if redis answers PING, else 1
#
# Environment (all optional):
#   REDIS_PORT            port on 127.0.0.1                     (6379)
#   REDIS_DATA_DIR        dir, pid file and log file            (<repo>/.local/redis)
#   REDIS_START_TIMEOUT   seconds to wait for PONG in `up`      (20)
#   REDIS_STOP_TIMEOUT    seconds to wait for exit in `down`    (10)
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd)"

REDIS_HOST=127.0.0.1
REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_DATA_DIR="${REDIS_DATA_DIR:-$REPO_ROOT/.local/redis}"
REDIS_START_TIMEOUT="${REDIS_START_TIMEOUT:-20}"
REDIS_STOP_TIMEOUT="${REDIS_STOP_TIMEOUT:-10}"
PID_FILE="$REDIS_DATA_DIR/redis.pid"
LOG_FILE="$REDIS_DATA_DIR/redis.log"

log() { printf 'redis.sh: %s\n' "$*"; }
err() { printf 'redis.sh: %s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$REDIS_HOST/$REDIS_PORT" 2>/dev/null
}

# True if redis answers PING on our port. Without redis-cli, speak RESP by hand.
pong() {
    if command -v redis-cli >/dev/null 2>&1; then
        [[ "$(timeout 3 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
    else
        # shellcheck disable=SC2016  # $0/$1/$line expand in the inner bash
        timeout 3 bash -c '
            exec 3<>"/dev/tcp/$0/$1" || exit 1
            printf "PING\r\n" >&3
            IFS= read -r line <&3
            [[ "$line" == "+PONG"* ]]' "$REDIS_HOST" "$REDIS_PORT" 2>/dev/null
    fi
}

# True if $1 is a live redis-server process listening on our port.
is_our_redis() {
    local pid="$1" cmd
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    # redis rewrites its argv to "redis-server 127.0.0.1:PORT"
    [[ "$cmd" == *redis-server* && "$cmd" == *":$REDIS_PORT"* ]]
}

# Pid of the redis started by this script, or nothing (a stale pid file is removed).
redis_pid() {
    local pid
    [[ -f "$PID_FILE" ]] || return 0
    pid="$(head -n1 "$PID_FILE" 2>/dev/null || true)"
    if is_our_redis "$pid"; then
        echo "$pid"
    else
        rm -f "$PID_FILE"
    fi
}

redis_version() { redis-server --version | awk '{ print $3 }' | sed 's/^v=//'; }

ensure_installed() {
    command -v redis-server >/dev/null 2>&1 && return 0
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || { err "redis-server missing and not root (no sudo): apt-get install redis-server"; exit 1; }
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 || { err "redis-server not found and apt-get unavailable; install redis-server"; exit 1; }
    local t0
    t0="$(now)"
    log "redis-server not found: installing it with apt-get..."
    if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server redis-tools; } \
        >"/tmp/redis-apt-$$.log" 2>&1; then
        cat "/tmp/redis-apt-$$.log" >&2
        rm -f "/tmp/redis-apt-$$.log"
        err "apt-get install redis-server failed"
        exit 1
    fi
    rm -f "/tmp/redis-apt-$$.log"
    # The Debian package may start a system redis on 6379 (when an init system
    # runs); we start our own below and leave any system service alone.
    log "installed redis-server $(redis_version) in $(elapsed "$t0")s"
}

cmd_up() {
    local t0
    t0="$(now)"
    if pong; then
        log "redis already answers on $REDIS_HOST:$REDIS_PORT, nothing to do"
        return 0
    fi
    if port_open; then
        err "$REDIS_HOST:$REDIS_PORT is taken by something that does not answer PING; set REDIS_PORT"
        exit 1
    fi
    ensure_installed
    if pong; then
        # e.g. the package just started the system service on this port
        log "redis (not started by this script) now answers on $REDIS_HOST:$REDIS_PORT, using it"
        return 0
    fi
    mkdir -p "$REDIS_DATA_DIR"
    local pid
    pid="$(redis_pid)"
    if [[ -z "$pid" ]]; then
        # --daemonize: redis forks and writes its pid file itself. Early errors
        # (before the log file is open) go to stderr, appended to the same log.
        # shellcheck disable=SC2094
        if ! redis-server --daemonize yes \
            --bind "$REDIS_HOST" --port "$REDIS_PORT" --protected-mode yes \
            --save '' --appendonly no \
            --dir "$REDIS_DATA_DIR" --pidfile "$PID_FILE" --logfile "$LOG_FILE" \
            </dev/null >/dev/null 2>>"$LOG_FILE"; then
            err "redis-server failed to start"
            tail -n 40 "$LOG_FILE" >&2 || true
            exit 1
        fi
    else
        log "redis already started (pid $pid), waiting for it to answer"
    fi
    local deadline
    deadline=$(($(date +%s) + REDIS_START_TIMEOUT))
    until pong; do
        if (($(date +%s) >= deadline)); then
            err "redis did not answer PING on $REDIS_HOST:$REDIS_PORT within ${REDIS_START_TIMEOUT}s"
            tail -n 40 "$LOG_FILE" >&2 || true
            pid="$(redis_pid)"
            if [[ -n "$pid" ]]; then kill -TERM "$pid" 2>/dev/null || true; fi
            exit 1
        fi
        sleep 0.1
    done
    pid="$(redis_pid)"
    log "redis $(redis_version) up on $REDIS_HOST:$REDIS_PORT (pid ${pid:-?}) in $(elapsed "$t0")s; logs: $LOG_FILE"
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
    [[ -d "$REDIS_DATA_DIR" ]] && pid="$(redis_pid)"
    if [[ -n "$pid" ]]; then
        # Only shut down the server this script started (the pid file proves it).
        if command -v redis-cli >/dev/null 2>&1; then
            timeout 5 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        else
            kill -TERM "$pid" 2>/dev/null || true
        fi
        local i
        for ((i = 0; i < REDIS_STOP_TIMEOUT * 10; i++)); do
            is_our_redis "$pid" || break
            sleep 0.1
        done
        if is_our_redis "$pid"; then
            err "redis (pid $pid) did not exit after ${REDIS_STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$PID_FILE"
        log "redis (pid $pid) stopped"
    else
        log "redis not running"
        if pong; then
            log "note: a redis not started by this script answers on $REDIS_HOST:$REDIS_PORT; left alone"
        fi
    fi
    if ((purge)) && [[ -d "$REDIS_DATA_DIR" ]]; then
        rm -rf "$REDIS_DATA_DIR"
        log "purged $REDIS_DATA_DIR"
    fi
}

cmd_status() {
    local pid=""
    [[ -d "$REDIS_DATA_DIR" ]] && pid="$(redis_pid)"
    if pong; then
        if [[ -n "$pid" ]]; then
            log "running (pid $pid) on $REDIS_HOST:$REDIS_PORT"
        else
            log "running on $REDIS_HOST:$REDIS_PORT (not started by this script)"
        fi
        return 0
    fi
    log "not running"
    return 1
}

usage() {
    echo "usage: $0 {up|down [--purge]|status}" >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
sub="$1"
shift
case "$sub" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    *) usage ;;
esac
