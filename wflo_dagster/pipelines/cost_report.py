"""The daily cost report asset: a markdown table of the day's LLM cost by workflow and model, and a
cost-by-model chart, in its materialization metadata. Scheduled shortly after each UTC midnight."""

import base64
from datetime import date, timedelta
from decimal import Decimal

import dagster as dg

from wflo_core.config import load_settings
from wflo_core.services import shared_services
from wflo_dagster.reports import cost_by_model_chart, cost_markdown, daily_cost_rows

GROUP = "wflo_reports"
DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1)
"""One report per UTC day; today's partition is allowed so the day so far can be reported on demand."""
TOTAL_KEY = "wflo/report/total_usd"
CALLS_KEY = "wflo/report/llm_calls"


@dg.asset(
    group_name=GROUP,
    partitions_def=DAILY,
    kinds={"python"},
    description="What the day's LLM calls cost, by workflow and model (table + chart).",
)
def daily_cost_report(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    day = date.fromisoformat(context.partition_key)
    settings = load_settings()
    with shared_services(settings) as services, services.ledger.transaction() as session:
        rows = daily_cost_rows(session, day)
    table = cost_markdown(day, rows)
    chart = cost_by_model_chart(day, rows, settings.home.resolve() / "reports" / f"cost-by-model-{day}.png")
    chart.with_name(f"cost-{day}.md").write_text(table + "\n", encoding="utf-8")
    png = base64.b64encode(chart.read_bytes()).decode()
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(table),
            "chart": dg.MetadataValue.md(f"![LLM cost by model](data:image/png;base64,{png})"),
            "chart_path": dg.MetadataValue.path(str(chart)),
            TOTAL_KEY: dg.MetadataValue.float(float(sum((r.cost_usd for r in rows), Decimal(0)))),
            CALLS_KEY: dg.MetadataValue.int(sum(r.calls for r in rows)),
        }
    )


cost_report_job = dg.define_asset_job("daily_cost_report_job", selection=[daily_cost_report], partitions_def=DAILY)


@dg.schedule(
    cron_schedule="10 0 * * *",
    job=cost_report_job,
    execution_timezone="UTC",
    description="Reports on the day that just ended, ten minutes after midnight UTC.",
)
def daily_cost_report_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = (context.scheduled_execution_time.date() - timedelta(days=1)).isoformat()
    return dg.RunRequest(run_key=f"daily_cost_report:{day}", partition_key=day)
