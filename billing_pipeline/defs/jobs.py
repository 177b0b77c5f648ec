"""Jobs and schedules: ingest every day, draft invoices on the 1st. Issuing stays a human act."""

import datetime as dt

import dagster as dg

MONTH_TAG = "billing/month"  # dagster.yaml allows one run per billing month at a time
DAILY_GROUPS = ("raw", "usage")
MONTHLY_GROUPS = ("billing", "invoicing")

daily_ingestion_job = dg.define_asset_job(
    "daily_ingestion_job",
    selection=dg.AssetSelection.groups(*DAILY_GROUPS),
    description="Read the landing zone for a day (or a range, in one run), normalize, quarantine, cost.",
)

month_end_job = dg.define_asset_job(
    "month_end_job",
    selection=dg.AssetSelection.groups(*MONTHLY_GROUPS),
    description="Rate the month, reconcile, and write invoice drafts (PDF + JSON + ledger).",
)


def day_that_ended(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """A run for yesterday's daily partition (UTC), one per day (run_key), tagged with its month."""
    day = (context.scheduled_execution_time - dt.timedelta(days=1)).strftime("%Y-%m-%d")
    return dg.RunRequest(run_key=day, partition_key=day, tags={MONTH_TAG: day[:7]})


def month_that_ended(
    context: dg.ScheduleEvaluationContext, run_key: str | None = None
) -> dg.RunRequest:
    """A run for the previous month's partition; one per month unless ``run_key`` says otherwise."""
    first = context.scheduled_execution_time.date().replace(day=1)
    month = (first - dt.timedelta(days=1)).replace(day=1).isoformat()
    return dg.RunRequest(run_key=run_key or month, partition_key=month, tags={MONTH_TAG: month[:7]})


@dg.schedule(job=daily_ingestion_job, cron_schedule="30 0 * * *", execution_timezone="UTC")
def daily_ingestion_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Shortly after midnight UTC: ingest the day that just ended."""
    return day_that_ended(context)


@dg.schedule(job=month_end_job, cron_schedule="0 3 1 * *", execution_timezone="UTC")
def month_end_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """On the 1st: draft the previous month's invoices (finance issues them after review)."""
    return month_that_ended(context)
