"""Rating a month: attributed usage + the catalog -> invoice line items per customer.

Order of work, so that 10 M events stay cheap: give each event its plan by a join on (customer,
day), aggregate to customer x plan x provider x model x meter x dimensions x day, and match
charges on the distinct keys of that aggregate; only allowance-covered events stay event-level
(included units are consumed in time order) (rating/assign.py). The aggregate is grouped into
invoice lines (rating/lines.py), priced in one polars pass over the month's lines
(rating/vectorized.py): per_unit, graduated (each tier's slice by clip arithmetic), volume and
package, in **exact Int128 integers of 10^-12 currency units**, rounded once per line half up by
integer division; cost-plus lines from the price book's list prices (rating/cost_plus.py), exact,
rounded once the same way. Int128 because a product of two int64 (quantity x scaled price) cannot wrap in
it, and inputs past int64 are refused with a clear error; polars Decimal(38, s) was not chosen
because it rescales products and does not document half-up division. The lines are then worded
from those numbers (rating/wording.py), the fixed lines added (rating/fees.py) and, for the
invoice chart, each line's units per day packed (rating/daily.py).

Semantics (README "The catalog"), chosen where the design is silent:
- per-unit charges get one line per provider and model family; tiered and package charges get one
  line per charge, whose tiers apply to the whole month's quantity across the models it covers;
- allowance units are consumed first, in event time order (ties by event id), across the meters the
  allowance names; tiers then apply to the quantity left to charge;
- the base fee is prorated by subscribed days / days in the month; the minimum commitment is
  compared with the usage lines (base fee excluded) and is not prorated;
- each line is rounded once (money.ROUNDING) and the minimum-commitment true-up is computed from
  rounded lines, so every number on the invoice is a sum of numbers printed above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.rating import cost_plus
from billing_pipeline.rating.assign import AT_RISK_SCHEMA, aggregate_usage
from billing_pipeline.rating.daily import daily_points
from billing_pipeline.rating.fees import fixed_lines
from billing_pipeline.rating.lines import LINE_ORDER, LINE_SCHEMA, line_frames, usage_lines
from billing_pipeline.rating.vectorized import AMOUNT_OVERFLOW, I64_MAX, price_lines, price_table

UNRATED_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String,
    "plan_id": pl.String,
    "provider": pl.String,
    "model": pl.String,
    "meter": pl.String,
    "reason": pl.String,
    "events": pl.UInt32,
    "quantity": pl.Int64,
}


def _no_risk() -> pl.DataFrame:
    return pl.DataFrame(schema=AT_RISK_SCHEMA)


@dataclass(frozen=True)
class RatedMonth:
    lines: pl.DataFrame  # LINE_SCHEMA
    unrated: pl.DataFrame  # UNRATED_SCHEMA: attributed usage no charge prices, reported not dropped
    # AT_RISK_SCHEMA (rating/assign.py): usage of customers whose month cannot be rated exactly
    # (reason quantity_overflow, negative_quantity or amount_overflow), one row per provider x
    # meter x model. Such a customer has NO row in ``lines`` or ``unrated``: money at risk, to hold.
    at_risk: pl.DataFrame = field(default_factory=_no_risk)


def rate_month(
    usage: pl.DataFrame | pl.LazyFrame,
    catalog: Catalog,
    month: str,
    *,
    daily: bool = True,
    code_book: pl.DataFrame | None = None,
) -> RatedMonth:
    """Line items for every customer with a subscription or usage in ``month``.

    ``daily=False`` skips the per-day quantities of each line (``daily`` = "[]"), which only the
    invoice chart reads: without them a steady customer's usage is aggregated without its day.
    ``code_book``: the month's usage_key code book (usage_keys.merge_code_books), which lets the
    events be grouped by one integer instead of six strings; the lines are the same without it."""
    aggregated, series_days, at_risk = aggregate_usage(
        usage, catalog, month, by_day=daily, code_book=code_book
    )
    aggregated, periods = cost_plus.segment(aggregated, catalog, month)
    line_rows, aggregated = line_frames(aggregated, catalog)
    amounts, slices = price_lines(line_rows, price_table(catalog))
    listed = cost_plus.price(aggregated, line_rows, periods, catalog, month)
    every_amount = pl.concat([amounts.select("line_id", "amount_minor"), listed.amounts])
    overflow = _amount_overflow(line_rows, every_amount, aggregated).filter(
        ~pl.col("customer_id").is_in(listed.at_risk["customer_id"].implode())
    )  # a customer is held once: its usage is counted once in the held units
    at_risk = pl.concat([at_risk, listed.at_risk, overflow])
    points = daily_points(aggregated, series_days) if daily else None
    usage_rows = usage_lines(line_rows, catalog, month, amounts, slices, points, listed.words)
    fixed, keys = fixed_lines(catalog, month, usage_rows)
    columns = [*LINE_SCHEMA, *LINE_ORDER]
    ordered = (
        pl.concat(
            [
                usage_rows.join(
                    keys, on=["customer_id", "plan_id", "charge_id"], how="left"
                ).select(columns),
                fixed.select(columns),
            ]
        )
        .sort(*LINE_ORDER)
        .with_columns(_position().alias("position"))
    )
    held = at_risk["customer_id"].unique().implode()
    return RatedMonth(
        lines=ordered.filter(~pl.col("customer_id").is_in(held))
        .select(list(LINE_SCHEMA))
        .cast(LINE_SCHEMA),
        unrated=_unrated(aggregated)
        .filter(~pl.col("customer_id").is_in(held))
        .select(list(UNRATED_SCHEMA))
        .cast(UNRATED_SCHEMA),
        at_risk=at_risk,
    )


def _position() -> pl.Expr:
    """A line's place among its customer's lines, over lines sorted by customer (each
    customer's lines in one run): its row number less that of the run's first line (no window)."""
    row = pl.int_range(pl.len(), dtype=pl.Int64)
    starts = pl.col("customer_id").ne_missing(pl.col("customer_id").shift(1))
    return row - pl.when(starts).then(row).forward_fill()


def _unrated(aggregated: pl.DataFrame) -> pl.DataFrame:
    """Attributed usage that no charge prices, per customer, plan, provider, model and meter,
    with the reason: no subscription covers its day, or the plan has no charge for it."""
    return (
        aggregated.filter(pl.col("charge_id").is_null())
        .with_columns(
            pl.when(pl.col("plan_id").is_null())
            .then(pl.lit("no_active_subscription"))
            .otherwise(pl.lit("no_charge_in_plan"))
            .alias("reason"),
            pl.col("model_family").alias("model"),
        )
        .group_by("customer_id", "plan_id", "provider", "model", "meter", "reason")
        .agg(pl.sum("events").alias("events"), pl.sum("quantity"))
        .sort("customer_id", "provider", "model", "meter", "plan_id", "reason")
    )


def _amount_overflow(
    line_rows: pl.DataFrame, amounts: pl.DataFrame, aggregated: pl.DataFrame
) -> pl.DataFrame:
    """AT_RISK rows (reason amount_overflow) for customers with a line whose amount, in minor
    units, does not fit int64: no ledger, document or text formatter downstream holds it exactly
    (a quantity that fits can still, at a price of millions per unit, make such an amount)."""
    big = (
        line_rows.select("line_id", "customer_id")
        .join(amounts.select("line_id", "amount_minor"), on="line_id")
        .filter(pl.col("amount_minor").abs() > I64_MAX)["customer_id"]
        .unique()
    )
    if big.len() == 0:
        return pl.DataFrame(schema=AT_RISK_SCHEMA)
    return (
        aggregated.filter(pl.col("customer_id").is_in(big.implode()))
        .group_by("customer_id", "provider", pl.col("model_family").alias("model"), "meter")
        .agg(pl.sum("events"), pl.col("quantity").cast(pl.Int128).sum())
        .with_columns(
            pl.lit(AMOUNT_OVERFLOW).alias("reason"),
            pl.format(
                "customer {}: a line of its month amounts to more than 2^63-1 minor units of currency ({} of {}: {} "
                "base units): not rated, held for review",
                pl.col("customer_id"),
                pl.col("meter"),
                pl.col("model").fill_null("(no model)"),
                pl.col("quantity"),
            ).alias("detail"),
        )
        .sort("customer_id", "provider", "meter", "model", nulls_last=True)
        .select(list(AT_RISK_SCHEMA))
        .cast(AT_RISK_SCHEMA)
    )
