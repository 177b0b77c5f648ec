"""The provider price book read against usage: which entry prices a usage row on a day, at what
price, and on which days inside a month an entry's price starts or stops.

One rule for the cost side (reconcile/provider_cost.py: what we owe providers) and for cost-plus
charges (rating/cost_plus.py: what a customer pays on top of it), so both price the same usage at
the same list price: an entry prices a row when the provider and meter are equal, the entry's
model globs match the row's model or family, every dimension the entry names is on the row, and
the row's day is in the entry's [from, to]; where several match, the LAST one in the list wins
(import-prices writes plain entries first and the most specific last).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from billing_pipeline.catalog import Catalog, PriceBookEntry
from billing_pipeline.periods import parse_month
from billing_pipeline.rating.vectorized import price_units
from billing_pipeline.usage import dimensions_match, models_match


def matches(entry: PriceBookEntry) -> pl.Expr:
    """Whether ``entry`` prices the row's provider, meter, model and dimensions (any day)."""
    return (
        (pl.col("provider") == entry.provider)
        & (pl.col("meter") == entry.meter)
        & models_match(entry.models)
        & dimensions_match(entry.dimensions)
    )


def in_effect(entry: PriceBookEntry, day: pl.Expr) -> pl.Expr:
    cond = day >= entry.from_
    return cond if entry.to is None else cond & (day <= entry.to)


def entry_index_expr(catalog: Catalog, day: pl.Expr | None = None) -> pl.Expr:
    """Index of the price-book entry that prices each row on ``day`` (default the row's ``day``),
    null when none does."""
    day = pl.col("day") if day is None else day
    index = pl.lit(None, dtype=pl.Int64)
    for i, entry in enumerate(catalog.price_book):
        index = pl.when(matches(entry) & in_effect(entry, day)).then(pl.lit(i)).otherwise(index)
    return index


PRICES_SCHEMA: dict[str, pl.DataType] = {
    "entry": pl.Int64,
    "price_units": pl.Int64,  # 10^-12 currency units per unit_size (rating/vectorized.py)
    "unit_size": pl.Int64,
}


def prices(catalog: Catalog) -> pl.DataFrame:
    """entry -> its price in 10^-12 currency units per unit_size (exact: at most 12 decimals)."""
    rows = [
        (i, price_units(e.unit_price, f"price_book[{i}].unit_price"), e.unit_size)
        for i, e in enumerate(catalog.price_book)
    ]
    return pl.DataFrame(rows, schema=PRICES_SCHEMA, orient="row")


def boundaries(entry: PriceBookEntry, start: dt.date, end: dt.date) -> list[dt.date]:
    """The days in (start, end) on which ``entry`` starts or stops applying (the day after its
    ``to``): where a month priced by it splits."""
    days = [entry.from_]
    if entry.to is not None:
        days.append(entry.to + dt.timedelta(days=1))
    return [d for d in days if start < d < end]


def changing_entries(
    catalog: Catalog, start: dt.date, end: dt.date
) -> list[tuple[int, PriceBookEntry, list[dt.date]]]:
    """(index, entry, its boundaries) of the entries whose price starts or stops inside
    [start, end): the only ones that can split a month."""
    out = []
    for i, entry in enumerate(catalog.price_book):
        days = boundaries(entry, start, end)
        if days:
            out.append((i, entry, days))
    return out


def cost_plus_changing(catalog: Catalog, month: str) -> set[str]:
    """Plans with a cost-plus charge on one of whose meters a price-book entry starts or stops
    inside the month: their usage is rated by day, so the line can split there
    (rating/assign.py ``steady_plans``, rating/cost_plus.py ``segment``)."""
    start, end = parse_month(month)
    meters = {e.meter for _, e, _ in changing_entries(catalog, start, end)}
    return {
        pid
        for pid, plan in catalog.plans.items()
        for c in plan.charges
        if c.pricing == "cost_plus" and set(c.meters) & meters
    }
