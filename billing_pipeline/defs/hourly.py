"""The gateway log within the hour: hourly partitions, then alerts, hard caps and month-to-date
statements on the month to date, in one run per hour that landed (``gateway_hourly_sensor``).

``raw_gateway_log_hourly`` is the gateway reader's view of a window of hours: the records the
daily ``raw_gateway_log`` reads for their days, each in exactly one hour (sources/files.py
``record_hour``). The month-end still reads the daily partitions; an hour's records are exactly
its day's records of that hour, so what the hours saw is what is billed
(alerts/month_to_date.py says how the month to date is put together without counting twice).
"""

import datetime as dt
import functools
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl

from billing_pipeline.alerts.month_to_date import month_to_date_usage
from billing_pipeline.alerts.rules import AlertRules, held_summary
from billing_pipeline.alerts.run import HARD_CAPS_FILE, evaluate_hour
from billing_pipeline.alerts.webhooks import deliver_all_due
from billing_pipeline.defs.alerts import LOOKBACK_DAYS, AlertsConfig
from billing_pipeline.defs.jobs import MONTH_TAG
from billing_pipeline.defs.partitions import HOUR_KEY_FORMAT, hourly_partitions
from billing_pipeline.defs.resources import (
    RAW_HOURLY,
    STORE_KEY,
    CatalogResource,
    LandingZone,
    LedgerResource,
    OutputFiles,
    PolarsParquetIOManager,
    UsageStore,
)
from billing_pipeline.documents.statement import build_statements, held_customers
from billing_pipeline.periods import month_of, utc_text
from billing_pipeline.rendering.statement_pdf import (
    latest_statement_folder,
    write_latest_statements,
)
from billing_pipeline.sources import gateway_log
from billing_pipeline.usage import attribute, landing_file_order, split_raw, to_raw

HOURLY_GROUP = "hourly"


@dg.asset(
    name=RAW_HOURLY,
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=HOURLY_GROUP,
    kinds={"polars"},
)
def raw_gateway_log_hourly(
    context: dg.AssetExecutionContext, landing: LandingZone
) -> dg.Output[pl.DataFrame]:
    """The gateway log's records of the hour (a range of hours in a backfill), accepted and
    quarantined, each with its ``hour``: the same reader and records as raw_gateway_log's day."""
    window = context.partition_time_window
    start, end = window.start.astimezone(dt.UTC), window.end.astimezone(dt.UTC)
    read = gateway_log.read_hours(landing.root, start, end)
    raw = to_raw(read.read).join(read.hours, on="origin", how="left")
    return dg.Output(
        raw,
        metadata={
            "records_read": read.read.records_read,
            "usage_rows": read.read.events.height,
            "quarantined": read.read.quarantine.height,
            "hours": f"{utc_text(start)} .. {utc_text(end)}",
        },
    )


def with_hourly_resources(resources: dict[str, object]) -> dict[str, object]:
    """The resources plus the store of the usage the hourly evaluation reads (the io_manager's)."""
    store = resources.get("io_manager")
    if STORE_KEY in resources or not isinstance(store, PolarsParquetIOManager):
        return resources
    return {**resources, STORE_KEY: UsageStore(base_dir=store.base_dir)}


