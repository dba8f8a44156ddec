#!/usr/bin/env bash
# The full test suite. The harness installs and starts Postgres, Redis, a Kafka-protocol broker and
# dockerd itself (apt/pip, free loopback ports) and fails loudly if one cannot start.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=dev bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
