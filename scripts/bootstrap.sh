#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install wflo into it; EXTRAS=dev adds the test tools.
# Sourced by scripts/demo.sh and scripts/test.sh; idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "wflo needs Python >= 3.11 (found $("$PYTHON" --version)); set PYTHON=python3.11" >&2; exit 1; }
  "$PYTHON" -m venv .venv
fi
spec="."; [ -n "${EXTRAS:-}" ] && spec=".[${EXTRAS}]"
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-12)-${EXTRAS:-base}"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q -e "$spec" 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import wflo_core, wflo_dagster" && touch "$stamp"
fi
# Byte-compile wflo itself (an editable install is never compiled, and PYTHONDONTWRITEBYTECODE keeps
# Python from caching it): otherwise every `wflo` command compiles ~170 modules from source first.
# Quick when nothing changed; a stale file is recompiled here, and Python never trusts a stale one.
.venv/bin/python -m compileall -q wflo_core wflo_dagster >/dev/null
