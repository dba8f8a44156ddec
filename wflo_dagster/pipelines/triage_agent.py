"""Example: a fan-out triage agent. A day's support inbox → one LLM call per ticket (dynamic fan-out,
one step per ticket, in parallel) → a digest for the support lead. Partitioned by day.

Every ticket's call is held against the same run budget (the job's ``wflo/budget_usd`` tag), so however
wide the fan-out, the run cannot spend past it. Runs offline on the shipped replay cassette; the prompt
builders are plain functions so ``scripts/make_demo_cassette.py`` can regenerate its entries.
"""

import json
from collections import Counter
from typing import Any

import dagster as dg

from wflo_core.calls import Message
from wflo_core.keys import policy_tags, tag
from wflo_core.steps.totals import (
    CACHE_HITS_KEY,
    CALLS_KEY,
    COST_KEY,
    INPUT_TOKENS_KEY,
    OUTPUT_TOKENS_KEY,
    SAVED_KEY,
)
from wflo_dagster.decorators import llm_asset, llm_op
from wflo_dagster.resources.llm import LLMResource

GROUP = "triage_agent"
POLICY = policy_tags(run_budget_usd="0.05", team="support", agent="triage_agent")
"""Run budget and attribution, on the assets themselves so they hold however a run is launched."""
TRIAGE_MODEL = ("openai", "gpt-4o-mini")
DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1)
"""One partition per UTC day, today included (``end_offset=1``) so today's inbox can be triaged."""
ITEMS_KEY = "wflo/items"

SAMPLE_INBOX: tuple[dict[str, str], ...] = (
    {
        "id": "T1041",
        "subject": "Charged twice this month",
        "body": "My card was billed twice for the Pro plan on the 3rd. Please refund one charge.",
    },
    {
        "id": "T1042",
        "subject": "Production API returns 500",
        "body": "Since 09:10 UTC every call to /v1/orders fails with HTTP 500. Our checkout is down.",
    },
    {
        "id": "T1043",
        "subject": "How do I export my data?",
        "body": "Is there a way to download all our project data as CSV?",
    },
    {
        "id": "T1044",
        "subject": "SSO login loop",
        "body": "After the Okta change, users are redirected back to the login page forever.",
    },
    {
        "id": "T1045",
        "subject": "Feature request: dark mode",
        "body": "Would love a dark theme for the dashboard, the white is hard on the eyes at night.",
    },
    {
        "id": "T1046",
        "subject": "Invoice needs our VAT number",
        "body": "Please reissue invoice INV-2291 with our VAT number DE123456789.",
    },
)


def inbox_for(day: str) -> list[dict[str, str]]:
    """The tickets of one day. The example serves the same sample inbox every day; a real deployment
    reads the day's tickets from its ticket system here."""
    return [dict(ticket) for ticket in SAMPLE_INBOX]


def triage_messages(ticket: dict[str, str]) -> list[Message]:
    return [
        Message(
            "system",
            "You triage customer support tickets. Reply with JSON only: "
            '{"category": billing|outage|how-to|auth|feature, "priority": P1|P2|P3, '
            '"summary": one short sentence}.',
        ),
        Message("user", f"Ticket {ticket['id']}\nSubject: {ticket['subject']}\n\n{ticket['body']}"),
    ]


def digest_messages(triaged: list[dict[str, Any]]) -> list[Message]:
    lines = "\n".join(f"- {t['id']} [{t['priority']}] {t['category']}: {t['summary']}" for t in triaged)
    return [
        Message("system", "You brief a support lead. Be brief and concrete."),
        Message(
            "user",
            f"Today's triaged tickets:\n{lines}\n\nWrite a three-line digest: what is "
            "urgent, who should pick it up, and what can wait.",
        ),
    ]


