#!/usr/bin/env bash
# Helm, pinned, built from its Go module into .tools/bin (like uv in the Makefile):
#   bash scripts/helm.sh install   -> .tools/bin/helm (once; needs go, e.g. /usr/local/go/bin/go)
#   bash scripts/helm.sh path      -> prints the helm to use (installing it when missing)
# HELM=/path/to/helm uses that one instead.
set -euo pipefail
cd "$(dirname "$0")/.."
HELM_VERSION=v4.3.2
BIN="$PWD/.tools/bin"
want="$BIN/helm"

installed() { [ -x "$want" ] && "$want" version --short 2>/dev/null | grep -q "^${HELM_VERSION}"; }

install() {
  installed && return 0
  GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
  if [ ! -x "$GO" ]; then
    echo "helm.sh: go not found (set GO=/path/to/go): needed to build helm $HELM_VERSION" >&2
    exit 1
  fi
  mkdir -p "$BIN"
  echo "helm.sh: building helm $HELM_VERSION into $BIN (go install, once)" >&2
  # the version as Helm's own release build stamps it (go install alone says "v4.3")
  GOBIN="$BIN" "$GO" install -trimpath -ldflags "-X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}" \
    "helm.sh/helm/v4/cmd/helm@${HELM_VERSION}"
  installed || { echo "helm.sh: $want is not helm $HELM_VERSION after go install" >&2; exit 1; }
}

case "${1:-path}" in
  install) install ;;
  path)
    if [ -n "${HELM:-}" ]; then echo "$HELM"; else install >&2; echo "$want"; fi ;;
  *) echo "usage: scripts/helm.sh install|path" >&2; exit 2 ;;
esac
