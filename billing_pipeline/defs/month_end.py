"""Monthly assets: the month's usage, rated line items, reconciliation and invoice drafts."""


import hashlib
import os
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl

from billing_pipeline.defs.partitions import monthly_partitions
from billing_pipeline.defs.resources import CatalogResource, LedgerResource, OutputFiles
from billing_pipeline.invoicing.document import build_documents, document_json
from billing_pipeline.invoicing.issuing import issued_file_stems
from billing_pipeline.invoicing.pdf import InvoiceRenderer
from billing_pipeline.money import ZERO
from billing_pipeline.rating import rate_month
from billing_pipeline.reconcile import reconcile

INVOICE_TOTALS_CHECK = "invoice_totals_equal_rated_lines"
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


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
    unrated.write_csv(unrated_path)
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
                   provider_cost: pl.DataFrame, output: OutputFiles):
    """Revenue against provider cost per customer, provider and model, with flags for negative
    margins, unattributed usage and unpriced models. Also written as reconciliation.csv."""
    month = month_of(context)
    table = reconcile(rated_charges, provider_cost)
    path = output.month_dir(month) / "reconciliation.csv"
    table.write_csv(path)
    revenue, cost = _decimal_sum(table["revenue"]), _decimal_sum(table["cost"])
    rated = _decimal_sum(rated_charges["amount"])
    provider_total = _decimal_sum(provider_cost["cost"])
    unattributed = _decimal_sum(table.filter(pl.col("customer_id").is_null())["cost"])
    worst = table.filter(pl.col("customer_id").is_not_null()).sort("margin").head(10)
    yield dg.Output(table, metadata={
        "revenue": str(revenue), "provider_cost": str(cost), "margin": str(revenue - cost),
        "unattributed_cost": str(unattributed),
        "worst_margins": dg.MetadataValue.md(_markdown(worst)),
        "file": dg.MetadataValue.path(str(path)),
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
    usage_quarantine.write_csv(path)
    by_reason = usage_quarantine.group_by("reason").len().sort("reason")
    return dg.Output(usage_quarantine, metadata={
        "rows": usage_quarantine.height,
        "by_reason": dg.MetadataValue.md(_markdown(by_reason, 50)),
        "file": dg.MetadataValue.path(str(path)),
    })


@dg.asset(
    partitions_def=monthly_partitions,
    group_name="invoicing",
    kinds={"sqlite", "pdf"},
    check_specs=[dg.AssetCheckSpec(INVOICE_TOTALS_CHECK, asset="invoice_drafts", blocking=True,
                                   description="Each invoice's lines sum to its subtotal, subtotal + tax - "
                                   "credits = total, and all subtotals sum to the rated lines.")],
)
def invoice_drafts(context: dg.AssetExecutionContext, rated_charges: pl.DataFrame, catalog: CatalogResource, ledger: LedgerResource, output: OutputFiles):
    """Draft invoices in the ledger (re-running replaces drafts, never touches issued invoices),
    with a PDF and a JSON copy per customer under <out>/<month>/invoices/."""
    month = month_of(context)
    documents = build_documents(rated_charges, catalog.load(), month)
    the_ledger = ledger.open()
    saved = the_ledger.save_drafts(month, documents)
    folder = output.month_dir(month) / "invoices"
    folder.mkdir(exist_ok=True)
    issued = issued_file_stems(the_ledger, month)  # issued PDFs/JSON are final: never rewritten
    current = {doc["customer_id"] for doc in documents}
    for stale in [*folder.glob("*.json"), *folder.glob("*.pdf")]:
        if stale.stem not in current and stale.stem not in issued:  # a draft that no longer exists
            stale.unlink()
    renderer = InvoiceRenderer()
    rows = []
    for doc in documents:
        json_path = folder / f"{doc['customer_id']}.json"
        pdf_path = folder / f"{doc['customer_id']}.pdf"
        if doc["customer_id"] not in issued:  # late usage after issue: a correction in the ledger
            _write_text(json_path, document_json(doc))
            renderer.write_pdf(doc, pdf_path)
        rows.append({
            "customer_id": doc["customer_id"], "currency": doc["currency"], "subtotal": doc["subtotal"],
            "tax": doc["tax"], "credits_applied": doc["credits_applied"], "total": doc["total"],
            "lines": len(doc["lines"]), "json": str(json_path), "pdf": str(pdf_path),
            "pdf_sha256": hashlib.sha256(pdf_path.read_bytes()).hexdigest() if pdf_path.exists() else None,
        })
    summary = pl.DataFrame(rows, schema={"customer_id": pl.String, "currency": pl.String, "subtotal": pl.String,
                                         "tax": pl.String, "credits_applied": pl.String, "total": pl.String,
                                         "lines": pl.Int64, "json": pl.String, "pdf": pl.String,
                                         "pdf_sha256": pl.String})
    problems = []
    for doc in documents:
        lines_sum = _decimal_sum(l["amount"] for l in doc["lines"])
        if lines_sum != Decimal(doc["subtotal"]):
            problems.append(f"{doc['customer_id']}: lines {lines_sum} != subtotal {doc['subtotal']}")
        if Decimal(doc["subtotal"]) + Decimal(doc["tax"]) - Decimal(doc["credits_applied"]) != Decimal(doc["total"]):
            problems.append(f"{doc['customer_id']}: subtotal + tax - credits != total {doc['total']}")
    subtotals, rated = _decimal_sum(summary["subtotal"]), _decimal_sum(rated_charges["amount"])
    if subtotals != rated:
        problems.append(f"sum of subtotals {subtotals} != rated lines {rated}")
    yield dg.Output(summary, metadata={
        "invoices": summary.height,
        "total_revenue": str(subtotals),
        "total_billed_incl_tax": str(_decimal_sum(summary["total"])),
        "ledger": dg.MetadataValue.json(saved),
        "folder": dg.MetadataValue.path(str(folder)),
    })
    yield dg.AssetCheckResult(check_name=INVOICE_TOTALS_CHECK, passed=not problems,
                              metadata={"problems": "\n".join(problems) or "none", "subtotals": str(subtotals),
                                        "rated_lines": str(rated)})
