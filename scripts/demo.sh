#!/usr/bin/env bash
# Run the research-agent demo on the embedded default (SQLite, replay cassette; no services, no key).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/wflo demo "$@"
