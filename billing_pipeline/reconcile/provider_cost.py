"""What we owe providers: every usage event priced from the effective-dated price book.

Cost basis per row: ``price_book`` when an entry prices the usage (tokens), ``reported`` when the
provider's export carries its own cost and no entry applies (GPU time from FOCUS ``BilledCost``),
``unpriced`` otherwise: kept with zero cost and flagged, never silently dropped.
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.money import round_div_expr
from billing_pipeline.rating import price_book
from billing_pipeline.rating.vectorized import I128, quantity_sum_type
from billing_pipeline.schema import COST_DECIMAL
from billing_pipeline.usage_keys import PACKED_DAYS, pack_expr, packable, unpack_exprs

COST_SCALE = Decimal(1).scaleb(-12)
ROW_NAMES = ["provider", "customer_id", "model_family", "meter"]  # a cost row's names, in order
# what a price-book entry matches (with the day)
PRICING_NAMES = ["provider", "model", "model_family", "meter", "dimensions"]

I64_MAX = 2**63 - 1

# What provider cost (and the billing-source split before it) reads of a usage row: the month's
# usage without its audit columns (ids, origins, account keys, times: half its bytes).
USAGE_COLUMNS = [
    "day",
    "source",
    "provider",
    "customer_id",
    "model",
    "model_family",
    "meter",
    "dimensions",
    "quantity",
    "reported_cost",
    "usage_key",
]

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


def provider_cost(
    usage: pl.DataFrame | pl.LazyFrame, catalog: Catalog, code_book: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Daily cost per provider, customer (null = unattributed), model family and meter.

    Events are summed first (by usage_key and day when ``code_book`` names every key: the same
    sums, on integers); the price-book entry is matched on the distinct (day, provider, model,
    meter, dimensions) keys, not per event; the cost is quantity x price / unit_size in exact
    integers of 10^-12, rounded half up once per row (the COST_DECIMAL scale), as Decimal would."""
    keys = ["day", "provider", "customer_id", "model", "model_family", "meter", "dimensions"]
    summed = _summed_by_key(usage, code_book)
    if summed is None:
        summed = _named_ids(_summed(usage.lazy(), keys, keys))
    rows, ranks, pricings, shared = summed
    # The entry is matched once per day and pricing names, and rows are grouped and ordered on
    # integers: _rank stands for (provider, customer, model family, meter) in their sorted order,
    # _pricing for (provider, model, model family, meter, dimensions); names join the result.
    entries = (
        rows.select("day", "_pricing")
        .unique()
        .join(pricings, on="_pricing")
        .select("day", "_pricing", price_book.entry_index_expr(catalog).alias("entry"))
    )
    priced = rows.join(entries, on=["day", "_pricing"], how="left", nulls_equal=True)
    # Only a rank with several pricings (models or dimensions of one family) can have rows to
    # merge; the others are one row per (day, rank, entry) already.
    merging = pl.col("_rank").is_in(shared.implode())
    columns = [
        "day",
        "_rank",
        "entry",
        pl.col("events").cast(pl.UInt32),
        pl.col("quantity").cast(I128),
        "reported_sum",
        "has_reported",
    ]
    grouped = _in_order(  # sorted while it holds integers only; the joins keep that order
        pl.concat(
            [
                priced.filter(~merging).select(columns),
                priced.filter(merging)
                .group_by("day", "_rank", "entry")
                .agg(
                    pl.sum("events"),
                    pl.sum("quantity"),
                    pl.sum("reported_sum"),
                    pl.col("has_reported").any(),
                )
                .select(columns),
            ]
        )
    )
    grouped = grouped.join(ranks, on="_rank", maintain_order="left").join(
        price_book.prices(catalog), on="entry", how="left", maintain_order="left"
    )
    computed = round_div_expr(
        pl.col("quantity").cast(I128) * pl.col("price_units"), pl.col("unit_size").cast(I128)
    )
    as_cost = (computed.cast(pl.Decimal(38, 0)) * pl.lit(COST_SCALE)).cast(COST_DECIMAL)
    reported = pl.when(pl.col("has_reported")).then(pl.col("reported_sum").cast(COST_DECIMAL))
    return (
        grouped.with_columns(
            pl.when(pl.col("entry").is_not_null()).then(as_cost).alias("computed_cost"),
            reported.alias("reported_cost"),
        )
        .with_columns(
            pl.coalesce("computed_cost", "reported_cost", pl.lit(0, dtype=COST_DECIMAL)).alias(
                "cost"
            ),
            pl.when(pl.col("entry").is_not_null())
            .then(pl.lit("price_book"))
            .when(pl.col("has_reported"))
            .then(pl.lit("reported"))
            .otherwise(pl.lit("unpriced"))
            .alias("cost_basis"),
        )
        # The cost above was computed from the exact 128-bit sum; a quantity past 64 bits (only
        # absurd or hostile usage reaches it: rating holds that customer) is shown as null
        # rather than failing every customer's month in the cast.
        .with_columns(
            pl.when(pl.col("quantity") <= I64_MAX).then(pl.col("quantity")).alias("quantity")
        )
        .select(list(COST_SCHEMA))
        .cast(COST_SCHEMA)
    )


