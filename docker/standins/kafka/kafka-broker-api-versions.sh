#!/bin/sh
# Same name and --bootstrap-server flag as Kafka's tool, for the compose healthcheck.
set -eu
[ "${1:-}" = --bootstrap-server ] || { echo "usage: $0 --bootstrap-server HOST:PORT" >&2; exit 2; }
exec python3 /opt/kafka/bin/api_versions.py "$2"