def parse_triage(ticket: dict[str, str], text: str) -> dict[str, Any]:
    """The model's JSON verdict, or a conservative P2 'needs a human' when it answered something else."""
    try:
        verdict = json.loads(text)
    except json.JSONDecodeError:
        verdict = {"category": "unknown", "priority": "P2", "summary": "model reply was not JSON; needs a human"}
    return {
        "id": ticket["id"],
        "subject": ticket["subject"],
        "category": str(verdict.get("category")),
        "priority": str(verdict.get("priority")),
        "summary": str(verdict.get("summary")),
    }


@dg.asset(
    group_name=GROUP,
    partitions_def=DAILY,
    kinds={"python"},
    description="The day's support tickets (the batch the agent fans out over).",
)
def triage_inbox(context: dg.AssetExecutionContext) -> list[dict[str, str]]:
    tickets = inbox_for(context.partition_key)
    context.add_output_metadata({ITEMS_KEY: len(tickets)})
    return tickets


@dg.op(out=dg.DynamicOut(dict), description="One dynamic output per ticket: the fan-out.")
def split_tickets(tickets: list[dict[str, str]]):  # type: ignore[no-untyped-def]
    for ticket in tickets:
        yield dg.DynamicOutput(ticket, mapping_key=ticket["id"])


@llm_op(tags={**POLICY, tag("agent"): "ticket_triager"}, description="One LLM call classifying one ticket.")
def triage_ticket(context: dg.OpExecutionContext, ticket: dict, llm: LLMResource) -> dict:
    provider, model = TRIAGE_MODEL
    reply = llm.complete(
        context, messages=triage_messages(ticket), provider=provider, model=model, max_tokens=120, temperature=0.0
    )
    return parse_triage(ticket, reply.text)


@dg.op(description="Fan-in: every verdict, with the fan-out's cost totals from the ledger.")
def collect_triage(context: dg.OpExecutionContext, verdicts: list[dict], llm: LLMResource) -> list[dict]:
    steps = [r for r in llm.run_costs(context, by="step") if "triage_ticket[" in r.key]
    priorities = Counter(v["priority"] for v in verdicts)
    context.add_output_metadata(
        {
            COST_KEY: float(sum(r.cost_usd for r in steps)),
            CALLS_KEY: sum(r.calls for r in steps),
            CACHE_HITS_KEY: sum(r.cache_hits for r in steps),
            SAVED_KEY: float(sum(r.saved_usd for r in steps)),
            INPUT_TOKENS_KEY: sum(r.input_tokens for r in steps),
            OUTPUT_TOKENS_KEY: sum(r.output_tokens for r in steps),
            ITEMS_KEY: len(verdicts),
            **{f"wflo/priority/{p}": n for p, n in sorted(priorities.items())},
        }
    )
    return sorted(verdicts, key=lambda v: (v["priority"], v["id"]))


@dg.graph_asset(
    group_name=GROUP,
    partitions_def=DAILY,
    kinds={"openai"},
    description="Every ticket classified by its own LLM step (dynamic fan-out, one run budget).",
)
def ticket_triage(triage_inbox: list[dict[str, str]]) -> list[dict]:
    verdicts = split_tickets(triage_inbox).map(triage_ticket)
    return collect_triage(verdicts.collect())


@llm_asset(
    group_name=GROUP,
    op_tags=POLICY,
    partitions_def=DAILY,
    kinds={"openai"},
    description="A three-line digest of the day's tickets for the support lead.",
    max_cost_usd="0.001",
)
def triage_digest(context: dg.AssetExecutionContext, ticket_triage: list[dict], llm: LLMResource) -> str:
    provider, model = TRIAGE_MODEL
    return llm.complete(
        context,
        messages=digest_messages(ticket_triage),
        provider=provider,
        model=model,
        max_tokens=200,
        temperature=0.0,
    ).text


triage_assets = [triage_inbox, ticket_triage, triage_digest]
triage_agent_job = dg.define_asset_job(
    "triage_agent_job",
    selection=dg.AssetSelection.groups(GROUP),
    partitions_def=DAILY,
    tags=POLICY,
)
triage_agent_schedule = dg.build_schedule_from_partitioned_job(
    triage_agent_job,
    hour_of_day=6,
    description="Triages the day's inbox every morning at 06:00 UTC.",
)
