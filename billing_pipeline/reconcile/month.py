"""A month's reconciliation written out: reconciliation.csv, metering_drift.csv, cost_drift.csv
and the one-page finance summary (reconciliation.html and .pdf) in the month's folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.csv_files import write_csv
from billing_pipeline.reconcile.drift import REPORT_SOURCES, cost_drift, metering_drift
from billing_pipeline.reconcile.margins import reconcile
from billing_pipeline.reconcile.reports import (
    COST_DRIFT_COLUMNS,
    metering_drift_columns,
    reconciliation_columns,
)
from billing_pipeline.reconcile.summary import SummaryRenderer, summary_context
from billing_pipeline.schema import KIND_NOT_BILLABLE

RECONCILIATION_FILE = "reconciliation.csv"


@dataclass(frozen=True)
class MonthReconciliation:
    table: (
        pl.DataFrame
    )  # RECONCILIATION_SCHEMA: revenue against cost per customer x provider x model
    metering_drift: pl.DataFrame  # DRIFT_SCHEMA
    cost_drift: pl.DataFrame  # COST_DRIFT_SCHEMA
    files: dict[str, Path]  # csv, metering_drift, cost_drift, html (and pdf)


def reconcile_month(
    month: str,
    folder: Path,
    catalog: Catalog,
    rated_charges: pl.DataFrame,
    provider_cost: pl.DataFrame,
    provider_reported_cost: pl.DataFrame,
    usage: pl.DataFrame | pl.LazyFrame,
    quarantine: pl.DataFrame,
    waived: Sequence[dict],
) -> MonthReconciliation:
    """Reconcile the month and write its files into ``folder``.

    ``usage``: the month's usage from every source: metering drift sets our gateway log against
    the provider's usage report for the customer's keys. A scan (what the month-end asset hands
    in) is summed as it is read, never held whole: only the report's rows are collected, and the
    drifted customers' rows to re-rate (10 M events: 1.4-1.9 GB less at the peak,
    benchmarks/RESULTS.md). ``provider_reported_cost``: the providers' cost pages; empty when
    none landed, and then cost drift compares against the cost the usage rows carried.
    ``quarantine``: the month's whole quarantine; the summary lists what was not billed (records
    not billable by design left out) beside the ``waived`` holds."""
    reported = usage.lazy().filter(pl.col("source").is_in(REPORT_SOURCES)).collect()
    drift = metering_drift(usage, reported, catalog, month)
    costs_drift = cost_drift(
        provider_cost, provider_reported_cost if provider_reported_cost.height else None
    )
    table = reconcile(rated_charges, provider_cost, drift)
    files = {
        "csv": folder / RECONCILIATION_FILE,
        "metering_drift": folder / "metering_drift.csv",
        "cost_drift": folder / "cost_drift.csv",
    }
    write_csv(table, files["csv"], reconciliation_columns(table, catalog))
    write_csv(drift, files["metering_drift"], metering_drift_columns(drift, catalog))
    write_csv(costs_drift, files["cost_drift"], COST_DRIFT_COLUMNS)
    not_billed = quarantine.filter(pl.col("kind") != KIND_NOT_BILLABLE)
    summary = SummaryRenderer().write(
        summary_context(table, month, drift, quarantine=not_billed, waived=list(waived)), folder
    )
    return MonthReconciliation(table, drift, costs_drift, {**files, **summary})
