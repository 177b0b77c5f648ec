"""The rated month's conservation check: every attributed unit is billed, included, reported
unrated, set aside for the other billing source, or held as money at risk. None vanishes."""

from __future__ import annotations

import polars as pl

from billing_pipeline.checks import CheckOutcome, markdown_table, unit_count
from billing_pipeline.rating.billing_source import BillingSourceSplit
from billing_pipeline.rating.engine import RatedMonth


def units_accounted_check(
    usage: pl.DataFrame | pl.LazyFrame, split: BillingSourceSplit, rated: RatedMonth
) -> CheckOutcome:
    """Attributed units of ``usage`` (the month, both billing sources) = rated + included +
    unrated + set aside + held units. Summed in 128 bits: a held customer's usage may not fit 64
    (rating.assign)."""
    attributed = (
        usage.lazy()
        .select(
            pl.col("quantity").filter(pl.col("customer_id").is_not_null()).cast(pl.Int128).sum()
        )
        .collect()
        .item()
    )
    by_source = split.set_aside_by_source()
    set_aside = sum(by_source.values())
    usage_lines = rated.lines.filter(pl.col("consideration") == "variable")
    rated_units, included = usage_lines["quantity"].sum(), usage_lines["included_quantity"].sum()
    unrated = rated.unrated["quantity"].sum()
    held_units = int(rated.at_risk["quantity"].sum() or 0)
    accounted = rated_units + included + unrated + set_aside + held_units
    return CheckOutcome(
        passed=attributed == accounted,
        metadata={
            "attributed_units": unit_count(attributed),
            "accounted_units": unit_count(accounted),
            "held_units": unit_count(held_units),
            "rated_units": rated_units,
            "included_units": included,
            "unrated_units": unrated,
            "set_aside_units": set_aside,
            "set_aside_by_source": by_source,
            "billing_source_fallbacks": markdown_table(split.fallbacks),
        },
    )
