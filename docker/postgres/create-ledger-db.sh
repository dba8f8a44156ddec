#!/bin/sh
# Runs once, when the postgres volume is first initialised: the wflo ledger gets its own database
# next to Dagster's (both have a table named "runs").
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE \"$LEDGER_POSTGRES_DB\""
