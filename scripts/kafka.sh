#!/usr/bin/env bash
# Start/stop a real, single-node Apache Kafka broker (KRaft, broker+controller)
# for tests and demos. No Docker and no Kafka tarball needed: the broker jars
# come from Maven Central (infra/kafka/pom.xml) and are cached across clones.
#
#   scripts/kafka.sh up               # idempotent; waits until the broker answers
#   scripts/kafka.sh down [--purge]   # idempotent; keeps topics and data unless --purge
#   scripts/kafka.sh kill             # SIGKILL the broker (a crash), data kept; `up` restarts it
#   scripts/kafka.sh status           # exit 0 if a broker answers, else 1
#
# `down` then `up` (or `kill` then `up`) restarts the SAME broker: same data dir,
# cluster id, topics, messages and committed offsets (tests/e2e/test_broker_outages.py).
#
# Environment (all optional):
#   KAFKA_PORT             PLAINTEXT listener port on 127.0.0.1        (9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener port on 127.0.0.1 (9093)
#   KAFKA_VERSION          org.apache.kafka:kafka_2.13 version         (4.3.1)
#   KAFKA_CACHE_DIR        jar cache; jars go to $KAFKA_CACHE_DIR/libs ($HOME/.cache/streamscore/kafka)
#   KAFKA_DATA_DIR         config, logs, pid file, log.dirs            (<repo>/.local/kafka)
#   KAFKA_HEAP_OPTS        JVM heap flags                              (-Xms256m -Xmx512m)
#   KAFKA_JVM_OPTS         extra JVM flags, appended
#   KAFKA_START_TIMEOUT    seconds to wait for the broker in `up`      (90)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM in `down`     (30)
#   KAFKA_AUTO_CREATE_TOPICS  broker's auto.create.topics.enable       (true)
#   KAFKA_BROKER_SESSION_TIMEOUT_MS  broker.session.timeout.ms         (9000, Kafka's default)
#                          after a crash (`kill`), `up` waits this long for the old
#                          registration to expire (heartbeats every third of it, 2 s at most)
#   KAFKA_MVN_ARGS         extra Maven args (e.g. -o, -Dmaven.repo.local=...)
#   PYTHON                 python used for the metadata probe if it can import
#                          confluent_kafka (<repo>/.venv/bin/python if present, else python3)
#   JAVA                   java binary (java on PATH / $JAVA_HOME/bin/java)
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd)"

KAFKA_HOST=127.0.0.1
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_VERSION="${KAFKA_VERSION:-4.3.1}"
KAFKA_CACHE_DIR="${KAFKA_CACHE_DIR:-$HOME/.cache/streamscore/kafka}"
KAFKA_LIBS_DIR="$KAFKA_CACHE_DIR/libs"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-$REPO_ROOT/.local/kafka}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
KAFKA_AUTO_CREATE_TOPICS="${KAFKA_AUTO_CREATE_TOPICS:-true}"
KAFKA_BROKER_SESSION_TIMEOUT_MS="${KAFKA_BROKER_SESSION_TIMEOUT_MS:-9000}"
KAFKA_MVN_ARGS="${KAFKA_MVN_ARGS:-}"
POM="$REPO_ROOT/infra/kafka/pom.xml"
case "$KAFKA_AUTO_CREATE_TOPICS" in
    true | false) ;;
    *) printf 'kafka.sh: KAFKA_AUTO_CREATE_TOPICS=%s: expected true or false\n' "$KAFKA_AUTO_CREATE_TOPICS" >&2; exit 2 ;;
esac
if ! [[ "$KAFKA_BROKER_SESSION_TIMEOUT_MS" =~ ^[1-9][0-9]*$ ]] || ((KAFKA_BROKER_SESSION_TIMEOUT_MS < 1500)); then
    printf 'kafka.sh: KAFKA_BROKER_SESSION_TIMEOUT_MS=%s: expected milliseconds, at least 1500\n' \
        "$KAFKA_BROKER_SESSION_TIMEOUT_MS" >&2
    exit 2
