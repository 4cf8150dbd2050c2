#!/usr/bin/env bash
# Runs once, when the postgres container initialises an empty data directory: one role and
# one database per service, each database owned by its role, so that a service can migrate its
# own schema and cannot touch another service's data (DESIGN.md: no shared databases).
# FISSION_DATABASES and FISSION_DATABASE_PASSWORD come from docker-compose.yml.
set -euo pipefail

: "${FISSION_DATABASES:?space-separated service names}"
: "${FISSION_DATABASE_PASSWORD:?password for every service role (local stack only)}"

for name in $FISSION_DATABASES; do
  echo "postgres-init: role and database '$name'"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
       -v name="$name" -v password="$FISSION_DATABASE_PASSWORD" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
done
