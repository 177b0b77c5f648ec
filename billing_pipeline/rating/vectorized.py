"""The pricing arithmetic as polars expressions over priced lines, in exact integers.

Representation: **Int128 integers in units of 10^-12 of the currency per unit_size** (``SCALE``).
Every catalog price and flat fee becomes an int64 "price unit" (``price x 10^12``; more than 12
decimals or more than 9.2e6 per unit_size is refused with the charge named). A tier slice's exact
amount is then ``quantity x price_units (+ flat_fee_units x unit_size)`` over ``10^12 x unit_size``:
a product of two int64 values, which is < 2^126 and so can never wrap in Int128 (1e12 tokens at a
12-decimal price is ~1e25, far inside). Quantities stay int64: rating/assign.py sums events
exactly (``quantity_sum_type``: Int64 where no sum can wrap it, else Int128) and takes out (money
at risk, named) every customer whose month would not fit, so the guard
here is a last line of defence that no catalog or usage should reach, never a wrapped number. The line is rounded once, half up (money.ROUNDING), by integer division
to the currency's minor unit, so the invoice amount is exact rational arithmetic, with no 28-digit
Decimal context in between.

Why not polars Decimal(38, s): it raises on overflow (good) but rescales products to the larger
input scale, so it cannot hold ``quantity x price / unit_size`` exactly, and its division rounding
is not documented as half-up; integers make exactness and the rounding mode explicit.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import polars as pl

from billing_pipeline.catalog import Catalog, Charge
from billing_pipeline.money import minor_places, round_div_expr

SCALE = 12
I64_MAX = 2**63 - 1
_FEE_LIMIT = 2**120  # flat_fee_units x unit_size per tier: sums of a few stay far below 2^127
I128 = pl.Int128
AMOUNT_OVERFLOW = "amount_overflow"  # a line's amount in minor units does not fit int64

TABLE_SCHEMA: dict[str, pl.DataType] = {
    "plan_id": pl.String,
    "charge_id": pl.String,
    "price_from": pl.Date,  # null: the charge's base prices
    "pricing": pl.String,
    "unit_size": pl.Int64,  # 1 for package pricing (the price is per package)
    "package_size": pl.Int64,
    "minor": pl.Int64,  # decimals of the plan currency's minor unit
    "per_minor": pl.Int64,  # 10^(SCALE - minor): price units in one minor unit
    "tier": pl.Int64,  # 1-based; per_unit and package have one tier
    "lower": pl.Int64,  # the tier prices units (lower, upper]
    "upper": pl.Int64,  # I64_MAX when unbounded
    "up_to": pl.Int64,  # as the catalog wrote it (null = no bound)
    "price_units": pl.Int64,
    "fee_units": pl.Int64,
}


class RatingError(ValueError):
    """Numbers the exact integer arithmetic cannot hold: the message names the charge."""


def quantity_sum_type(usage: pl.DataFrame | pl.LazyFrame) -> tuple[int, pl.DataType]:
    """(events, the type to sum their quantities in): Int64 when no sum of them can wrap it (the
    count times the largest |quantity| fits), else Int128 (2^63 events of up to 2^63 cannot wrap
    it). Int64 sums are about a third faster on 10^7 events; both are exact. One pass over the
    quantity column."""
    events, top, bottom = (
        usage.lazy()
        .select(pl.len(), pl.col("quantity").max().alias("_top"), pl.col("quantity").min())
        .collect()
        .row(0)
    )
    largest = max(abs(top or 0), abs(bottom or 0))
    return events, pl.Int64 if events * largest <= I64_MAX else I128


def price_units(value: Decimal, where: str) -> int:
    units = value.scaleb(SCALE)
    if units != units.to_integral_value():
        raise RatingError(f"{where}: {value} has more than {SCALE} decimal places")
    if abs(units) > I64_MAX:
        raise RatingError(
            f"{where}: {value} is too large to price exactly (at most 9.2 million per unit)"
        )
    return int(units)


def charge_rows(plan_id: str, charge: Charge, currency: str) -> list[dict]:
    """The charge's price table: one row per price period and tier."""
    minor = minor_places(currency)
    rows = []
    if charge.pricing == "cost_plus":  # priced from the price book: rating/cost_plus.py
        return rows
    for period in [None, *(p.from_ for p in charge.prices or [])]:
        c = charge.price_from(period)
        where = f"plans.{plan_id}.charges.{charge.id}" + (
            f" (prices from {period})" if period else ""
        )
        if c.pricing == "per_unit":
            tiers = [(None, c.unit_price, Decimal(0))]
        elif c.pricing == "package":
            tiers = [(None, c.package_price, Decimal(0))]
        else:
            tiers = [(t.up_to, t.unit_price, t.flat_fee) for t in c.tiers]
        unit_size = 1 if c.pricing == "package" else c.unit_size
        lower = 0
        for n, (up_to, price, fee) in enumerate(tiers, start=1):
            fee_units = price_units(fee, f"{where} tier {n} flat_fee")
            if abs(fee_units) * unit_size > _FEE_LIMIT:
                raise RatingError(
                    f"{where} tier {n}: flat_fee {fee} x unit_size {unit_size} is too large"
                )
            rows.append(
                {
                    "plan_id": plan_id,
                    "charge_id": charge.id,
                    "price_from": period,
                    "pricing": c.pricing,
                    "unit_size": unit_size,
                    "package_size": c.package_size,
                    "minor": minor,
                    "per_minor": 10 ** (SCALE - minor),
                    "tier": n,
                    "lower": lower,
                    "upper": I64_MAX if up_to is None else up_to,
                    "up_to": up_to,
                    "price_units": price_units(price, f"{where} tier {n} price"),
                    "fee_units": fee_units,
                }
            )
            lower = lower if up_to is None else up_to
    return rows


