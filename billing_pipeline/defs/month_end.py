"""Monthly assets: the month's usage, rated line items, reconciliation and invoice drafts."""

from decimal import Decimal

import dagster as dg
import polars as pl

from billing_pipeline.csv_files import write_csv
from billing_pipeline.defs.partitions import monthly_partitions
from billing_pipeline.defs.rendering import (
    INVOICE_TOTALS_CHECK,
    check_output_name,
    render_invoice_shard,
    save_invoice_drafts,
    summarize_invoice_drafts,
)
from billing_pipeline.defs.resources import CatalogResource, LedgerResource, OutputFiles
from billing_pipeline.ledger import holds
from billing_pipeline.money import ZERO
from billing_pipeline.periods import parse_month
from billing_pipeline.rating import rate_month
from billing_pipeline.rating.billing_source import split_billing_source
from billing_pipeline.reconcile import reconcile
from billing_pipeline.reconcile.drift import REPORT_SOURCES, cost_drift, metering_drift
from billing_pipeline.reconcile.reports import (
    COST_DRIFT_COLUMNS,
    metering_drift_columns,
    reconciliation_columns,
)
from billing_pipeline.reconcile.summary import SummaryRenderer, summary_context
from billing_pipeline.schema import (
    KIND_MONEY_AT_RISK,
    KIND_NOT_BILLABLE,
    QUARANTINE_SCHEMA,
    conform,
)
from billing_pipeline.usage import restated_usage

REVENUE_CHECK = "revenue_equals_rated_lines"
COST_CHECK = "attributed_plus_unattributed_cost_equals_provider_total"
RATED_CHECK = "every_attributed_unit_rated_or_reported"


def month_of(context: dg.AssetExecutionContext) -> str:
    return context.partition_key[:7]


def _units(value: int) -> int | str:
    """A unit count as metadata: an integer, or its text when it does not fit 64 bits (a held
    customer's usage can be that large; Dagster's integer metadata cannot)."""
    return int(value) if -(2**63) <= value < 2**63 else str(value)


def _decimal_sum(values) -> Decimal:
    return sum((Decimal(str(v)) for v in values if v is not None), ZERO)


def _markdown(frame: pl.DataFrame, limit: int = 10) -> str:
    head = frame.head(limit)
    rows = ["| " + " | ".join(head.columns) + " |", "|" + " --- |" * len(head.columns)]
    rows += [
        "| " + " | ".join("" if v is None else str(v) for v in r) + " |" for r in head.iter_rows()
    ]
    return "\n".join(rows)


@dg.asset(partitions_def=monthly_partitions, group_name="billing", kinds={"polars"})
def monthly_usage(
    context: dg.AssetExecutionContext, usage_events: pl.DataFrame
) -> dg.Output[pl.DataFrame]:
    """All usage events of the month (every daily partition of usage_events)."""
    return dg.Output(
        usage_events,
        metadata={
            "rows": usage_events.height,
            "customers": usage_events["customer_id"].drop_nulls().n_unique(),
            "unattributed_rows": usage_events.filter(pl.col("customer_id").is_null()).height,
        },
    )


