#!/usr/bin/env bash
# Run the whole suite. Starts a local Kafka broker, Redis and a schema registry when none is
# reachable (and stops what it started), and installs chromium and the pinned Helm
# (scripts/helm.sh) when missing, so it passes on a clean machine.
set -euo pipefail
cd "$(dirname "$0")/.."
# VENV: the environment to test (make test-latest and test-pythons pass their own).
PY="${VENV:-.venv}/bin/python"

export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
export REDIS_CONNECTION_STRING="${REDIS_CONNECTION_STRING:-127.0.0.1:6379}"
export SCHEMA_REGISTRY_URL="${SCHEMA_REGISTRY_URL:-$(bash scripts/registry.sh url)}"

reachable() {  # host:port
  "$PY" - "$1" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
try:
    socket.create_connection((host, int(port)), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

started=()
cleanup() {
  for svc in "${started[@]:-}"; do
    [ -n "$svc" ] && bash "scripts/$svc.sh" down || true
  done
}
trap cleanup EXIT

if ! reachable "${KAFKA_BOOTSTRAP_SERVERS%%,*}"; then
  PYTHON="$PY" bash scripts/kafka.sh up  # its admin client needs confluent_kafka
  started+=(kafka)
fi
if ! reachable "$REDIS_CONNECTION_STRING"; then
  bash scripts/redis.sh up
  started+=(redis)
fi
# The schema registry of the Avro and Protobuf tests (tests/e2e/test_registry.py).
if ! curl -sf -o /dev/null --max-time 3 "$SCHEMA_REGISTRY_URL/subjects"; then
  bash scripts/registry.sh up
  started+=(registry)
fi

# The browser test of the HTML monitoring report needs a headless chromium (Debian's
# package); without apt-get, root or sudo the run stops here, saying why.
if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  bash scripts/chromium.sh install || { echo "test.sh: chromium could not be installed (tests/monitoring/test_html_report.py needs it; set CHROMIUM=/path/to/chromium)" >&2; exit 1; }
fi

# Helm, pinned, for the chart's tests (tests/deploy): built into .tools/bin once (needs go).
bash scripts/helm.sh install

# The numba kernels, compiled once into their cache (__pycache__ next to each module), so
# the flow processes of both workers load them instead of each compiling them (tests/kernels.py).
"$PY" -m tests.kernels

set +e
# Two pytest workers (pytest-xdist; TEST_WORKERS to change): many tests wait on processes,
# brokers and servers, so two halve the wall time on two cores. Every test uses its own
# topics, ports and folders, so they do not share anything but the broker and Redis.
# worksteal: a worker that runs out of tests takes queued ones from the other, so the long
# tests do not leave one worker busy at the end while the other waits. (Any order is fine:
# tests/conftest.py turns off structlog's logger cache, so capture_logs() sees every logger
# whichever earlier test of the worker reconfigured logging: tests/settings/test_config.py.)
# --durations: the 30 slowest tests, printed at the end (docs/tests.md keeps the list).
# The suite's Kafka topics are deleted when it ends (tests/topics.py); only here, where one
# suite runs against the broker.
TESTS_DELETE_KAFKA_TOPICS=1 "$PY" -m pytest -q -n "${TEST_WORKERS:-2}" --dist worksteal --durations=30 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
