"""Daily assets: provider exports as read, the canonical usage table, its quarantine, the cost.

Every raw_* asset holds every record its files contained for the day, parsed or not: accepted
records as canonical rows, rejected ones with their quarantine reason. Nothing is dropped between
the landing zone and ``usage_events`` + ``usage_quarantine``. ``daily_ingestion_job`` runs them
(and the cost assets) shortly after midnight UTC for the day that ended.
"""

import datetime as dt
import functools

import dagster as dg
import polars as pl

from billing_pipeline import sources
from billing_pipeline.defs.check_results import check_result
from billing_pipeline.defs.jobs import DAILY_GROUPS, day_that_ended
from billing_pipeline.defs.partitions import daily_partitions
from billing_pipeline.defs.resources import CatalogResource, LandingZone, UsageStore
from billing_pipeline.rating.billing_source import split_billing_source
from billing_pipeline.reconcile import provider_cost as compute_provider_cost
from billing_pipeline.reconcile.checks import cost_lines_readable_check, priced_check
from billing_pipeline.reconcile.provider_cost import USAGE_COLUMNS
from billing_pipeline.schema import KIND_MONEY_AT_RISK
from billing_pipeline.sources import gateway_log, provider_costs
from billing_pipeline.usage import (
    attribute_quarantine,
    landing_file_order,
    normalize,
    records_conserved_check,
    split_raw,
    to_raw,
)
from billing_pipeline.usage_keys import code_book

CONSERVATION_CHECK = "records_read_equal_events_plus_quarantine"

RAW_ASSETS = {
    "raw_openai_usage": ("openai_usage_api", "OpenAI Usage API pages (completions), as returned."),
    "raw_anthropic_usage": (
        "anthropic_usage_report",
        "Anthropic usage_report/messages pages, as returned.",
    ),
    "raw_gateway_log": (
        "gateway_log",
        "Our gateway's request log (Mistral and other routed models).",
    ),
    "raw_litellm_spend_logs": (
        "litellm_spend_logs",
        "LiteLLM proxy spend logs (LiteLLM_SpendLogs rows, fetched or exported).",
    ),
    "raw_cloud_focus": (
        "focus",
        "Cloud billing exports in FOCUS 1.x: GPU instance time tagged by customer.",
    ),
    "raw_cloud_aws_cur": (
        "aws_cur",
        "AWS CUR 2.0 exports: GPU instance time and Bedrock tokens, tagged by customer.",
    ),
    "raw_outcomes": ("outcomes", "Outcome events for outcome-based charges."),
}


