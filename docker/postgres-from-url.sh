#!/bin/sh
# Entry point of the PostgreSQL container (docker-compose.yml): the database's
# user, password and name are taken from DATABASE_URL, the setting the system
# connects with, so the two can never disagree. Then the image's own entry
# point runs, which creates them on the first start of an empty volume.
#
# DATABASE_URL=postgresql://USER:PASSWORD@HOST:PORT/DATABASE, with a password
# that needs no URL escaping (letters and digits: `openssl rand -hex 24`).
set -eu

url=${DATABASE_URL:?DATABASE_URL must be set (docs/deploy.md)}
case $url in
  postgresql://* | postgres://* | postgresql+psycopg://*) ;;
  *) echo "DATABASE_URL is not a PostgreSQL URL" >&2; exit 1 ;;
esac
rest=${url#*://}              # USER:PASSWORD@HOST:PORT/DATABASE?OPTIONS
credentials=${rest%%@*}
case $rest in
  *@*) ;;
  *) echo "DATABASE_URL names no user and password" >&2; exit 1 ;;
esac
user=${credentials%%:*}
password=${credentials#*:}
location=${rest#*@}
database=${location#*/}
database=${database%%\?*}
if [ -z "$user" ] || [ -z "$password" ] || [ "$password" = "$credentials" ]; then
  echo "DATABASE_URL must name a user and a password" >&2; exit 1
fi
if [ -z "$database" ] || [ "$database" = "$location" ]; then
  echo "DATABASE_URL must name a database" >&2; exit 1
fi
case $user$password$database in
  *%*) echo "DATABASE_URL: use a user, password and database that need no %-escaping" >&2; exit 1 ;;
esac

export POSTGRES_USER="$user" POSTGRES_PASSWORD="$password" POSTGRES_DB="$database"
exec docker-entrypoint.sh "$@"