fi

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
        PYTHON="$REPO_ROOT/.venv/bin/python"
    else
        PYTHON=python3
    fi
fi
if [[ -z "${JAVA:-}" ]]; then
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        JAVA="$JAVA_HOME/bin/java"
    else
        JAVA=java
    fi
fi

PROPS="$KAFKA_DATA_DIR/server.properties"
LOG4J_CONF="$KAFKA_DATA_DIR/log4j2.properties"
LOG_DIRS="$KAFKA_DATA_DIR/data"
PID_FILE="$KAFKA_DATA_DIR/kafka.pid"
BROKER_LOG="$KAFKA_DATA_DIR/broker.log"   # log4j output
BROKER_OUT="$KAFKA_DATA_DIR/broker.out"   # JVM stdout/stderr
LOCK_FILE="$KAFKA_DATA_DIR/.lock"

log() { printf 'kafka.sh: %s\n' "$*"; }
err() { printf 'kafka.sh: %s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$KAFKA_HOST/$1" 2>/dev/null
}

# Who listens on 127.0.0.1:$1: "pid N (command)" when this user may see it, else "another process".
listener() {
    local pid cmd
    pid="$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2)"
    if [[ -n "$pid" && -r "/proc/$pid/cmdline" ]]; then
        cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
        ((${#cmd} <= 100)) || cmd="...${cmd: -100}"
        echo "pid $pid (${cmd% })"
    else
        echo "another process (not one of this user's, or ss is missing)"
    fi
}

# True if process $1 exists and is not a zombie.
proc_alive() {
    local state
    [[ "$1" =~ ^[0-9]+$ ]] || return 1
    state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# True if $1 is a live process running *our* broker (kafka.Kafka with our props file).
is_our_broker() {
    local pid="$1" cmd
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmd" == *" kafka.Kafka $PROPS"* ]]
}

# Prints the pid of our broker, or nothing. Handles stale/missing pid files:
# a stale one is removed; a broker whose pid file was lost is found via /proc.
broker_pid() {
    local pid="" p
    if [[ -f "$PID_FILE" ]]; then
        pid="$(head -n1 "$PID_FILE" 2>/dev/null || true)"
        if is_our_broker "$pid"; then
            echo "$pid"
            return 0
        fi
        rm -f "$PID_FILE"
    fi
    for p in /proc/[0-9]*; do
        p="${p#/proc/}"
        if is_our_broker "$p"; then
            echo "$p" >"$PID_FILE" 2>/dev/null || true
            echo "$p"
            return 0
        fi
    done
    return 0
}

have_confluent_kafka() {
    command -v "$PYTHON" >/dev/null 2>&1 && "$PYTHON" -c 'import confluent_kafka' >/dev/null 2>&1
}

# A metadata request round trip: the broker is registered and serves requests.
metadata_ok() {
    "$PYTHON" - "$KAFKA_HOST:$KAFKA_PORT" >/dev/null 2>&1 <<'PY'
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0,
                     "socket.timeout.ms": 3000})
md = admin.list_topics(timeout=3)
sys.exit(0 if md.brokers else 1)
PY
}

broker_ready() {
    port_open "$KAFKA_PORT" || return 1
    if [[ "$PROBE" == metadata ]]; then
        metadata_ok
    else
        # "started" must come after the marker start_broker wrote for this run
        [[ -f "$BROKER_LOG" ]] &&
            awk '/^==== kafka.sh: starting broker/ { ok = 0 }
                 /Kafka Server started/ { ok = 1 }
                 END { exit !ok }' "$BROKER_LOG"
    fi
}

show_logs() {
    local f
    for f in "$BROKER_LOG" "$BROKER_OUT"; do
        if [[ -s "$f" ]]; then
            err "---- last 40 lines of $f ----"
            tail -n 40 "$f" >&2
        fi
    done
}

# ---------------------------------------------------------------------------
# Jars: $KAFKA_LIBS_DIR/*.jar, marked complete by $KAFKA_LIBS_DIR/.kafka-version.
# Resolved into a temp folder and moved into place, so an interrupted Maven run
# never leaves a half-filled libs folder that would be mistaken for complete.
ensure_jars() {
    local marker="$KAFKA_LIBS_DIR/.kafka-version"
    if [[ -f "$marker" && "$(cat "$marker")" == "$KAFKA_VERSION" ]] &&
        compgen -G "$KAFKA_LIBS_DIR/kafka_2.13-*.jar" >/dev/null; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || { err "mvn not found (needed once to fetch the Kafka jars)"; exit 1; }
    mkdir -p "$KAFKA_CACHE_DIR"
    local tmp t0
    tmp="$(mktemp -d "$KAFKA_CACHE_DIR/libs.tmp.XXXXXX")"
    t0="$(now)"
    log "resolving Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS_DIR (first run only)..."
    # shellcheck disable=SC2086  # KAFKA_MVN_ARGS is a list of words on purpose
    if ! mvn -B -q -Dstyle.color=never $KAFKA_MVN_ARGS -f "$POM" \
        -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$tmp.mvn.log" 2>&1; then
        cat "$tmp.mvn.log" >&2
        rm -rf "$tmp" "$tmp.mvn.log"
        err "Maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION"
        exit 1
    fi
    rm -f "$tmp.mvn.log"
    echo "$KAFKA_VERSION" >"$tmp/.kafka-version"
    rm -rf "$KAFKA_LIBS_DIR"
    mv "$tmp" "$KAFKA_LIBS_DIR"
    log "jars ready: $(find "$KAFKA_LIBS_DIR" -name '*.jar' | wc -l) jars, $(du -sh "$KAFKA_LIBS_DIR" | cut -f1), $(elapsed "$t0")s"
}

write_config() {
    mkdir -p "$KAFKA_DATA_DIR" "$LOG_DIRS"
    cat >"$PROPS.tmp" <<EOF
# Generated by scripts/kafka.sh -- rewritten on every \`up\`; edit the script instead.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$LOG_DIRS
num.partitions=1
auto.create.topics.enable=$KAFKA_AUTO_CREATE_TOPICS
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
broker.session.timeout.ms=$KAFKA_BROKER_SESSION_TIMEOUT_MS
broker.heartbeat.interval.ms=$((KAFKA_BROKER_SESSION_TIMEOUT_MS / 3 < 2000 ? KAFKA_BROKER_SESSION_TIMEOUT_MS / 3 : 2000))
# single node: every internal topic with RF 1 and few partitions (fast first use)
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
EOF
    mv "$PROPS.tmp" "$PROPS"

    cat >"$LOG4J_CONF.tmp" <<EOF
# Generated by scripts/kafka.sh
status = warn
name = streamscore-kafka
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $BROKER_LOG
appender.file.filePattern = $BROKER_LOG.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.controller.name = kafka.controller
logger.controller.level = INFO
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
    mv "$LOG4J_CONF.tmp" "$LOG4J_CONF"
}

java_cmd() {
    # shellcheck disable=SC2206
    local heap=($KAFKA_HEAP_OPTS) extra=($KAFKA_JVM_OPTS)
    JAVA_ARGS=(
        "${heap[@]}"
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
        -Djava.awt.headless=true
        -Dlog4j2.configurationFile="$LOG4J_CONF"
        -Dkafka.logs.dir="$KAFKA_DATA_DIR"
        "${extra[@]}"
        -cp "$KAFKA_LIBS_DIR/*"
    )
}

# Format the KRaft storage once (meta.properties marks a formatted log dir).
ensure_formatted() {
    [[ -f "$LOG_DIRS/meta.properties" ]] && return 0
    # Never formatted (or a format was interrupted): start from a clean dir.
    rm -rf "$LOG_DIRS"
    mkdir -p "$LOG_DIRS"
    local cluster_id
    # A Kafka Uuid: 16 random bytes, base64url without padding (22 chars). One in 64
    # starts with '-', which the storage tool's argument parser takes for an option
    # ("argument --cluster-id/-t: expected one argument"): draw again.
    cluster_id=-
    while [[ "$cluster_id" == -* ]]; do
        cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    java_cmd
    log "formatting KRaft storage in $LOG_DIRS (cluster id $cluster_id)"
    if ! "$JAVA" "${JAVA_ARGS[@]}" kafka.tools.StorageTool format \
        -t "$cluster_id" -c "$PROPS" >"$KAFKA_DATA_DIR/format.log" 2>&1; then
        cat "$KAFKA_DATA_DIR/format.log" >&2
        rm -rf "$LOG_DIRS"
        err "storage format failed"
        exit 1
    fi
    echo "$cluster_id" >"$KAFKA_DATA_DIR/cluster.id"
}

start_broker() {
    java_cmd
    : >"$BROKER_OUT"
    echo "==== kafka.sh: starting broker $(date -Is) ====" >>"$BROKER_LOG"
    # setsid+nohup: the broker survives this shell and Ctrl-C of `up`;
    # 9>&- : it must not inherit our lock file descriptor.
    (
        cd "$KAFKA_DATA_DIR"
        exec setsid nohup "$JAVA" "${JAVA_ARGS[@]}" kafka.Kafka "$PROPS" \
            </dev/null >>"$BROKER_OUT" 2>&1 9>&-
    ) &
    echo $! >"$PID_FILE"
}

stop_pid() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < KAFKA_STOP_TIMEOUT * 5; i++)); do
        is_our_broker "$pid" || return 0
        sleep 0.2
    done
    err "broker (pid $pid) still alive after ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        is_our_broker "$pid" || return 0
        sleep 0.1
    done
    err "could not kill broker pid $pid"
    return 1
}

