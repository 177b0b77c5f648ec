"""Dagster wiring: assets, checks, jobs, schedules and resources. No billing logic lives here."""


import dagster as dg

from billing_pipeline.defs.ingestion import provider_cost, raw_assets, usage_tables
from billing_pipeline.defs.jobs import daily_ingestion_job, daily_ingestion_schedule, month_end_job, month_end_schedule
from billing_pipeline.defs.month_end import (
    invoice_drafts,
    monthly_usage,
    quarantine_report,
    rated_charges,
    reconciliation,
)
from billing_pipeline.defs.resources import resources_from_env

ASSETS = [*raw_assets, usage_tables, provider_cost, monthly_usage, rated_charges, reconciliation,
          quarantine_report, invoice_drafts]


def build_definitions(resources: dict[str, object] | None = None) -> dg.Definitions:
    """One Definitions for the UI, the CLI and the tests; only the resources differ."""
    return dg.Definitions(
        assets=ASSETS,
        jobs=[daily_ingestion_job, month_end_job],
        schedules=[daily_ingestion_schedule, month_end_schedule],
        resources=resources if resources is not None else resources_from_env(),
    )
