#!/usr/bin/env bash
# Run the research-agent demo on the embedded default (SQLite, replay cassette; no services, no key).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# The demo runs the agent's code in the process sandbox, which uses bubblewrap.
if ! command -v bwrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null
  else
    echo "the demo's process sandbox needs bubblewrap: install it (e.g. sudo apt-get install bubblewrap)" >&2
    exit 1
  fi
fi
exec .venv/bin/wflo demo "$@"
