#!/bin/sh
# The official redis image's entrypoint, reduced to what docker-compose.yml uses
# (https://github.com/docker-library/redis/blob/master/docker-entrypoint.sh, described at
# https://hub.docker.com/_/redis):
# - started as root, it owns the working directory (/data) to the redis user and re-runs
#   itself as that user;
# - redis-server runs with protected mode off: the image's port is reachable only where
#   compose publishes it, and other containers must be able to connect without a password.
set -eu

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --clear-groups -- "$0" "$@"
fi

if [ "$1" = redis-server ]; then
    shift
    exec redis-server --protected-mode no "$@"
fi
exec "$@"
