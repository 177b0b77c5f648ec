"""Daily usage alerts (limits, spikes, hard caps) and their webhook delivery: wiring only."""

import datetime as dt
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl

from billing_pipeline.alerts import AlertRules
from billing_pipeline.alerts.rules import held_summary, held_text
from billing_pipeline.alerts.run import HARD_CAPS_FILE, evaluate_day
from billing_pipeline.alerts.webhooks import deliver_due
from billing_pipeline.defs.jobs import day_that_ended
from billing_pipeline.defs.partitions import daily_partitions
from billing_pipeline.defs.resources import (
    CatalogResource,
    LedgerResource,
    OutputFiles,
    PolarsParquetIOManager,
)
from billing_pipeline.schema import empty_usage

LOOKBACK_DAYS = 30  # month to date (up to 30 days back) covers the 13 days the spike rules need
LOADER_KEY = "alerts_usage_loader"


class LookbackUsageLoader(dg.ConfigurableIOManager):
    """Reads the usage_events days an alert day looks back on, from the Parquet IO manager's files.

    Every day of the alert's own month must be there (month-to-date spend: a missing day would
    understate it, so the run fails naming it). Days before the month only feed the spike
    baseline; on a new deployment they do not exist yet, and are skipped with a warning."""

    base_dir: str

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        raise NotImplementedError("an input loader: usage_events is written by the io_manager")

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        store = PolarsParquetIOManager(base_dir=self.base_dir)
        keys = list(context.asset_partition_keys)
        month_start = keys[-1][:8] + "01"
        paths = {key: store._path(context.asset_key, key) for key in keys}
        missing = [key for key, path in paths.items() if not path.exists()]
        in_month = [key for key in missing if key >= month_start]
        if in_month:
            raise FileNotFoundError(
                f"usage_events: {len(in_month)} day(s) of the month not materialized, "
                f"first: {paths[in_month[0]]} (ingest them before the alerts of {keys[-1]})"
            )
        if missing:
            context.log.warning(
                f"spike baseline without {len(missing)} day(s) before {month_start} "
                f"(not ingested): {missing[0]}..{missing[-1]}"
            )
        frames = [pl.read_parquet(path) for key, path in paths.items() if key not in missing]
        return pl.concat(frames, how="vertical") if frames else empty_usage()


def with_alert_resources(resources: dict[str, object]) -> dict[str, object]:
    """The resources plus the alerts' usage loader, on the same storage as the io_manager."""
    store = resources.get("io_manager")
    if LOADER_KEY in resources or not isinstance(store, PolarsParquetIOManager):
        return resources
    return {**resources, LOADER_KEY: LookbackUsageLoader(base_dir=store.base_dir)}


class AlertsConfig(dg.Config):
    """Spike rules (decimal strings): a day above spike_factor x the trailing 7-day mean; the
    last 7 days above growth_factor x the 7 before; ignored below min_spend."""

    spike_factor: str = "3"
    growth_factor: str = "2"
    min_spend: str = "1"


@dg.asset(
    partitions_def=daily_partitions,
    group_name="alerts",
    kinds={"polars", "sqlite"},
    ins={
        "usage_events": dg.AssetIn(
            input_manager_key=LOADER_KEY,
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-LOOKBACK_DAYS, allow_nonexistent_upstream_partitions=True
            ),
        )
    },
)
def usage_alerts(
    context: dg.AssetExecutionContext,
    config: AlertsConfig,
    usage_events: pl.DataFrame,
    catalog: CatalogResource,
    ledger: LedgerResource,
    output: OutputFiles,
):
    """The day's alerts: 50/75/90/100 % of each customer's monthly_limit (each once per month, kept
    in the ledger's alert_outbox), spikes, and the hard-cap list (<out>/hard_caps.json + table
    hard_caps). New alerts are sent at once; failures are retried by alert_delivery_job. A
    customer whose rating holds (money at risk) is a row of kind ``held`` and in ``held``."""
    day = dt.date.fromisoformat(context.partition_key)
    rules = AlertRules(
        spike_factor=Decimal(config.spike_factor),
        growth_factor=Decimal(config.growth_factor),
        min_spend=Decimal(config.min_spend),
    )
    engine = ledger.open().engine
    result = evaluate_day(usage_events, catalog.load(), day, engine, Path(output.path), rules)
    delivery = deliver_due(engine)
    table = pl.DataFrame(
        [
            (a.alert_id, a.customer_id, a.kind, a.alert_id in result.new, a.payload["message"])
            for a in result.alerts
        ]
        + [
            (f"held:{h['customer_id']}:{day:%Y-%m}", h["customer_id"], "held", False, held_text(h))
            for h in result.held
        ],
        schema={
            "alert_id": pl.String,
            "customer_id": pl.String,
            "kind": pl.String,
            "new": pl.Boolean,
            "message": pl.String,
        },
        orient="row",
    )
    return dg.Output(
        table,
        metadata={
            "alerts": len(result.alerts),
            "new_alerts": ", ".join(result.new) or "none",
            "over_hard_cap": ", ".join(r["customer_id"] for r in result.over_cap) or "none",
            "held": held_summary(result.held),
            "delivered": len(delivery.delivered),
            "delivery_failures": len(delivery.failed),
            "hard_caps_file": dg.MetadataValue.path(str(Path(output.path) / HARD_CAPS_FILE)),
        },
    )


@dg.op
def deliver_alerts(context: dg.OpExecutionContext, ledger: LedgerResource) -> None:
    """One attempt for every due alert in the outbox (backoff decides which are due)."""
    report = deliver_due(ledger.open().engine)
    context.log.info(
        f"delivered {len(report.delivered)}, failed {len(report.failed)}: {report.failed or ''}"
    )


@dg.job(description="Send due alerts from the outbox: retries with backoff until acknowledged.")
def alert_delivery_job():
    deliver_alerts()


usage_alerts_job = dg.define_asset_job(
    "usage_alerts_job",
    selection=dg.AssetSelection.assets(usage_alerts),
    description="Evaluate a day's usage alerts and hard caps, and send new alerts.",
)


@dg.schedule(job=usage_alerts_job, cron_schedule="30 1 * * *", execution_timezone="UTC")
def usage_alerts_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """An hour after daily ingestion: alerts for the day that just ended."""
    return day_that_ended(context)


@dg.schedule(job=alert_delivery_job, cron_schedule="*/10 * * * *", execution_timezone="UTC")
def alert_delivery_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(run_key=context.scheduled_execution_time.isoformat())


defs = dg.Definitions(
    assets=[usage_alerts],
    jobs=[usage_alerts_job, alert_delivery_job],
    schedules=[usage_alerts_schedule, alert_delivery_schedule],
)
