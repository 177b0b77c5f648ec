"""What we owe providers: every usage event priced from the effective-dated price book.

Cost basis per row: ``price_book`` when an entry prices the usage (tokens), ``reported`` when the
provider's export carries its own cost and no entry applies (GPU time from FOCUS ``BilledCost``),
``unpriced`` otherwise: kept with zero cost and flagged, never silently dropped.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.schema import COST_DECIMAL
from billing_pipeline.usage import dimensions_match, models_match

COST_SCALE = Decimal(1).scaleb(-12)

COST_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date,
    "provider": pl.String,
    "customer_id": pl.String,
    "model_family": pl.String,
    "meter": pl.String,
    "cost_basis": pl.String,
    "events": pl.UInt32,
    "quantity": pl.Int64,
    "computed_cost": COST_DECIMAL,
    "reported_cost": COST_DECIMAL,
    "cost": COST_DECIMAL,
}


def _entry_index(catalog: Catalog) -> pl.Expr:
    """Index of the price-book entry that prices each event (the latest matching entry wins)."""
    index = pl.lit(None, dtype=pl.Int64)
    for i, entry in enumerate(catalog.price_book):
        cond = (
            (pl.col("provider") == entry.provider)
            & (pl.col("meter") == entry.meter)
            & models_match(entry.models)
            & dimensions_match(entry.dimensions)
            & (pl.col("day") >= entry.from_)
        )
        if entry.to is not None:
            cond = cond & (pl.col("day") <= entry.to)
        index = pl.when(cond).then(pl.lit(i)).otherwise(index)
    return index


def provider_cost(usage: pl.DataFrame | pl.LazyFrame, catalog: Catalog) -> pl.DataFrame:
    """Daily cost per provider, customer (null = unattributed), model family and meter."""
    grouped = (
        usage.lazy()
        .with_columns(_entry_index(catalog).alias("entry"))
        .group_by("day", "provider", "customer_id", "model_family", "meter", "entry")
        .agg(
            pl.len().alias("events"),
            pl.sum("quantity"),
            pl.col("reported_cost").sum().alias("reported_sum"),
            pl.col("reported_cost").is_not_null().any().alias("has_reported"),
        )
        .sort("day", "provider", "customer_id", "model_family", "meter", "entry", nulls_last=True)
        .collect()
    )
    computed, reported, cost, basis = [], [], [], []
    for entry_i, quantity, reported_sum, has_reported in grouped.select(
        "entry", "quantity", "reported_sum", "has_reported"
    ).iter_rows():
        rep = Decimal(reported_sum) if has_reported else None
        if entry_i is not None:
            e = catalog.price_book[entry_i]
            value = (Decimal(quantity) * e.unit_price / Decimal(e.unit_size)).quantize(COST_SCALE, ROUND_HALF_UP)
            computed.append(value)
            cost.append(value)
            basis.append("price_book")
        else:
            computed.append(None)
            cost.append(rep if rep is not None else Decimal(0))
            basis.append("reported" if rep is not None else "unpriced")
        reported.append(rep)
    return grouped.with_columns(
        pl.Series("computed_cost", computed, dtype=COST_DECIMAL),
        pl.Series("reported_cost", reported, dtype=COST_DECIMAL),
        pl.Series("cost", cost, dtype=COST_DECIMAL),
        pl.Series("cost_basis", basis, dtype=pl.String),
    ).select(list(COST_SCHEMA)).cast(COST_SCHEMA)
