#!/usr/bin/env bash
# Installs the given Debian packages that are not installed yet.
# Usage: scripts/deps.sh pkg...   (make deps passes the list)
# Does nothing (and needs no network) when everything is present; otherwise
# runs apt-get update once, then apt-get install. Needs root or sudo.
set -euo pipefail

missing=()
for pkg in "$@"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "deps: all ${#} packages present"
  exit 0
fi

echo "deps: installing ${missing[*]}"
if ! command -v apt-get >/dev/null; then
  echo "deps: apt-get not found; install these by hand: ${missing[*]}" >&2
  exit 1
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "deps: not root and no sudo; install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q "${missing[@]}"
