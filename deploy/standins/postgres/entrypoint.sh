#!/bin/bash
# The official postgres image's entrypoint, reduced to what docker-compose.yml uses
# (https://hub.docker.com/_/postgres, "Environment Variables"; the script it describes:
# https://github.com/docker-library/postgres/blob/master/docker-entrypoint.sh):
# - started as root, it owns $PGDATA to the postgres user and re-runs itself as that user;
# - on an empty $PGDATA it runs initdb with POSTGRES_USER (default postgres) as superuser
#   with POSTGRES_PASSWORD (required), creates POSTGRES_DB (default: the user's name),
#   trusts local socket connections and asks every TCP client for a scram-sha-256 password;
# - it then runs the command ("postgres"), listening on every address.
set -euo pipefail

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "Database is uninitialized and superuser password is not specified." >&2
        echo "You must specify POSTGRES_PASSWORD to a non-empty value." >&2
        exit 1
    fi
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    if [ "$db" != postgres ]; then
        createdb --username="$user" "$db"
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop
    echo "PostgreSQL init process complete; ready for start up."
fi

if [ "$1" = postgres ]; then
    shift
    exec postgres -c listen_addresses='*' "$@"
fi
exec "$@"
