#!/usr/bin/env bash
# Run every bench/bench_*.py and collect their results into bench/RESULTS.md and README.md.
#
# The result format every bench follows (bench/result.py prints it): one line per measured figure,
#
#     RESULT | path | wflo | baseline | ratio | goal | met
#
#   path      what is measured, e.g. "Kafka sink, one batch"
#   wflo      wflo's figure with its unit, e.g. "97,586 ev/s" or "3.9 us"
#   baseline  the fast baseline measured alongside in the same run, with its unit (or "-")
#   ratio     wflo / baseline, e.g. "0.96x" (or "-")
#   goal      the target in words, e.g. ">= 0.9x raw" or "<= 2 us, identical results"
#   met       yes or no
#
# Fields never contain '|'. Anything else a bench prints is kept in bench/logs/<bench>.log. A bench
# that exits non-zero or prints no RESULT line is listed as such, so nothing fails silently.
# A new bench needs no registration here: name it bench/bench_<what>.py and print RESULT lines.
#
#     bench/run_all.sh                  # every bench
#     bench/run_all.sh cli pricing      # only bench_cli.py and bench_pricing.py (other rows kept)
set -uo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
LOGS=bench/logs
mkdir -p "$LOGS"

if [ $# -gt 0 ]; then
    scripts=(); for name in "$@"; do scripts+=("bench/bench_${name}.py"); done
else
    scripts=(bench/bench_*.py)
fi

machine="$(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), \
$(awk '/MemTotal/ {printf "%.0f GB RAM", $2 / 1048576}' /proc/meminfo), $(uname -sr), \
$("$PYTHON" -c 'import platform; print("Python", platform.python_version())')"
rows=""
for script in "${scripts[@]}"; do
    name=$(basename "$script" .py)
    echo "== $name" >&2
    started=$(date +%s)
    "$PYTHON" "$script" > "$LOGS/$name.log" 2>&1
    code=$?
    took=$(( $(date +%s) - started ))
    found=$(grep '^RESULT |' "$LOGS/$name.log" | sed 's/^RESULT //')
    if [ -n "$found" ]; then
        rows+="$(echo "$found" | sed "s/\$/ | \`$name\` |/")"$'\n'
    fi
    if [ "$code" -ne 0 ] || [ -z "$found" ]; then
        rows+="| $name | exit $code$([ -z "$found" ] && echo ', no RESULT line') | - | - | see bench/logs/$name.log | no | \`$name\` |"$'\n'
    fi
    echo "   exit $code in ${took}s, $(echo -n "$found" | grep -c '^') result(s)" >&2
done

# A partial run (names given) keeps the other benches' rows from the last RESULTS.md.
if [ $# -gt 0 ] && [ -f bench/RESULTS.md ]; then
    rerun="$(for script in "${scripts[@]}"; do echo "\`$(basename "$script" .py)\`"; done)"
    kept=$(grep '^| ' bench/RESULTS.md | grep -v '^| path |' | grep -vF "$rerun" || true)
    [ -n "$kept" ] && rows="$kept"$'\n'"$rows"
fi
table="| path | wflo | baseline | ratio | goal | met | bench |
|---|---|---|---|---|---|---|
${rows%$'\n'}"
stamp="$(date -u '+%Y-%m-%d %H:%M UTC'), $machine"
[ $# -gt 0 ] && stamp+="; only $* re-run then, the other rows are from the run before"
{
    echo "# Benchmark results"
    echo
    echo "Measured $stamp, by \`bench/run_all.sh\`. Each bench runs wflo and its baseline in the same"
    echo "run, interleaved; only the ratios compare across machines."
    echo
    echo "$table"
} > bench/RESULTS.md

# The README's Performance section shows the same table between these markers.
if grep -q '<!-- bench-results:start -->' README.md; then
    block="_Measured $stamp._"$'\n\n'"$table"
    BLOCK="$block" "$PYTHON" - <<'PY'
import os, re, pathlib
readme = pathlib.Path("README.md")
text = readme.read_text()
text = re.sub(r"(<!-- bench-results:start -->).*?(<!-- bench-results:end -->)",
              lambda m: m.group(1) + "\n" + os.environ["BLOCK"] + "\n" + m.group(2), text, flags=re.S)
readme.write_text(text)
PY
fi
cat bench/RESULTS.md
