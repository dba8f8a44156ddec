"""The one line every bench prints per figure, which ``bench/run_all.sh`` collects into RESULTS.md.

    RESULT | path | wflo | baseline | ratio | goal | met

``path`` names what is measured, ``wflo`` and ``baseline`` are figures with their unit, ``ratio`` is
wflo / baseline as ``0.42x`` (or ``-`` without a baseline), ``goal`` is the issue's target in words,
``met`` is ``yes`` or ``no``. Fields must not contain ``|``.
"""

from __future__ import annotations


def result(path: str, wflo: str, baseline: str, ratio: float | None, goal: str, met: bool) -> str:
    """Print and return one RESULT line."""
    fields = [path, wflo, baseline, "-" if ratio is None else f"{ratio:.2f}x", goal, "yes" if met else "no"]
    if any("|" in f for f in fields):
        raise ValueError(f"a RESULT field contains '|': {fields}")
    line = "RESULT | " + " | ".join(fields)
    print(line, flush=True)
    return line
