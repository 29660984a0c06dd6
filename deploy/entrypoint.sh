#!/bin/sh
# The container's entrypoint (Dockerfile), the one the Helm chart's pods run
# (deploy/helm/streamscore) and the local rehearsal runs (tests/deploy/test_rehearsal.py):
#
#   entrypoint.sh flow [MODULE:FLOW]     a Bytewax process: python -m bytewax.run MODULE:FLOW
#                                        (default $DATAFLOW, else dataflows.fraud:flow)
#   entrypoint.sh init-recovery --partitions N --initial-processes P
#                                        this process's recovery partitions, once (dataflows/cluster.py)
#   entrypoint.sh serve [--workers N ...] the scoring endpoint (streamscore serve)
#   entrypoint.sh COMMAND [ARGS]         anything else, e.g. streamscore log land, feast apply
#
# Where a process sits in its cluster comes from Bytewax's own variables, read by
# bytewax.run itself: BYTEWAX_HOSTFILE_PATH (one host:port per process), the process index
# BYTEWAX_PROCESS_ID or the pod ordinal (BYTEWAX_POD_NAME minus "BYTEWAX_STATEFULSET_NAME-"),
# BYTEWAX_WORKERS_PER_PROCESS, BYTEWAX_RECOVERY_DIRECTORY, BYTEWAX_SNAPSHOT_INTERVAL and
# BYTEWAX_RECOVERY_BACKUP_INTERVAL. Settings: the file STREAMSCORE_CONFIG names, and STREAMSCORE_*.
# PYTHON: the interpreter (default: python on PATH).
set -eu
PYTHON="${PYTHON:-python}"
command="${1:-flow}"
[ "$#" -gt 0 ] && shift
case "$command" in
  flow)
    exec "$PYTHON" -m bytewax.run "${1:-${DATAFLOW:-dataflows.fraud:flow}}"
    ;;
  init-recovery)
    exec "$PYTHON" -m dataflows.cluster init-recovery "$@"
    ;;
  serve)
    exec "$PYTHON" -m cli.main serve "$@"
    ;;
  *)
    exec "$command" "$@"
    ;;
esac