class HourlyAlertsConfig(AlertsConfig):
    """The daily rules' settings, plus the hourly spike rule's (alerts/rules.py AlertRules)."""

    hourly_spike_factor: str = "10"
    baseline_hours: int = 24


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "hourly_usage_alerts",
            description="Limit, spike and hourly spike alerts on the month to date after the "
            "hour's ingestion (each once per customer and month, or day, as the daily ones; the "
            "ledger's alert_outbox keeps them), and <out>/hard_caps.json rewritten with its as_of.",
            group_name=HOURLY_GROUP,
            kinds={"sqlite"},
            deps=[RAW_HOURLY, "usage_events"],
        ),
        dg.AssetSpec(
            "hourly_statements",
            description="Month-to-date statements (JSON + HTML) of the customers whose usage the "
            "hour changed, under <out>/<YYYY-MM>/statements/latest/.",
            group_name=HOURLY_GROUP,
            kinds={"html"},
            deps=[RAW_HOURLY, "usage_events"],
        ),
    ],
    ins={RAW_HOURLY: dg.AssetIn()},
    partitions_def=hourly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def month_to_date_hourly(
    context: dg.AssetExecutionContext,
    config: HourlyAlertsConfig,
    catalog: CatalogResource,
    ledger: LedgerResource,
    output: OutputFiles,
    landing: LandingZone,
    usage_store: UsageStore,
    **raw: pl.DataFrame,
):
    """After an hour of the gateway log (or a range of hours: then as of its last hour): the
    month to date as landed (usage_events days, their gateway rows from newer hourly partitions,
    and 30 days back for the spike baselines), the alerts and hard caps of alerts/run.py
    ``evaluate_hour`` (new alerts sent at once), and the statements of the customers with usage
    in the hour. What they wrote lives in the ledger and the files; the materializations carry
    the figures."""
    window = context.partition_time_window
    hour = window.end.astimezone(dt.UTC) - dt.timedelta(hours=1)
    day, month = hour.date(), month_of(hour.date())
    the_catalog, the_ledger = catalog.load(), ledger.open()
    stored = usage_store.days(day - dt.timedelta(days=LOOKBACK_DAYS), day)
    order = functools.cache(lambda: landing_file_order(landing.root))
    usage = month_to_date_usage(stored, the_catalog, file_order=lambda rel: order()(rel))
    rules = AlertRules(
        spike_factor=Decimal(config.spike_factor),
        growth_factor=Decimal(config.growth_factor),
        min_spend=Decimal(config.min_spend),
        hourly_spike_factor=Decimal(config.hourly_spike_factor),
        baseline_hours=config.baseline_hours,
    )
    result = evaluate_hour(usage, the_catalog, hour, the_ledger.engine, Path(output.path), rules)
    delivery = deliver_all_due(the_ledger.engine)
    events, _ = split_raw(raw[RAW_HOURLY])
    changed = set(attribute(events, the_catalog)["customer_id"].drop_nulls().to_list())
    statements = [
        st
        for st in build_statements(
            usage.filter(pl.col("customer_id").is_in(sorted(changed))),
            the_catalog,
            day,
            credits_used=the_ledger.credits_used(month),
            as_of=result.as_of,
        )
        if st["customer_id"] in changed
    ]
    folder = latest_statement_folder(Path(output.path), month)
    written = write_latest_statements(statements, folder)
    in_month = [s for s in stored if s.day.strftime("%Y-%m") == month]
    as_of = utc_text(result.as_of)
    yield dg.MaterializeResult(
        asset_key="hourly_usage_alerts",
        metadata={
            "as_of": as_of,
            "alerts": len(result.alerts),
            "new_alerts": ", ".join(result.new) or "none",
            "over_hard_cap": ", ".join(r["customer_id"] for r in result.over_cap) or "none",
            "held": held_summary(result.held),
            "hard_caps_written": result.caps_written,
            "delivered": len(delivery.delivered),
            "delivery_failures": len(delivery.failed),
            "days_from_hourly_partitions": ", ".join(
                s.day.isoformat() for s in in_month if s.hourly_raw is not None
            )
            or "none",
            "days_not_ingested": ", ".join(
                s.day.isoformat() for s in in_month if s.daily is None and s.hourly_raw is None
            )
            or "none",
            "hard_caps_file": dg.MetadataValue.path(str(Path(output.path) / HARD_CAPS_FILE)),
        },
    )
    yield dg.MaterializeResult(
        asset_key="hourly_statements",
        metadata={
            "as_of": as_of,
            "customers_changed": len(changed),
            "statements_written": written.height,
            "held_customers": dg.MetadataValue.json(held_customers(statements)),
            "folder": dg.MetadataValue.path(str(folder)),
        },
    )


hourly_ingestion_job = dg.define_asset_job(
    "hourly_ingestion_job",
    selection=dg.AssetSelection.groups(HOURLY_GROUP),
    description="Ingest an hour of the gateway log (or a range, in one run), then evaluate the "
    "month to date: alerts, hard caps, month-to-date statements of the customers it changed.",
    # Two small steps one after the other: a process (or a Celery task) per step would take
    # longer to start than the steps take, and this job is the one that has to be quick.
    executor_def=dg.in_process_executor,
)


def hour_request(first: dt.datetime, last: dt.datetime, run_key: str, files: int) -> dg.RunRequest:
    """A run of hourly_ingestion_job for the hours first..last (one partition, or a range)."""
    first_key, last_key = first.strftime(HOUR_KEY_FORMAT), last.strftime(HOUR_KEY_FORMAT)
    tags = {MONTH_TAG: month_of(last.date()), "billing/landing_files": str(files)}
    if first == last:
        return dg.RunRequest(run_key=run_key, partition_key=first_key, tags=tags)
    return dg.RunRequest(
        run_key=run_key,
        tags={
            **tags,
            "dagster/asset_partition_range_start": first_key,
            "dagster/asset_partition_range_end": last_key,
        },
    )


defs = dg.Definitions(
    assets=[raw_gateway_log_hourly, month_to_date_hourly],
    jobs=[hourly_ingestion_job],
)
