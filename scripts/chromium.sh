#!/usr/bin/env bash
# A headless Chromium for the browser test of the HTML monitoring report
# (tests/monitoring/test_html_report.py drives it over the DevTools protocol).
#
#   scripts/chromium.sh install   # idempotent; installs Debian's chromium via apt if missing
#   scripts/chromium.sh status    # exit 0 and print the version if chromium is on PATH, else 1
set -euo pipefail

log() { printf 'chromium.sh: %s\n' "$*"; }
err() { printf 'chromium.sh: %s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Debian's launcher script prints a harmless shell warning on some machines: keep stdout only.
chromium_version() { chromium --version 2>/dev/null | head -n1; }

ensure_installed() {
    command -v chromium >/dev/null 2>&1 && return 0
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || { err "chromium missing and not root (no sudo): apt-get install chromium"; exit 1; }
        sudo=(sudo -n)
    fi
    command -v apt-get >/dev/null 2>&1 || { err "chromium not found and apt-get unavailable; install chromium (or set CHROMIUM)"; exit 1; }
    local t0
    t0="$(now)"
    log "chromium not found: installing it with apt-get..."
    if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; } \
        >"/tmp/chromium-apt-$$.log" 2>&1; then
        cat "/tmp/chromium-apt-$$.log" >&2
        rm -f "/tmp/chromium-apt-$$.log"
        err "apt-get install chromium failed"
        exit 1
    fi
    rm -f "/tmp/chromium-apt-$$.log"
    log "installed $(chromium_version) in $(elapsed "$t0")s"
}

case "${1:-}" in
    install) ensure_installed ;;
    status)
        if command -v chromium >/dev/null 2>&1; then chromium_version; else log "not installed"; exit 1; fi ;;
    *) echo "usage: $0 {install|status}" >&2; exit 2 ;;
esac
