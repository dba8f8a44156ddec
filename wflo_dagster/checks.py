"""Asset checks that fail when one materialization of an asset cost more than its threshold.

Two forms, one verdict. ``llm_asset(max_cost_usd=...)`` declares the check on the asset itself and
evaluates it in the asset's own step from the step's totals: no extra step, no ledger read.
:func:`cost_check` is a check of its own for any asset (one not made by ``llm_asset``, or a graph
asset whose calls are spread over fan-out steps): it reads the cost from the ledger (exact
``Decimal``), for the run that produced the asset's latest materialization.
"""

from collections.abc import Sequence
from decimal import Decimal

import dagster as dg

from wflo_core.config import load_settings
from wflo_core.ledger.rollups import cost_rollup
from wflo_core.ledger.types import quantize_usd
from wflo_core.money import parse_usd
from wflo_core.services import shared_services

CHECK_NAME = "cost_per_materialization"


def asset_cost_in_run(asset_key: dg.AssetKey, run_id: str) -> Decimal:
    """What the asset's calls in one run cost, from the ledger."""
    with shared_services(load_settings()) as services, services.ledger.transaction() as session:
        rows = cost_rollup(session, "asset", run_id=run_id)
    return sum((r.cost_usd for r in rows if r.key == asset_key.to_user_string()), Decimal(0))


AssetRef = dg.AssetsDefinition | dg.AssetKey | str


def cost_check_spec(key: dg.AssetKey, limit: Decimal) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(CHECK_NAME, asset=key, description=_description(limit))


def cost_verdict(cost: Decimal, limit: Decimal, run_id: str) -> dg.AssetCheckResult:
    """The check's result for a materialization that cost ``cost`` in run ``run_id`` (shown at the
    ledger's scale, as the standalone check reads it)."""
    cost = quantize_usd(cost)
    passed = cost <= limit
    verdict = "within" if passed else "over"
    return dg.AssetCheckResult(
        check_name=CHECK_NAME, passed=passed, severity=dg.AssetCheckSeverity.ERROR,
        description=f"${cost:f} {verdict} the ${limit:f} per-materialization threshold (run {run_id})",
        metadata={"cost_usd": float(cost), "max_usd": float(limit), "run_id": run_id},
    )


def _description(limit: Decimal) -> str:
    return f"Fails when one materialization costs more than ${limit:f} in LLM calls."


def cost_check(asset: AssetRef, max_usd: Decimal | str) -> dg.AssetChecksDefinition:
    """A check on ``asset`` that fails (severity ERROR) when its latest materialization cost more than
    ``max_usd``."""
    limit = parse_usd(max_usd, "max_usd")
    key = asset.key if isinstance(asset, dg.AssetsDefinition) else dg.AssetKey.from_coercible(asset)

    @dg.asset_check(asset=key, name=CHECK_NAME, description=_description(limit))
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        event = context.instance.get_latest_materialization_event(key)
        if event is None:
            return dg.AssetCheckResult(passed=True, description="not materialized yet; nothing to check",
                                       metadata={"max_usd": float(limit)})
        return cost_verdict(asset_cost_in_run(key, event.run_id), limit, event.run_id)

    return _check


def cost_checks(thresholds: Sequence[tuple[AssetRef, Decimal | str]]) -> list[dg.AssetChecksDefinition]:
    return [cost_check(asset, max_usd) for asset, max_usd in thresholds]
