#!/usr/bin/env bash
# Print the path of a working Python interpreter for a version (e.g. 3.12), or fail.
# Looks on PATH (python3.12), then in pyenv's versions (whose shims refuse versions
# that are installed but not selected).
set -euo pipefail
version="${1:?usage: find-python.sh 3.12}"
version="${version#python}"
if command -v "python$version" >/dev/null 2>&1 && "python$version" -c '' >/dev/null 2>&1; then
  command -v "python$version"
  exit 0
fi
root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
for candidate in "$root"/versions/"$version".*/bin/python"$version"; do
  if [[ -x "$candidate" ]] && "$candidate" -c '' >/dev/null 2>&1; then
    echo "$candidate"
    exit 0
  fi
done
echo "find-python.sh: no working python$version (not on PATH, not in $root/versions)" >&2
exit 1