@dg.multi_asset(
    outs={
        "rated_charges": dg.AssetOut(
            description="Invoice line items per customer plan, each with "
            "quantity, tiers, unit price, amount and a plain-language explanation.",
            group_name="billing",
            kinds={"polars"},
        ),
        "unrated_usage": dg.AssetOut(
            description="Attributed usage no charge prices (no active "
            "subscription, or a model the plan does not price): reported, not billed.",
            group_name="billing",
            kinds={"polars"},
        ),
        "rating_at_risk": dg.AssetOut(
            description="Customers whose month cannot be rated exactly (a quantity "
            "or amount past 64 bits): not billed, held as money at risk by "
            "quarantine_report.",
            group_name="billing",
            kinds={"polars"},
        ),
    },
    partitions_def=monthly_partitions,
    check_specs=[
        dg.AssetCheckSpec(
            RATED_CHECK,
            asset="rated_charges",
            blocking=True,
            description="Attributed units = rated units + included units + unrated units + "
            "units set aside because another source bills them.",
        )
    ],
)
def rated_charges(
    context: dg.AssetExecutionContext,
    monthly_usage: pl.DataFrame,
    catalog: CatalogResource,
    output: OutputFiles,
):
    """Rate the month for every customer; usage no charge prices goes to unrated_usage.csv.

    Per customer and provider only one of the gateway log and the provider's usage report is
    billed (the catalog's ``billing_source``); the other is set aside, listed per customer in
    billing_source.csv and still compared by the metering-drift report (reconciliation reads
    monthly_usage, both sides)."""
    month = month_of(context)
    the_catalog = catalog.load()
    split = split_billing_source(monthly_usage, the_catalog)
    rated = rate_month(split.billable, the_catalog, month)
    lines, unrated = rated.lines, rated.unrated
    folder = output.month_dir(month)
    unrated_path = folder / "unrated_usage.csv"
    write_csv(unrated, unrated_path)
    sources_path = folder / "billing_source.csv"
    write_csv(split.decisions, sources_path)
    fallbacks = split.fallbacks
    if fallbacks.height:
        context.log.warning(
            f"{fallbacks.height} customer x provider pair(s) billed from the non-authoritative source "
            f"because the authoritative one had no usage this month: see {sources_path}"
        )
    # Sums in 128 bits: a held customer's usage may not fit 64 (rating.assign).
    attributed = (
        monthly_usage.filter(pl.col("customer_id").is_not_null())["quantity"].cast(pl.Int128).sum()
    )
    set_aside = sum(split.set_aside_by_source().values())
    usage_lines = lines.filter(pl.col("consideration") == "variable")
    rated_units, included = usage_lines["quantity"].sum(), usage_lines["included_quantity"].sum()
    held_units = int(rated.at_risk["quantity"].sum() or 0)
    accounted = rated_units + included + unrated["quantity"].sum() + set_aside + held_units
    yield dg.Output(
        lines,
        output_name="rated_charges",
        metadata={
            "lines": lines.height,
            "customers": lines["customer_id"].n_unique(),
            "revenue": str(_decimal_sum(lines["amount"])),
            "billing_source_fallbacks": fallbacks.height,
            "billing_source": dg.MetadataValue.path(str(sources_path)),
        },
    )
    yield dg.Output(
        unrated,
        output_name="unrated_usage",
        metadata={
            "rows": unrated.height,
            "preview": dg.MetadataValue.md(_markdown(unrated)),
            "file": dg.MetadataValue.path(str(unrated_path)),
        },
    )
    yield dg.Output(
        rated.at_risk,
        output_name="rating_at_risk",
        metadata={
            "held_customers": ", ".join(sorted(rated.at_risk["customer_id"].unique().to_list()))
            or "none",
        },
    )
    yield dg.AssetCheckResult(
        check_name=RATED_CHECK,
        asset_key="rated_charges",
        passed=attributed == accounted,
        metadata={
            "attributed_units": _units(attributed),
            "accounted_units": _units(accounted),
            "held_units": _units(held_units),
            "rated_units": rated_units,
            "included_units": included,
            "unrated_units": unrated["quantity"].sum(),
            "set_aside_units": set_aside,
            "set_aside_by_source": dg.MetadataValue.json(split.set_aside_by_source()),
            "billing_source_fallbacks": dg.MetadataValue.md(_markdown(fallbacks)),
        },
    )


