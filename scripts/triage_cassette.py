"""Canned answers for the triage agent's cassette entries (called by make_demo_cassette.py).

The requests come from the pipeline's own prompt builders, so replay matches what the assets send.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from wflo_dagster.pipelines import triage_agent as ta

VERDICTS = {
    "T1041": ("billing", "P2", "Customer was double-charged for Pro and wants one charge refunded."),
    "T1042": ("outage", "P1", "Production /v1/orders returns HTTP 500 since 09:10 UTC; checkout is down."),
    "T1043": ("how-to", "P3", "Asks how to export all project data as CSV."),
    "T1044": ("auth", "P1", "SSO users stuck in a login loop after an Okta configuration change."),
    "T1045": ("feature", "P3", "Requests a dark theme for the dashboard."),
    "T1046": ("billing", "P3", "Needs invoice INV-2291 reissued with the company's VAT number."),
}
DIGEST = (
    "Urgent: T1042 (orders API 500s, checkout down) and T1044 (SSO login loop) are P1; page on-call "
    "engineering for T1042 and the identity team for T1044 now.\n"
    "Billing should refund the double charge (T1041) and reissue INV-2291 with the VAT number (T1046) "
    "today.\nCan wait: the CSV export how-to (T1043, link the docs) and the dark-mode request (T1045, "
    "to the backlog)."
)


def record(call: Callable[..., Any], openai_body: Callable[..., dict[str, Any]]) -> None:
    """Make every call the triage agent makes for one day's inbox, answered with the canned verdicts."""
    triaged = []
    for ticket in ta.inbox_for("any day"):
        category, priority, summary = VERDICTS[ticket["id"]]
        answer = json.dumps({"category": category, "priority": priority, "summary": summary})
        reply = call(ta.TRIAGE_MODEL, ta.triage_messages(ticket), lambda r, a=answer: openai_body(r, a),
                     max_tokens=120, temperature=0.0)
        triaged.append(ta.parse_triage(ticket, reply.text))
    triaged.sort(key=lambda v: (v["priority"], v["id"]))
    call(ta.TRIAGE_MODEL, ta.digest_messages(triaged), lambda r: openai_body(r, DIGEST),
         max_tokens=200, temperature=0.0)