def window(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """The days this run covers: one partition, or a range in a single-run backfill."""
    tw = context.partition_time_window
    return tw.start.date(), tw.end.date()


def _raw_asset(name: str, source: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        description=description,
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="raw",
        kinds={"polars"},
    )
    def _asset(context: dg.AssetExecutionContext, landing: LandingZone) -> dg.Output[pl.DataFrame]:
        """Unreadable files are quarantined here as money at risk; the month's blocking
        ``no_money_at_risk`` check (quarantine_report) holds issuing for them."""
        start, end = window(context)
        read = sources.SOURCES[source](landing.root, start, end)
        return dg.Output(
            to_raw(read),
            metadata={
                "records_read": read.records_read,
                "usage_rows": read.events.height,
                "quarantined": read.quarantine.height,
                "unreadable_files": ", ".join(
                    read.quarantine.filter(pl.col("reason") == "unreadable_file")[
                        "origin"
                    ].to_list()
                )
                or "none",
                "landing": dg.MetadataValue.path(str(landing.root)),
            },
        )

    return _asset


raw_assets = [_raw_asset(name, source, doc) for name, (source, doc) in RAW_ASSETS.items()]


@dg.multi_asset(
    outs={
        "usage_events": dg.AssetOut(
            description="Canonical usage: one row per source record and meter, deduplicated, "
            "attributed to customers (null customer = unattributed, kept and reported).",
            group_name="usage",
            kinds={"polars"},
        ),
        "usage_quarantine": dg.AssetOut(
            description="Every rejected record with its file, row, field and reason. Nothing is dropped.",
            group_name="usage",
            kinds={"polars"},
        ),
        "usage_codes": dg.AssetOut(
            description="The day's code book: each usage_key of usage_events with the customer, "
            "provider, model, model family, meter and dimensions it stands for (rating groups "
            "the month by the key and reads the names back here).",
            group_name="usage",
            kinds={"polars"},
        ),
    },
    # scans: each raw frame is read as its usage rows and its quarantined records, never whole
    ins={name: dg.AssetIn(name, dagster_type=pl.LazyFrame) for name in RAW_ASSETS},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[
        dg.AssetCheckSpec(
            CONSERVATION_CHECK,
            asset="usage_events",
            blocking=True,
            description="Records read = usage events' source records + quarantined records.",
        )
    ],
)
def usage_tables(
    context: dg.AssetExecutionContext,
    catalog: CatalogResource,
    landing: LandingZone,
    **raw: pl.LazyFrame,
):
    """Normalize, deduplicate and attribute the day's usage (a later export restates an earlier
    one: the landing files' modification times say which came later)."""
    split = [split_raw(frame) for frame in raw.values()]
    # Asked only when a record was read twice, so a remote landing zone is not staged again for nothing.
    order = functools.cache(lambda: landing_file_order(landing.root))
    events, quarantine = normalize(
        [e for e, _ in split],
        [q for _, q in split],
        catalog.load(),
        file_order=lambda rel: order()(rel),
    )
    conserved = records_conserved_check(split, events, quarantine)
    yield dg.Output(
        events,
        output_name="usage_events",
        metadata={
            "rows": events.height,
            "source_records": conserved.metadata["accepted_records"],
            "unattributed_rows": events.filter(pl.col("customer_id").is_null()).height,
            "customers": events["customer_id"].drop_nulls().n_unique(),
        },
    )
    by_reason = quarantine.group_by("kind", "reason").len().sort("kind", "reason")
    yield dg.Output(
        quarantine,
        output_name="usage_quarantine",
        metadata={
            "rows": quarantine.height,
            "money_at_risk": quarantine.filter(pl.col("kind") == KIND_MONEY_AT_RISK).height,
            "by_reason": dg.MetadataValue.md(
                "\n".join(
                    ["| kind | reason | rows |", "| --- | --- | --- |"]
                    + [f"| {k} | {r} | {n} |" for k, r, n in by_reason.iter_rows()]
                )
            ),
        },
    )
    codes = code_book(events)
    yield dg.Output(codes, output_name="usage_codes", metadata={"keys": codes.height})
    yield check_result(CONSERVATION_CHECK, conserved, asset_key="usage_events")


REPORTED_COST_CHECK = "every_cost_line_readable"


@dg.multi_asset(
    outs={
        "provider_reported_cost": dg.AssetOut(
            description="What the providers say we owe them, per cost line, in currency units.",
            group_name="usage",
            kinds={"polars"},
        ),
        "provider_cost_quarantine": dg.AssetOut(
            description="Cost page records that could not be read (kind cost): they bill nobody, so "
            "they hold nothing, but the month's quarantine.csv and finance summary show them.",
            group_name="usage",
            kinds={"polars"},
        ),
    },
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[
        dg.AssetCheckSpec(
            REPORTED_COST_CHECK,
            asset="provider_reported_cost",
            description="Every line of the providers' cost pages was read; "
            "unreadable ones are listed with their reason.",
        )
    ],
)
def provider_reported_cost(
    context: dg.AssetExecutionContext, landing: LandingZone, catalog: CatalogResource
):
    """What the providers say we owe them, per cost line (OpenAI Costs API, Anthropic cost_report
    pages in the landing zone), in dollars: the other side of provider_cost's computed cost."""
    start, end = window(context)
    read = provider_costs.read(landing.root, start, end)
    cost_quarantine = attribute_quarantine(
        read.quarantine, catalog.load()
    )  # kind "cost", set by the reader
    yield dg.Output(
        read.costs,
        output_name="provider_reported_cost",
        metadata={
            "lines": read.costs.height,
            "total": str(read.costs["amount"].sum() if read.costs.height else 0),
            "quarantined": read.quarantine.height,
            "unparsed_line_items": read.unparsed.height,  # kept with model and meter null: listed, never guessed
            "unparsed": ", ".join(sorted(set(read.unparsed["line_item"].drop_nulls())))[:500]
            or "none",
        },
    )
    yield dg.Output(
        cost_quarantine,
        output_name="provider_cost_quarantine",
        metadata={"rows": cost_quarantine.height},
    )
    yield check_result(
        REPORTED_COST_CHECK,
        cost_lines_readable_check(read.quarantine),
        asset_key="provider_reported_cost",
    )


PRICED_CHECK = "every_usage_event_has_a_cost"


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="usage",
    kinds={"polars"},
    check_specs=[
        dg.AssetCheckSpec(
            PRICED_CHECK,
            asset="provider_cost",
            description="Every usage event is priced by the price book or carries the "
            "provider's reported cost; unpriced models are listed.",
        )
    ],
)
def provider_cost(
    context: dg.AssetExecutionContext,
    usage_events: pl.LazyFrame,
    catalog: CatalogResource,
    usage_store: UsageStore,
):
    """What we owe providers per day, customer, model and meter: from the price book, or the
    provider's own reported cost (cloud GPU time) when no price-book entry applies. Traffic that
    both the gateway log and the provider's report describe is costed once, from the source the
    catalog bills it from (``billing_source``), so margins compare like with like."""
    loaded = catalog.load()
    first, end = window(context)
    book = usage_store.code_book(first, end - dt.timedelta(days=1))
    # A scan: only these columns are read. Those a partition lacks (written before usage_key
    # existed) stay out, as before: provider cost then sums by the names.
    stored = usage_events.collect_schema().names()
    usage = usage_events.select([c for c in USAGE_COLUMNS if c in stored]).collect()
    costs = compute_provider_cost(
        split_billing_source(usage, loaded).billable, loaded, code_book=book
    )
    total = costs["cost"].sum() if costs.height else 0
    yield dg.Output(
        costs,
        metadata={
            "rows": costs.height,
            "total_cost": str(total),
            "unpriced_rows": costs.filter(pl.col("cost_basis") == "unpriced").height,
        },
    )
    yield check_result(PRICED_CHECK, priced_check(costs))


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="usage",
    kinds={"polars"},
    deps=["raw_gateway_log"],
)
def tokenizer_drift(context: dg.AssetExecutionContext, landing: LandingZone):
    """Per model: the provider's token counts on gateway lines that also carry the text, against
    our offline recount of that text (drift and drift %). Information for finance, not billing."""
    start, end = window(context)
    drift = gateway_log.tokenizer_drift(landing.root, start, end)
    worst = drift.filter(pl.col("drift_pct").is_not_null()).sort(
        pl.col("drift_pct").abs(), descending=True
    )
    return dg.Output(
        drift,
        metadata={
            "models": drift.height,
            "lines_compared": int(drift["lines"].sum() or 0),
            "worst_model": worst["model"][0] if worst.height else "none",
            "worst_drift_pct": float(worst["drift_pct"][0]) if worst.height else 0.0,
            "drift": dg.MetadataValue.md(
                "\n".join(
                    [
                        "| model | lines | provider | ours | drift | drift % |",
                        "| --- | --- | --- | --- | --- | --- |",
                    ]
                    + [
                        f"| {r['model']} | {r['lines']} | {r['provider_total']} | {r['counted_total']} | {r['drift']} | {r['drift_pct']} |"
                        for r in drift.iter_rows(named=True)
                    ]
                )
            ),
        },
    )


daily_ingestion_job = dg.define_asset_job(
    "daily_ingestion_job",
    selection=dg.AssetSelection.groups(*DAILY_GROUPS),
    description="Read the landing zone for a day (or a range, in one run), normalize, quarantine, cost.",
)


@dg.schedule(job=daily_ingestion_job, cron_schedule="30 0 * * *", execution_timezone="UTC")
def daily_ingestion_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Shortly after midnight UTC: ingest the day that just ended."""
    return day_that_ended(context)


defs = dg.Definitions(
    assets=[
        *raw_assets,
        usage_tables,
        provider_reported_cost,
        provider_cost,
        tokenizer_drift,
    ],
    jobs=[daily_ingestion_job],
    schedules=[daily_ingestion_schedule],
)
