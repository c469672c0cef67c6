#!/bin/sh
# First start: a cluster with the `sentiment` database and user (password from
# POSTGRES_PASSWORD), reachable from the compose network; then PostgreSQL in the foreground.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pw"
  initdb --username=postgres --auth-local=trust --auth-host=scram-sha-256 --pwfile="$pw" -D "$PGDATA"
  rm -f "$pw"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
  psql -v ON_ERROR_STOP=1 --username=postgres -c "CREATE USER sentiment PASSWORD '$POSTGRES_PASSWORD'" \
       -c "CREATE DATABASE sentiment OWNER sentiment"
  pg_ctl -D "$PGDATA" -m fast -w stop
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
