#!/usr/bin/env bash
# System packages the tests need: a PostgreSQL server (the tests start their own on loopback) and
# Chromium for the web page's end-to-end tests (Playwright drives Debian's build; it cannot download one).
# Installs with apt-get when run as root and the package is missing; otherwise says what to install.
set -euo pipefail

need=()
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
if [ ! -x /usr/bin/chromium ]; then
  need+=(chromium)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "please install these system packages for the tests: ${need[*]}" >&2
  exit 1
fi
