#!/bin/sh
# The official postgres image's entrypoint, cut down: on an empty PGDATA, create the cluster with
# POSTGRES_USER as its superuser (password POSTGRES_PASSWORD, scram-sha-256 over the network) and the
# database POSTGRES_DB; then run the server in the foreground on all addresses.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin | sort -V | tail -n 1)
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  "$BIN/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    "$BIN/pg_ctl" -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
    "$BIN/psql" -v ON_ERROR_STOP=1 -v db="$POSTGRES_DB" -U "$POSTGRES_USER" -d postgres -q <<'SQL'
CREATE DATABASE :"db";
SQL
    "$BIN/pg_ctl" -D "$PGDATA" -w -m fast stop >/dev/null
  fi
  echo "database $POSTGRES_DB created for $POSTGRES_USER"
fi
exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*'