cmd_up() {
    local t0
    t0="$(now)"
    if port_open "$KAFKA_PORT"; then
        local ours=""
        [[ -d "$KAFKA_DATA_DIR" ]] && ours="$(broker_pid)"
        if [[ -n "$ours" ]]; then
            log "this clone's broker (pid $ours, data in $KAFKA_DATA_DIR) already listens on $KAFKA_HOST:$KAFKA_PORT, nothing to do"
        else
            log "WARNING: $KAFKA_HOST:$KAFKA_PORT is taken by $(listener "$KAFKA_PORT"), not by this clone's broker" \
                "($KAFKA_DATA_DIR/kafka.pid): runs will use that broker. For one of this clone's own, pick free" \
                "ports: KAFKA_PORT=9094 KAFKA_CONTROLLER_PORT=9095 make kafka-up, and KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9094"
        fi
        return 0
    fi
    command -v "$JAVA" >/dev/null 2>&1 || { err "java not found (Java 17+ needed)"; exit 1; }
    mkdir -p "$KAFKA_DATA_DIR"
    # Serialize concurrent `up`/`down` runs on the same data dir.
    exec 9>"$LOCK_FILE"
    flock 9

    PROBE=port+log
    if have_confluent_kafka; then PROBE=metadata; fi

    local pid
    pid="$(broker_pid)"
    if [[ -n "$pid" ]]; then
        # e.g. a previous `up` was interrupted while the broker was starting
        log "broker already started (pid $pid), waiting for it to answer"
    else
        if port_open "$KAFKA_CONTROLLER_PORT"; then
            err "controller port $KAFKA_HOST:$KAFKA_CONTROLLER_PORT is taken by another process; set KAFKA_CONTROLLER_PORT"
            exit 1
        fi
        ensure_jars
        write_config
        ensure_formatted
        start_broker
        pid="$(cat "$PID_FILE")"
    fi

    local deadline
    deadline=$(($(date +%s) + KAFKA_START_TIMEOUT))
    until broker_ready; do
        if ! proc_alive "$pid"; then
            # (setsid may have forked: look the broker up by its command line)
            local again
            again="$(broker_pid)"
            if [[ -z "$again" ]]; then
                err "broker process exited during startup"
                rm -f "$PID_FILE"
                show_logs
                exit 1
            fi
            pid="$again"
        fi
        if (($(date +%s) >= deadline)); then
            err "broker did not answer on $KAFKA_HOST:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s; stopping it"
            show_logs
            stop_pid "$pid" || true
            rm -f "$PID_FILE"
            exit 1
        fi
        sleep 0.5
    done
    log "Kafka $(cat "$KAFKA_LIBS_DIR/.kafka-version" 2>/dev/null || echo "$KAFKA_VERSION") up on $KAFKA_HOST:$KAFKA_PORT (pid $pid, probe: $PROBE) in $(elapsed "$t0")s; data+logs: $KAFKA_DATA_DIR"
}

