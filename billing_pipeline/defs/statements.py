"""Month-to-date statements per day: wiring only (billing rules in documents/statement.py)."""

import datetime as dt
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl

from billing_pipeline.defs.alerts import LOADER_KEY
from billing_pipeline.defs.jobs import day_that_ended
from billing_pipeline.defs.partitions import daily_partitions
from billing_pipeline.defs.resources import CatalogResource, LedgerResource, OutputFiles
from billing_pipeline.documents.statement import build_statements, held_customers
from billing_pipeline.money import ZERO
from billing_pipeline.rendering.statement_pdf import statement_folder, write_statements

MONTH_LOOKBACK_DAYS = 30  # the 31st minus 30 days is the 1st: every day of the month to date


@dg.asset(
    partitions_def=daily_partitions,
    group_name="statements",
    kinds={"polars", "pdf"},
    ins={
        "usage_events": dg.AssetIn(
            input_manager_key=LOADER_KEY,
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-MONTH_LOOKBACK_DAYS, allow_nonexistent_upstream_partitions=True
            ),
        )
    },
)
def month_to_date_statements(
    context: dg.AssetExecutionContext,
    usage_events: pl.DataFrame,
    catalog: CatalogResource,
    ledger: LedgerResource,
    output: OutputFiles,
):
    """Each customer's month-to-date statement as of the end of the day: spend so far (exactly the
    draft invoice of the days so far: tax and credits included), breakdowns by model, token type,
    day and project or key, the projected month end, allowance, credits and monthly limit used.
    A customer rating holds (money at risk) gets a statement that says so, with no amounts; the
    metadata lists them by id and reason, and ``total_spend_so_far`` leaves them out.
    JSON + HTML + PDF under <out>/<YYYY-MM>/statements/<YYYY-MM-DD>/. Reads only days <= its day."""
    day = dt.date.fromisoformat(context.partition_key)
    month = day.strftime("%Y-%m")
    statements = build_statements(
        usage_events, catalog.load(), day, credits_used=ledger.open().credits_used(month)
    )
    folder = statement_folder(Path(output.path), day)
    table = write_statements(statements, folder)
    totals: dict[str, Decimal] = {}
    for currency, total in (
        table.filter(pl.col("held").is_null()).select("currency", "total").iter_rows()
    ):
        totals[currency] = totals.get(currency, ZERO) + Decimal(total)
    return dg.Output(
        table,
        metadata={
            "customers": table.height,
            # held customers have no spend to add: the total is of the others, and says so
            "total_spend_so_far": dg.MetadataValue.json(
                {c: str(v) for c, v in sorted(totals.items())}
            ),
            "held_customers": dg.MetadataValue.json(held_customers(statements)),
            "folder": dg.MetadataValue.path(str(folder)),
        },
    )


month_to_date_statements_job = dg.define_asset_job(
    "month_to_date_statements_job",
    selection=dg.AssetSelection.assets(month_to_date_statements),
    description="Write every customer's month-to-date statement for a day (JSON, HTML, PDF).",
)


@dg.schedule(job=month_to_date_statements_job, cron_schedule="45 1 * * *", execution_timezone="UTC")
def month_to_date_statements_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """After daily ingestion and the alerts: statements as of the day that just ended."""
    return day_that_ended(context)


defs = dg.Definitions(
    assets=[month_to_date_statements],
    jobs=[month_to_date_statements_job],
    schedules=[month_to_date_statements_schedule],
)
