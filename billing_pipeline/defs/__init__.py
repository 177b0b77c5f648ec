"""Dagster wiring: assets, checks, jobs, schedules and resources. No billing logic lives here."""

import dagster as dg

from billing_pipeline.defs.alerts import (
    alert_delivery_job,
    alert_delivery_schedule,
    usage_alerts,
    usage_alerts_job,
    usage_alerts_schedule,
    with_alert_resources,
)
from billing_pipeline.defs.executors import executor_from_env
from billing_pipeline.defs.fetch import fetch_assets, provider_fetch_job
from billing_pipeline.defs.ingestion import (
    provider_cost,
    provider_reported_cost,
    raw_assets,
    tokenizer_drift,
    usage_tables,
)
from billing_pipeline.defs.issuing import (
    delivered_invoices,
    invoice_delivery_job,
    invoice_delivery_schedule,
    issue_invoices_job,
    issued_invoices,
    record_failed_month_end_checks,
    record_month_end_checks,
)
from billing_pipeline.defs.jobs import (
    daily_ingestion_job,
    daily_ingestion_schedule,
    month_end_job,
    month_end_schedule,
)
from billing_pipeline.defs.month_end import (
    invoice_drafts,
    monthly_usage,
    quarantine_report,
    rated_charges,
    reconciliation,
)
from billing_pipeline.defs.resources import resources_from_env
from billing_pipeline.defs.sensors import landing_zone_sensor
from billing_pipeline.defs.statements import (
    month_to_date_statements,
    month_to_date_statements_job,
    month_to_date_statements_schedule,
)

ASSETS = [
    *raw_assets,
    usage_tables,
    provider_cost,
    provider_reported_cost,
    tokenizer_drift,
    monthly_usage,
    rated_charges,
    reconciliation,
    quarantine_report,
    invoice_drafts,
    issued_invoices,
    delivered_invoices,
    *fetch_assets,
    usage_alerts,
    month_to_date_statements,
]


def build_definitions(resources: dict[str, object] | None = None) -> dg.Definitions:
    """One Definitions for the UI, the CLI and the tests; only the resources differ."""
    return dg.Definitions(
        assets=ASSETS,
        jobs=[
            daily_ingestion_job,
            month_end_job,
            issue_invoices_job,
            provider_fetch_job,
            usage_alerts_job,
            alert_delivery_job,
            month_to_date_statements_job,
            invoice_delivery_job,
        ],
        schedules=[
            daily_ingestion_schedule,
            month_end_schedule,
            usage_alerts_schedule,
            alert_delivery_schedule,
            month_to_date_statements_schedule,
            invoice_delivery_schedule,
        ],
        sensors=[landing_zone_sensor, record_month_end_checks, record_failed_month_end_checks],
        resources=with_alert_resources(
            resources if resources is not None else resources_from_env()
        ),
        executor=executor_from_env(),  # BILLING_EXECUTOR: multiprocess (default), in_process, celery
    )


def month_end_job_from_env() -> dg.JobDefinition:
    """The month-end job with resources from the environment, for executors and re-execution
    that rebuild the job in another process (``dg.reconstructable``)."""
    return build_definitions().resolve_job_def("month_end_job")


def daily_ingestion_job_from_env() -> dg.JobDefinition:
    return build_definitions().resolve_job_def("daily_ingestion_job")