@dg.asset(
    partitions_def=monthly_partitions,
    group_name="billing",
    kinds={"polars"},
    check_specs=[
        dg.AssetCheckSpec(REVENUE_CHECK, asset="reconciliation", blocking=True),
        dg.AssetCheckSpec(COST_CHECK, asset="reconciliation", blocking=True),
    ],
)
def reconciliation(
    context: dg.AssetExecutionContext,
    rated_charges: pl.DataFrame,
    provider_cost: pl.DataFrame,
    provider_reported_cost: pl.DataFrame,
    monthly_usage: pl.DataFrame,
    usage_quarantine: pl.DataFrame,
    provider_cost_quarantine: pl.DataFrame,
    rating_at_risk: pl.DataFrame,
    catalog: CatalogResource,
    output: OutputFiles,
    ledger: LedgerResource,
):
    """Revenue against provider cost per customer, provider and model, with flags for negative
    margins, unattributed usage, unpriced models and metering drift (our gateway log against the
    provider's usage report for the customer's keys). Written as reconciliation.csv (+
    metering_drift.csv, cost_drift.csv) and a one-page finance summary (reconciliation.html/.pdf)."""
    month = month_of(context)
    folder = output.month_dir(month)
    reported = monthly_usage.filter(pl.col("source").is_in(REPORT_SOURCES))
    the_catalog = catalog.load()
    drift = metering_drift(monthly_usage, reported, the_catalog, month)
    # The providers' cost pages when they landed; otherwise the cost the usage rows carried.
    costs_drift = cost_drift(
        provider_cost, provider_reported_cost if provider_reported_cost.height else None
    )
    table = reconcile(rated_charges, provider_cost, drift)
    path = folder / "reconciliation.csv"
    write_csv(table, path, reconciliation_columns(table, the_catalog))
    write_csv(drift, folder / "metering_drift.csv", metering_drift_columns(drift, the_catalog))
    write_csv(costs_drift, folder / "cost_drift.csv", COST_DRIFT_COLUMNS)
    not_billed = month_quarantine(
        usage_quarantine, provider_cost_quarantine, rating_at_risk, month
    ).filter(pl.col("kind") != KIND_NOT_BILLABLE)
    summary = SummaryRenderer().write(
        summary_context(
            table, month, drift, quarantine=not_billed, waived=holds.waived(ledger.open(), month)
        ),
        folder,
    )
    revenue, cost = _decimal_sum(table["revenue"]), _decimal_sum(table["cost"])
    rated = _decimal_sum(rated_charges["amount"])
    provider_total = _decimal_sum(provider_cost["cost"])
    unattributed = _decimal_sum(table.filter(pl.col("customer_id").is_null())["cost"])
    worst = table.filter(pl.col("customer_id").is_not_null()).sort("margin").head(10)
    flagged_drift = drift.filter(pl.col("flagged"))
    yield dg.Output(
        table,
        metadata={
            "revenue": str(revenue),
            "provider_cost": str(cost),
            "margin": str(revenue - cost),
            "unattributed_cost": str(unattributed),
            "negative_margin_rows": table.filter(
                pl.col("flags").str.contains("negative_margin")
            ).height,
            "metering_drift_customers": flagged_drift["customer_id"].n_unique(),
            "revenue_at_stake": str(_decimal_sum(flagged_drift["amount_at_stake"])),
            "cost_drift_days": costs_drift.filter(pl.col("status") != "ok").height,
            "worst_margins": dg.MetadataValue.md(_markdown(worst)),
            "metering_drift": dg.MetadataValue.md(_markdown(flagged_drift)),
            "file": dg.MetadataValue.path(str(path)),
            "summary": dg.MetadataValue.path(str(summary["html"])),
        },
    )
    yield dg.AssetCheckResult(
        check_name=REVENUE_CHECK,
        passed=revenue == rated,
        metadata={"reconciled_revenue": str(revenue), "rated_lines": str(rated)},
    )
    yield dg.AssetCheckResult(
        check_name=COST_CHECK,
        passed=cost == provider_total,
        metadata={
            "reconciled_cost": str(cost),
            "provider_total": str(provider_total),
            "unattributed": str(unattributed),
        },
    )


MONEY_AT_RISK_CHECK = "no_money_at_risk"


def unexpected_failures(failures) -> list:
    """Step failures other than the money-at-risk check's own (a blocking check on the month's
    last step: it fails that step on purpose, after every draft is written, and the holds it
    records are what issuing obeys). The runner and the failed-run sensor both ask this."""

    def expected(event) -> bool:
        error = event.step_failure_data.error if event.step_failure_data else None
        return (
            event.step_key == "quarantine_report"
            and error is not None
            and error.cls_name == "DagsterAssetCheckFailedError"
            and MONEY_AT_RISK_CHECK in error.message
        )

    return [event for event in failures if not expected(event)]


def month_quarantine(
    usage_quarantine: pl.DataFrame,
    provider_cost_quarantine: pl.DataFrame,
    rating_at_risk: pl.DataFrame,
    month: str,
) -> pl.DataFrame:
    """Everything the month did not bill: the readers' quarantine, unread cost pages, and the
    customers rating held. quarantine.csv, the holds and the finance summary all read this."""
    return pl.concat(
        [usage_quarantine, provider_cost_quarantine, rating_quarantine(rating_at_risk, month)],
        how="vertical_relaxed",
    )


def rating_quarantine(at_risk: pl.DataFrame, month: str) -> pl.DataFrame:
    """Rating's held customers (quantities or amounts past 64 bits) as quarantine rows: money at
    risk naming the customer, so their invoice is held rather than drafted smaller."""
    rows = at_risk.select(
        pl.lit("rating").alias("source"),
        pl.concat_str(
            [
                pl.lit(f"rating:{month}:"),
                pl.col("customer_id"),
                pl.lit(":"),
                pl.col("meter"),
                pl.lit(":"),
                pl.col("model").fill_null(""),
            ]
        ).alias("origin"),
        pl.lit("quantity").alias("field"),
        pl.col("reason"),
        pl.lit(KIND_MONEY_AT_RISK).alias("kind"),
        pl.col("detail").alias("message"),
        pl.col("quantity").cast(pl.String).alias("raw"),
        pl.lit(parse_month(month)[0]).alias("day"),
        pl.lit(None, pl.String).alias("account_key"),
        pl.col("customer_id"),
    )
    return conform(rows, QUARANTINE_SCHEMA)


