"""Every run tag, op tag and metadata key wflo reads or writes, in one place (as arq keeps its keys)."""

# -- step metadata (numeric, plotted by the Dagster UI) ------------------------------------------
COST_KEY = "wflo/cost_usd"
CALLS_KEY = "wflo/llm_calls"
CACHE_HITS_KEY = "wflo/cache_hits"
SAVED_KEY = "wflo/saved_usd"
INPUT_TOKENS_KEY = "wflo/input_tokens"
OUTPUT_TOKENS_KEY = "wflo/output_tokens"
MODEL_TOKENS_KEY = "wflo/tokens/{model}"
MODEL_COST_KEY = "wflo/cost_usd/{model}"

# -- run tags (set on a Dagster job or run) -------------------------------------------------------
BUDGET_TAG = "wflo/budget_usd"
"""Run or asset tag that sets a run (on a job/run) or asset (on an asset) budget in USD."""
RUN_BUDGET_TAG = "wflo/run_budget_usd"
"""Op tag (on an asset or op) that sets the budget of every run it is part of, however the run was
launched (a job, "Materialize" in the UI, a schedule, a sensor, a backfill, a re-execution)."""
ON_BREACH_TAG = "wflo/on_breach"
"""Run tag choosing ``fail`` or ``ask`` when a budget of the run would be exceeded."""
TAG_PREFIX = "wflo/tag/"
"""Tags like ``wflo/tag/team=ml`` attribute cost to (and enforce budgets of) team=ml."""
PARENT_RUN_TAG = "wflo/parent_run_id"
"""Run tag naming the run a continuation carries on (Dagster re-executions use ``dagster/parent_run_id``)."""
APPROVAL_TAG = "wflo/approval_id"
"""Run tag of a continuation: the approval whose decision launched it."""
WAITING_TAG = "wflo/waiting_approval"
"""Dagster run tag set when a run stopped at a gate, so the UI shows what it waits for."""
APPROVAL_STATUS_TAG = "wflo/approval_status"
"""Set on a stopped Dagster run when its request expires, so the UI shows why nothing continued."""
ROLLBACK_TAG = "wflo/rollback"
"""Run tag; ``on_failure`` makes a failed run undo its side effects automatically."""
RUN_COST_TAG = "wflo/cost_usd"
RUN_CALLS_TAG = "wflo/llm_calls"
RUN_TOKENS_TAG = "wflo/tokens"
"""Run tags the close-out writes: the run's exact cost, billed calls and tokens."""

# -- asset metadata --------------------------------------------------------------------------------
PLANNED_CALLS_KEY = "wflo/planned_calls"
"""Asset metadata declaring the calls an asset expects to make (``wflo estimate``)."""
APPROVAL_ID_KEY = "wflo/approval_id"
DECIDED_BY_KEY = "wflo/decided_by"


def policy_tags(*, run_budget_usd: str | None = None, **attribution: str) -> dict[str, str]:
    """Tags for a pipeline's assets (``op_tags``) and jobs alike: its run budget and who it is charged to.

    ``policy_tags(run_budget_usd="0.50", team="research")`` → ``{"wflo/run_budget_usd": "0.50",
    "wflo/tag/team": "research"}``. On the assets they hold on every launch path, not only the job's.
    """
    tags = {tag(k): v for k, v in attribution.items()}
    if run_budget_usd is not None:
        tags[RUN_BUDGET_TAG] = run_budget_usd
    return tags


def tag(name: str) -> str:
    """The run/op tag attributing cost to ``name`` (``tag("team")`` → ``wflo/tag/team``)."""
    return TAG_PREFIX + name