def _in_order(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows by day, names (``_rank``) and price-book entry (nulls last): the order of a sort on
    those columns, made from one integer key (polars sorts one integer ~10x faster than three
    columns with nulls last)."""
    if rows.height == 0:
        return rows
    first, last = rows["day"].min(), rows["day"].max()
    ranks, entries = int(rows["_rank"].max()) + 1, int(rows["entry"].max() or 0) + 2
    if ((last - first).days + 1) * ranks * entries >= 2**63 or rows["day"].null_count():
        return rows.sort("day", "_rank", "entry", nulls_last=True)
    key = (
        (pl.col("day") - pl.lit(first)).dt.total_days().cast(pl.Int64) * (ranks * entries)
        + pl.col("_rank").cast(pl.Int64) * entries
        + pl.col("entry").fill_null(entries - 1)
    )
    return rows.sort(key)


# rows with ids, ranks, pricings, and the ranks that come with several pricings
Named = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.Series]


def _summed(events: pl.LazyFrame, by: list[str | pl.Expr], on: list[str]) -> pl.DataFrame:
    """Events and quantity summed ``by`` (output columns ``on``), with the reported cost and
    whether any row had one. The reported cost, a Decimal and the costliest sum, is summed over
    the rows that carry one only (most usage, tokens, has none) and joined to the rest."""
    _, sum_type = quantity_sum_type(events)  # many int64 events: summed where they cannot wrap
    counted = (
        events.group_by(by)
        .agg(pl.len().alias("events"), pl.col("quantity").cast(sum_type).sum().cast(I128))
        .collect(engine="streaming")
    )
    reported = (
        events.filter(pl.col("reported_cost").is_not_null())
        .group_by(by)
        .agg(pl.col("reported_cost").sum().alias("reported_sum"))
        .collect(engine="streaming")
    )
    return counted.join(
        reported, on=on, how="left", nulls_equal=True, maintain_order="left"
    ).with_columns(pl.col("reported_sum").is_not_null().alias("has_reported"))


def _summed_by_key(usage: pl.DataFrame | pl.LazyFrame, book: pl.DataFrame | None) -> Named | None:
    """The events summed per usage_key and day, with the ids of their names from the code book
    (``_named_ids``: no string is copied per row); None (sum by the names) without a book, or
    when an event has no key or a key the book does not know."""
    if book is None or "usage_key" not in usage.lazy().collect_schema().names():
        return None
    span = usage.lazy().select(pl.col("day").min().alias("first"), pl.col("day").max()).collect()
    first, last = span.row(0)
    if first is None or (last - first).days >= PACKED_DAYS or not packable(usage):
        return None  # no usage, or more than a month: summed by the names
    summed = (  # one integer to group on, as rating does
        _summed(usage.lazy(), [pack_expr(first)], ["_packed"])
        .with_columns(unpack_exprs(first))
        .drop("_packed")
    )
    if summed["usage_key"].null_count() or summed.join(book, on="usage_key", how="anti").height:
        return None
    ids, ranks, pricings, shared = _named_ids(book)
    rows = summed.join(ids.select("usage_key", "_rank", "_pricing"), on="usage_key", how="left")
    return rows.drop("usage_key"), ranks, pricings, shared


def _named_ids(rows: pl.DataFrame) -> Named:
    """``rows`` with ``_rank`` (``_ranked``) and ``_pricing`` (an id per distinct PRICING_NAMES),
    the two tables that name them, and the ranks that come with more than one pricing."""
    ranks = _ranked(rows)
    pricings = rows.select(PRICING_NAMES).unique().with_row_index("_pricing")
    ids = rows.join(ranks, on=ROW_NAMES, how="left", nulls_equal=True).join(
        pricings, on=PRICING_NAMES, how="left", nulls_equal=True
    )
    shared = (
        ids.group_by("_rank").agg(pl.col("_pricing").n_unique().alias("n")).filter(pl.col("n") > 1)
    )
    return ids.drop(*{*ROW_NAMES, *PRICING_NAMES}), ranks, pricings, shared["_rank"]


def _ranked(rows: pl.DataFrame) -> pl.DataFrame:
    """Each distinct (provider, customer, model family, meter) of ``rows`` with its rank in
    sorted order (nulls last), as ``_rank``."""
    return rows.select(ROW_NAMES).unique().sort(ROW_NAMES, nulls_last=True).with_row_index("_rank")