def price_table(catalog: Catalog) -> pl.DataFrame:
    rows = [
        r
        for plan_id, plan in catalog.plans.items()
        for c in plan.charges
        for r in charge_rows(plan_id, c, plan.currency)
    ]
    return table_frame(rows)


def table_frame(rows: Iterable[dict]) -> pl.DataFrame:
    rows = list(rows)
    return pl.DataFrame(rows, schema=TABLE_SCHEMA) if rows else pl.DataFrame(schema=TABLE_SCHEMA)


def _ceil_div(x: pl.Expr, size: pl.Expr) -> pl.Expr:
    return -((-x) // size)  # integers only: no float on large quantities


def price_lines(lines: pl.DataFrame, table: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Price every line at once.

    ``lines``: line_id, plan_id, charge_id, price_from, billable, before, month_total (int64):
    ``billable`` units after ``before`` units of the same charge earlier in the month (a price
    change splits a month; graduated tiers and packages continue), ``month_total`` picks the
    volume tier. Returns (amounts per line_id: numerator, denominator, amount_minor; tier slices
    per line_id: tier, lower, up_to, quantity, price_units, fee_units, numerator), where an amount
    is numerator / denominator currency and amount_minor is the line, rounded once, in minor units.
    """
    too_big = lines.filter(
        ((pl.col("before").cast(I128) + pl.col("billable")) > I64_MAX)
        | (pl.col("month_total").cast(I128) > I64_MAX)
        | (pl.min_horizontal("billable", "before", "month_total") < 0)
    )
    if (
        too_big.height
    ):  # rating/assign.py holds such customers first: this is a last line of defence
        who = too_big.row(0, named=True)
        raise RatingError(
            f"customer {who.get('customer_id', '?')}, plans.{who['plan_id']}.charges.{who['charge_id']}: "
            "a month's quantity for one charge is negative or exceeds 2^63-1 base units"
        )
    start, end = pl.col("before"), pl.col("before") + pl.col("billable")
    lower, upper = pl.col("lower"), pl.col("upper")

    def clip(x: pl.Expr) -> pl.Expr:
        return pl.min_horizontal(pl.max_horizontal(x, lower), upper)

    pricing = pl.col("pricing")
    graduated_q = clip(end) - clip(start)
    volume_hit = (pl.col("month_total") <= upper) & ((pl.col("month_total") > lower) | (lower == 0))
    keep = (
        pl.when(pricing == "graduated")
        .then(graduated_q > 0)
        .when(pricing == "volume")
        .then(volume_hit)
        .otherwise(pl.lit(True))
    )
    quantity = pl.when(pricing == "graduated").then(graduated_q).otherwise(pl.col("billable"))
    fee_applies = (
        pl.when(pricing == "graduated")
        .then(start <= lower)
        .when(pricing == "volume")
        .then((pl.col("billable") > 0) & (pl.col("before") == 0))
        .otherwise(pl.lit(False))
    )
    packages = _ceil_div(end, pl.col("package_size")) - _ceil_div(start, pl.col("package_size"))
    counted = pl.when(pricing == "package").then(packages).otherwise(pl.col("quantity"))
    numerator = counted.cast(I128) * pl.col("price_units") + pl.when(pl.col("fee_applies")).then(
        pl.col("fee_units").cast(I128) * pl.col("unit_size")
    ).otherwise(pl.lit(0, dtype=I128))
    slices = (
        lines.lazy()
        .join(
            table.lazy(), on=["plan_id", "charge_id", "price_from"], how="inner", nulls_equal=True
        )
        .filter(keep)
        .with_columns(quantity.alias("quantity"), fee_applies.alias("fee_applies"))
        .with_columns(numerator.alias("numerator"), counted.alias("counted"))
        .select(
            "line_id",
            "tier",
            "lower",
            "up_to",
            "quantity",
            "counted",
            "price_units",
            pl.when(pl.col("fee_applies"))
            .then(pl.col("fee_units"))
            .otherwise(0)
            .alias("fee_units"),
            "numerator",
            "unit_size",
            "minor",
            "per_minor",
        )
        .collect()
    )
    denominator = pl.lit(10**SCALE, dtype=I128) * pl.col("unit_size")
    per_minor = pl.col("per_minor").cast(I128) * pl.col("unit_size")
    amounts = (
        slices.lazy()
        .group_by("line_id")
        .agg(pl.sum("numerator"), pl.first("unit_size"), pl.first("minor"), pl.first("per_minor"))
        .select(
            "line_id",
            "numerator",
            denominator.alias("denominator"),
            round_div_expr(pl.col("numerator"), per_minor).alias("amount_minor"),
            "minor",
        )
        .collect()
    )
    return amounts, slices.drop("unit_size", "minor", "per_minor").sort("line_id", "tier")