@dg.asset(
    partitions_def=monthly_partitions,
    group_name="billing",
    kinds={"polars", "csv"},
    deps=["invoice_drafts"],  # the month's last step: its blocking check fails it after every draft
    check_specs=[
        dg.AssetCheckSpec(
            MONEY_AT_RISK_CHECK,
            asset="quarantine_report",
            blocking=True,
            description="No quarantined record that could carry money is left unwaived (RELIABILITY.md 18): "
            "unreadable or truncated files, missing next pages, bad quantities, unresolved conflicts. "
            "Issuing refuses the customers they name, or the whole month when nobody can be named.",
        )
    ],
)
def quarantine_report(
    context: dg.AssetExecutionContext,
    usage_quarantine: pl.DataFrame,
    provider_cost_quarantine: pl.DataFrame,
    rating_at_risk: pl.DataFrame,
    output: OutputFiles,
    ledger: LedgerResource,
):
    """The month's quarantined records, as quarantine.csv (with their kind: money at risk, not
    billable by design, cost), restated_usage.csv (earlier versions a later export corrected), and
    the money-at-risk records as holds in the ledger, which issuing obeys."""
    month = month_of(context)
    folder = output.month_dir(month)
    quarantine = month_quarantine(usage_quarantine, provider_cost_quarantine, rating_at_risk, month)
    path = folder / "quarantine.csv"
    write_csv(quarantine, path)
    restated = restated_usage(quarantine)
    write_csv(restated, folder / "restated_usage.csv")
    at_risk = quarantine.filter(pl.col("kind") == KIND_MONEY_AT_RISK)
    opened = ledger.open()
    holds.record_holds(
        opened,
        month,
        at_risk.select("origin", "source", "reason", "customer_id", "message")
        .unique(["origin", "reason", "customer_id"], keep="first", maintain_order=True)
        .to_dicts(),
    )
    unwaived = holds.holds(opened, month)
    by_reason = quarantine.group_by("kind", "reason").len().sort("kind", "reason")
    yield dg.Output(
        quarantine,
        metadata={
            "rows": quarantine.height,
            "money_at_risk": at_risk.height,
            "restated_records": restated.height,
            "by_reason": dg.MetadataValue.md(_markdown(by_reason, 50)),
            "file": dg.MetadataValue.path(str(path)),
        },
    )
    yield dg.AssetCheckResult(
        check_name=MONEY_AT_RISK_CHECK,
        passed=not unwaived,
        severity=dg.AssetCheckSeverity.ERROR,
        description=holds.describe(month, unwaived) if unwaived else None,
        metadata={
            "held_records": len(unwaived),
            "held_customers": ", ".join(sorted({h.customer_id for h in unwaived if h.customer_id}))
            or "none",
            "holds_whole_month": any(h.customer_id is None for h in unwaived),
            "held_origins": dg.MetadataValue.md(
                "\n".join(
                    f"- `{h.origin}` ({h.reason}, {h.customer_id or 'whole month'})"
                    for h in unwaived[:50]
                )
                or "none"
            ),
            "waived": len(holds.waived(opened, month)),
        },
    )


@dg.graph_asset(
    partitions_def=monthly_partitions,
    group_name="invoicing",
    kinds={"sqlite", "pdf"},
    check_specs=[
        dg.AssetCheckSpec(
            INVOICE_TOTALS_CHECK,
            asset="invoice_drafts",
            blocking=True,
            description="Each invoice's lines sum to its subtotal, subtotal + tax - "
            "credits = total, and all subtotals sum to the rated lines.",
        )
    ],
)
def invoice_drafts(rated_charges):
    """Draft invoices in the ledger (re-running replaces drafts, never touches issued invoices),
    with a PDF and a JSON copy per customer under <out>/<month>/invoices/. PDFs render in one step
    per customer shard (see defs/rendering.py), so more workers render faster."""
    documents, shards = save_invoice_drafts(rated_charges)
    summary, check = summarize_invoice_drafts(
        rated_charges, documents, shards.map(render_invoice_shard).collect()
    )
    return {"result": summary, check_output_name("invoice_drafts"): check}
