"""Dagster wiring. Each module assembles the ``dg.Definitions`` of its own stage (assets, checks,
jobs, schedules, sensors); ``build_definitions`` merges them and adds the resources and the
executor, so an asset is deployed by adding it to its module's Definitions, not to a list here.

The assets call the domain packages for the billing rules and the files they write, and every
check's decision is a plain function there returning a ``billing_pipeline.checks.CheckOutcome``;
here it only becomes an ``AssetCheckResult``. Still decided here: which days a landing file feeds
and which hours a gateway file feeds (sensors.py), which stored partitions make an hour's month to
date (hourly.py) and whether invoice email is sent or written as a dry run (issuing.py).
"""

import dagster as dg

from billing_pipeline.defs import (
    alerts,
    fetch,
    hourly,
    ingestion,
    issuing,
    month_end,
    sensors,
    statements,
)
from billing_pipeline.defs.alerts import with_alert_resources
from billing_pipeline.defs.executors import executor_from_env
from billing_pipeline.defs.hourly import with_hourly_resources
from billing_pipeline.defs.resources import resources_from_env

STAGES = (ingestion, month_end, issuing, fetch, alerts, statements, hourly, sensors)


def stage_definitions() -> dg.Definitions:
    """Every stage's Definitions merged, without resources: what the deployment defines (the
    backfill submitter selects its assets from this)."""
    return dg.Definitions.merge(*(stage.defs for stage in STAGES))


def build_definitions(resources: dict[str, object] | None = None) -> dg.Definitions:
    """One Definitions for the UI, the CLI and the tests; only the resources differ."""
    return dg.Definitions.merge(
        stage_definitions(),
        dg.Definitions(
            resources=with_hourly_resources(
                with_alert_resources(resources if resources is not None else resources_from_env())
            ),
            # BILLING_EXECUTOR: multiprocess (default), in_process, celery
            executor=executor_from_env(),
        ),
    )


def month_end_job_from_env() -> dg.JobDefinition:
    """The month-end job with resources from the environment, for executors and re-execution
    that rebuild the job in another process (``dg.reconstructable``)."""
    return build_definitions().resolve_job_def("month_end_job")


def daily_ingestion_job_from_env() -> dg.JobDefinition:
    return build_definitions().resolve_job_def("daily_ingestion_job")
