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
from billing_pipeline.defs.resources import CatalogResource, OutputFiles
from billing_pipeline.money import ZERO
from billing_pipeline.rating import rate_month
from billing_pipeline.reconcile import reconcile
from billing_pipeline.reconcile.drift import REPORT_SOURCES, cost_drift, metering_drift
from billing_pipeline.reconcile.summary import SummaryRenderer, summary_context

REVENUE_CHECK = "revenue_equals_rated_lines"
COST_CHECK = "attributed_plus_unattributed_cost_equals_provider_total"
RATED_CHECK = "every_attributed_unit_rated_or_reported"


def month_of(context: dg.AssetExecutionContext) -> str:
    return context.partition_key[:7]


def _decimal_sum(values) -> Decimal:
    return sum((Decimal(str(v)) for v in values if v is not None), ZERO)


def _markdown(frame: pl.DataFrame, limit: int = 10) -> str:
    head = frame.head(limit)
    rows = ["| " + " | ".join(head.columns) + " |", "|" + " --- |" * len(head.columns)]
    rows += ["| " + " | ".join("" if v is None else str(v) for v in r) + " |" for r in head.iter_rows()]
    return "\n".join(rows)


@dg.asset(partitions_def=monthly_partitions, group_name="billing", kinds={"polars"})
def monthly_usage(context: dg.AssetExecutionContext, usage_events: pl.DataFrame) -> dg.Output[pl.DataFrame]:
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
        "rated_charges": dg.AssetOut(description="Invoice line items per customer plan, each with "
                                     "quantity, tiers, unit price, amount and a plain-language explanation.",
                                     group_name="billing", kinds={"polars"}),
        "unrated_usage": dg.AssetOut(description="Attributed usage no charge prices (no active "
                                     "subscription, or a model the plan does not price): reported, not billed.",
                                     group_name="billing", kinds={"polars"}),
    },
    partitions_def=monthly_partitions,
    check_specs=[dg.AssetCheckSpec(RATED_CHECK, asset="rated_charges", blocking=True,
                                   description="Attributed units = rated units + included units + unrated units.")],
)
def rated_charges(context: dg.AssetExecutionContext, monthly_usage: pl.DataFrame, catalog: CatalogResource,
                  output: OutputFiles):
    """Rate the month for every customer; usage no charge prices goes to unrated_usage.csv."""
    month = month_of(context)
    rated = rate_month(monthly_usage, catalog.load(), month)
    lines, unrated = rated.lines, rated.unrated
    unrated_path = output.month_dir(month) / "unrated_usage.csv"
    write_csv(unrated, unrated_path)
    attributed = monthly_usage.filter(pl.col("customer_id").is_not_null())["quantity"].sum()
    usage_lines = lines.filter(pl.col("consideration") == "variable")
    accounted = usage_lines["quantity"].sum() + usage_lines["included_quantity"].sum() + unrated["quantity"].sum()
    yield dg.Output(lines, output_name="rated_charges", metadata={
        "lines": lines.height,
        "customers": lines["customer_id"].n_unique(),
        "revenue": str(_decimal_sum(lines["amount"])),
    })
    yield dg.Output(unrated, output_name="unrated_usage", metadata={
        "rows": unrated.height,
        "preview": dg.MetadataValue.md(_markdown(unrated)),
        "file": dg.MetadataValue.path(str(unrated_path)),
    })
    yield dg.AssetCheckResult(check_name=RATED_CHECK, asset_key="rated_charges", passed=attributed == accounted,
                              metadata={"attributed_units": attributed, "accounted_units": accounted})