cmd_down() {
    local purge=0 arg
    for arg in "$@"; do
        case "$arg" in
            --purge) purge=1 ;;
            *) err "unknown option for down: $arg"; exit 2 ;;
        esac
    done
    if [[ -d "$KAFKA_DATA_DIR" ]]; then
        exec 9>"$LOCK_FILE"
        flock 9
        local pid
        pid="$(broker_pid)"
        if [[ -n "$pid" ]]; then
            local t0
            t0="$(now)"
            stop_pid "$pid"
            rm -f "$PID_FILE"
            log "broker (pid $pid) stopped in $(elapsed "$t0")s"
        else
            log "broker not running"
            if port_open "$KAFKA_PORT"; then
                log "note: something else (not started by this script) listens on $KAFKA_HOST:$KAFKA_PORT; left alone"
            fi
        fi
        if ((purge)); then
            rm -rf "$KAFKA_DATA_DIR"
            log "purged $KAFKA_DATA_DIR"
        fi
    else
        log "broker not running (no data dir $KAFKA_DATA_DIR)"
    fi
}

# SIGKILL, as a crash would: no controlled shutdown, the data dir is kept and the
# next `up` runs the broker's log recovery on it.
cmd_kill() {
    local pid=""
    if [[ -d "$KAFKA_DATA_DIR" ]]; then
        exec 9>"$LOCK_FILE"
        flock 9
        pid="$(broker_pid)"
    fi
    if [[ -z "$pid" ]]; then
        log "broker not running"
        return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        is_our_broker "$pid" || break
        sleep 0.1
    done
    if is_our_broker "$pid"; then
        err "could not kill broker pid $pid"
        return 1
    fi
    # A killed JVM drops its command line before the kernel closes its sockets: wait for
    # the port too, so that an `up` right after does not find the dying broker listening.
    for ((i = 0; i < 100; i++)); do
        port_open "$KAFKA_PORT" || break
        sleep 0.1
    done
    rm -f "$PID_FILE"
    log "broker (pid $pid) killed (SIGKILL); data kept in $KAFKA_DATA_DIR"
}

cmd_status() {
    local pid=""
    [[ -d "$KAFKA_DATA_DIR" ]] && pid="$(broker_pid)"
    if port_open "$KAFKA_PORT"; then
        if [[ -n "$pid" ]]; then
            log "running (pid $pid) on $KAFKA_HOST:$KAFKA_PORT"
        else
            log "running on $KAFKA_HOST:$KAFKA_PORT (not started by this script)"
        fi
        return 0
    fi
    if [[ -n "$pid" ]]; then
        log "not running: broker process $pid exists but $KAFKA_HOST:$KAFKA_PORT does not answer (starting?)"
    else
        log "not running"
    fi
    return 1
}

usage() {
    echo "usage: $0 {up|down [--purge]|kill|status}" >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
sub="$1"
shift
case "$sub" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    kill) cmd_kill "$@" ;;
    status) cmd_status "$@" ;;
    *) usage ;;
esac
