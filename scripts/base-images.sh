#!/usr/bin/env bash
# Stand-ins for the official base images, built from Debian packages, for machines that reach Debian's
# package registry but no image registry (ours): only `make compose-test` uses them.
#   sketch-search-standin/debian:bookworm     debootstrap --variant=minbase, then `docker import`
#   sketch-search-standin/python:3.11-bookworm    Debian's python3 + venv          (PYTHON_IMAGE)
#   sketch-search-standin/postgres:15-bookworm    Debian's PostgreSQL + entrypoint (POSTGRES_IMAGE)
# The debootstrapped image is kept once built (--rebuild makes it again). Prints the .env lines that
# select the stand-ins.
set -euo pipefail
cd "$(dirname "$0")/stand-ins"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN=sketch-search-standin/debian:bookworm
PYTHON=sketch-search-standin/python:3.11-bookworm
POSTGRES=sketch-search-standin/postgres:15-bookworm
log=$(mktemp)
rebuild=false
[ "${1:-}" = "--rebuild" ] && rebuild=true

have() { ! $rebuild && docker image inspect "$1" >/dev/null 2>&1; }

if ! have "$DEBIAN"; then
  command -v debootstrap >/dev/null || {
    [ "$(id -u)" -eq 0 ] || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  echo "debootstrap bookworm (minbase) from $MIRROR" >&2
  debootstrap --variant=minbase bookworm "$root" "$MIRROR" >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - "$DEBIAN" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi
# Always built: the layer cache makes an unchanged one instant, and a changed entrypoint is picked up.
build() { # build IMAGE NAME: stand-ins/NAME.Dockerfile on the Debian image
  docker build -q -f "$2.Dockerfile" --build-arg DEBIAN_IMAGE="$DEBIAN" -t "$1" . >/dev/null 2>"$log" ||
    { cat "$log" >&2; exit 1; }
}
build "$PYTHON" python
build "$POSTGRES" postgres
rm -f "$log"
echo "PYTHON_IMAGE=$PYTHON"
echo "POSTGRES_IMAGE=$POSTGRES"