@dg.asset(
    partitions_def=monthly_partitions,
    group_name="billing",
    kinds={"polars"},
    check_specs=[
        dg.AssetCheckSpec(REVENUE_CHECK, asset="reconciliation", blocking=True),
        dg.AssetCheckSpec(COST_CHECK, asset="reconciliation", blocking=True),
    ],
)
def reconciliation(context: dg.AssetExecutionContext, rated_charges: pl.DataFrame,
                   provider_cost: pl.DataFrame, provider_reported_cost: pl.DataFrame, monthly_usage: pl.DataFrame,
                   catalog: CatalogResource, output: OutputFiles):
    """Revenue against provider cost per customer, provider and model, with flags for negative
    margins, unattributed usage, unpriced models and metering drift (our gateway log against the
    provider's usage report for the customer's keys). Written as reconciliation.csv (+
    metering_drift.csv, cost_drift.csv) and a one-page finance summary (reconciliation.html/.pdf)."""
    month = month_of(context)
    folder = output.month_dir(month)
    reported = monthly_usage.filter(pl.col("source").is_in(REPORT_SOURCES))
    drift = metering_drift(monthly_usage, reported, catalog.load(), month)
    # The providers' cost pages when they landed; otherwise the cost the usage rows carried.
    costs_drift = cost_drift(provider_cost, provider_reported_cost if provider_reported_cost.height else None)
    table = reconcile(rated_charges, provider_cost, drift)
    path = folder / "reconciliation.csv"
    write_csv(table, path)
    write_csv(drift, folder / "metering_drift.csv")
    write_csv(costs_drift, folder / "cost_drift.csv")
    summary = SummaryRenderer().write(summary_context(table, month, drift), folder)
    revenue, cost = _decimal_sum(table["revenue"]), _decimal_sum(table["cost"])
    rated = _decimal_sum(rated_charges["amount"])
    provider_total = _decimal_sum(provider_cost["cost"])
    unattributed = _decimal_sum(table.filter(pl.col("customer_id").is_null())["cost"])
    worst = table.filter(pl.col("customer_id").is_not_null()).sort("margin").head(10)
    flagged_drift = drift.filter(pl.col("flagged"))
    yield dg.Output(table, metadata={
        "revenue": str(revenue), "provider_cost": str(cost), "margin": str(revenue - cost),
        "unattributed_cost": str(unattributed),
        "negative_margin_rows": table.filter(pl.col("flags").str.contains("negative_margin")).height,
        "metering_drift_customers": flagged_drift["customer_id"].n_unique(),
        "revenue_at_stake": str(_decimal_sum(flagged_drift["amount_at_stake"])),
        "cost_drift_days": costs_drift.filter(pl.col("status") != "ok").height,
        "worst_margins": dg.MetadataValue.md(_markdown(worst)),
        "metering_drift": dg.MetadataValue.md(_markdown(flagged_drift)),
        "file": dg.MetadataValue.path(str(path)),
        "summary": dg.MetadataValue.path(str(summary["html"])),
    })
    yield dg.AssetCheckResult(check_name=REVENUE_CHECK, passed=revenue == rated,
                              metadata={"reconciled_revenue": str(revenue), "rated_lines": str(rated)})
    yield dg.AssetCheckResult(check_name=COST_CHECK, passed=cost == provider_total,
                              metadata={"reconciled_cost": str(cost), "provider_total": str(provider_total),
                                        "unattributed": str(unattributed)})


@dg.asset(partitions_def=monthly_partitions, group_name="billing", kinds={"polars", "csv"})
def quarantine_report(context: dg.AssetExecutionContext, usage_quarantine: pl.DataFrame,
                      output: OutputFiles) -> dg.Output[pl.DataFrame]:
    """The month's quarantined records, as quarantine.csv for whoever fixes the exports."""
    path = output.month_dir(month_of(context)) / "quarantine.csv"
    write_csv(usage_quarantine, path)
    by_reason = usage_quarantine.group_by("reason").len().sort("reason")
    return dg.Output(usage_quarantine, metadata={
        "rows": usage_quarantine.height,
        "by_reason": dg.MetadataValue.md(_markdown(by_reason, 50)),
        "file": dg.MetadataValue.path(str(path)),
    })


@dg.graph_asset(
    partitions_def=monthly_partitions,
    group_name="invoicing",
    kinds={"sqlite", "pdf"},
    check_specs=[dg.AssetCheckSpec(INVOICE_TOTALS_CHECK, asset="invoice_drafts", blocking=True,
                                   description="Each invoice's lines sum to its subtotal, subtotal + tax - "
                                   "credits = total, and all subtotals sum to the rated lines.")],
)
def invoice_drafts(rated_charges):
    """Draft invoices in the ledger (re-running replaces drafts, never touches issued invoices),
    with a PDF and a JSON copy per customer under <out>/<month>/invoices/. PDFs render in one step
    per customer shard (see defs/rendering.py), so more workers render faster."""
    documents, shards = save_invoice_drafts(rated_charges)
    summary, check = summarize_invoice_drafts(rated_charges, documents, shards.map(render_invoice_shard).collect())
    return {"result": summary, check_output_name("invoice_drafts"): check}
