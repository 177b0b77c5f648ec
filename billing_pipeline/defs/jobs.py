"""What every job's runs share: the month tag, the groups the daily and monthly jobs select (a
backfill covers exactly those), and the run requests schedules make. The jobs and schedules
themselves live with their assets (ingestion.py, month_end.py, ...). Issuing stays a human act."""

import datetime as dt

import dagster as dg

MONTH_TAG = "billing/month"  # dagster.yaml allows one run per billing month at a time
DAILY_GROUPS = ("raw", "usage")
MONTHLY_GROUPS = ("billing", "invoicing")


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
