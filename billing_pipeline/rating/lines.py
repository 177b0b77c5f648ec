"""The month's invoice lines: the columns every line has (LINE_SCHEMA), which usage makes one line
(``line_frames``), and a usage line's columns from its price and its words (``usage_lines``).

Per-unit charges get one line per provider and model family; tiered and package charges get one
line per charge and price period, whose tiers apply to the whole month's quantity across the
models it covers (and run on across a month split by a price change).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.rating.wording import (
    charge_words,
    per_unit_explanations,
    tiered_explanations,
    with_line_words,
)

PER_MODEL = ("per_unit", "cost_plus")  # pricing models with a line per provider and model family

LINE_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String,
    "plan_id": pl.String,
    "position": pl.Int64,
    "charge_id": pl.String,
    "description": pl.String,
    "provider": pl.String,
    "meter": pl.String,
    "model": pl.String,
    "dimensions": pl.String,
    "quantity": pl.Int64,
    "included_quantity": pl.Int64,
    "unit": pl.String,
    "unit_size": pl.Int64,
    "unit_price": pl.String,
    "pricing": pl.String,
    "amount": pl.String,  # rounded to the currency's minor unit
    "currency": pl.String,
    "tiers": pl.String,  # JSON list of tier slices
    "components": pl.String,  # JSON list of {provider, model, quantity}: what the line is made of
    "daily": pl.String,  # JSON list of {day, model, quantity}: charged units per day, for the chart
    "explanation": pl.String,
    "consideration": pl.String,  # fixed | variable (IFRS 15 / ASC 606 wording)
}

# The order of a customer's lines (rating/fees.py makes the keys): each plan in subscription
# order (_customer, _sub) with its base fee, its usage lines in charge order, its true-up (_kind
# 0, 1, 2), the customer's discounts last (_kind 3); line_id orders the lines of one charge.
LINE_ORDER: dict[str, pl.DataType] = {
    "_customer": pl.Int64,
    "_sub": pl.Int64,
    "_kind": pl.Int64,
    "_charge": pl.Int64,
    "line_id": pl.Int64,
}


def line_frames(aggregated: pl.DataFrame, catalog: Catalog) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(lines, line_of): one row per invoice line with billable/before/month_total for pricing,
    and the map from aggregate keys to line_id. per_unit: a line per provider and model family;
    tiered and package: a line per price period, tiers running on across the periods."""
    kinds = pl.DataFrame(
        [(pid, c.id, c.pricing) for pid, p in catalog.plans.items() for c in p.charges],
        schema={"plan_id": pl.String, "charge_id": pl.String, "pricing": pl.String},
        orient="row",
    )
    charge_key = ["customer_id", "plan_id", "charge_id"]
    period_key = [*charge_key, "price_from"]
    # per-unit and cost-plus charges: a line per provider and model family
    per_model = pl.col("pricing").is_in(PER_MODEL)
    model_key = [*period_key, "provider", "model_family"]
    groups = (
        aggregated.filter(pl.col("charge_id").is_not_null())
        .group_by(model_key)
        .agg(pl.sum("quantity"), pl.sum("included"))
        .join(kinds, on=["plan_id", "charge_id"], how="left")
        .with_columns(
            pl.when(per_model).then(pl.col("provider")).alias("line_provider"),
            pl.when(per_model).then(pl.col("model_family")).alias("line_model"),
        )
    )
    line_key = [*period_key, "line_provider", "line_model"]
    order = pl.col("price_from").fill_null(dt.date.min)
    component = pl.struct(
        "provider", pl.col("model_family").alias("model"), "quantity"
    ).struct.json_encode()
    single = groups.filter(per_model).select(  # one group, one line: no second group-by
        *line_key,
        "pricing",
        "quantity",
        "included",
        pl.concat_list("provider").alias("providers"),
        pl.concat_list("model_family").alias("models"),
        component.alias("components"),
    )
    several = (
        groups.filter(~per_model)
        .sort(*charge_key, order, "provider", pl.col("model_family").fill_null(""))
        .group_by(line_key, maintain_order=True)
        .agg(
            pl.first("pricing"),
            pl.sum("quantity"),
            pl.sum("included"),
            pl.col("provider").unique().sort().alias("providers"),
            pl.col("model_family").unique().sort().alias("models"),
            component.str.join(",").alias("components"),
        )
    )
    lines = (
        pl.concat([single, several])
        .sort(
            *charge_key,
            order,
            pl.col("providers").list.first(),
            pl.col("models").list.first().fill_null(""),
        )
        .with_row_index("line_id")
        .with_columns(
            pl.col("line_id").cast(pl.Int64),
            (pl.col("quantity") - pl.col("included")).alias("billable"),
        )
        .with_columns(("[" + pl.col("components") + "]").alias("components"))
    )
    # Tiers and packages run on across a month split by a price change: units before this line's
    # period, and the month's total (volume). Per-unit and cost-plus prices need neither (0 and
    # their own units).
    tiered = ~pl.col("pricing").is_in(PER_MODEL)
    runs_on = lines.filter(tiered).select(
        "line_id",
        (pl.col("billable").cum_sum().over(charge_key, order_by=order) - pl.col("billable")).alias(
            "before"
        ),
        pl.col("billable").sum().over(charge_key).alias("month_total"),
    )
    lines = lines.join(runs_on, on="line_id", how="left", maintain_order="left").with_columns(
        pl.col("before").fill_null(0), pl.col("month_total").fill_null(pl.col("billable"))
    )
    line_of = groups.join(
        lines.select(*line_key, "line_id"), on=line_key, how="left", nulls_equal=True
    )
    return lines, line_of.select(*model_key, "line_id")


def usage_lines(
    line_rows: pl.DataFrame,
    catalog: Catalog,
    month: str,
    amounts: pl.DataFrame,
    slices: pl.DataFrame,
    daily: pl.DataFrame | None,
    cost_plus_words: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The month's usage lines, LINE_SCHEMA and ``line_id``, from ``line_frames``' rows, their
    vectorized prices (``price_lines``) and, when asked for, their daily chart points. Cost-plus
    lines come priced and worded (``cost_plus.price``: its WORDS_SCHEMA)."""
    described = line_rows.join(
        charge_words(line_rows, catalog, month),
        on=["plan_id", "charge_id", "price_from"],
        how="left",
        nulls_equal=True,
    )
    if daily is not None:
        described = described.join(daily, on="line_id", how="left")
    else:
        described = described.with_columns(pl.lit(None, dtype=pl.String).alias("daily"))
    per_unit = (pl.col("pricing") == "per_unit") & pl.col("line_id").is_in(
        amounts["line_id"].implode()
    )
    cost_plus = pl.col("pricing") == "cost_plus"
    tiered = described.filter(~per_unit & ~cost_plus)
    cost_plus_lines = (
        described.filter(cost_plus)
        .drop("title", "period", "unit_price")
        .join(cost_plus_words, on="line_id", how="inner")
        .with_columns(pl.col("providers").list.join("+").alias("provider"))
        if cost_plus_words is not None
        else None
    )
    per_unit_lines = per_unit_explanations(
        described.filter(per_unit).join(
            amounts.select("line_id", "amount_minor"), on="line_id", how="inner"
        )
    ).with_columns(
        pl.col("providers").list.join("+").alias("provider"), pl.lit("[]").alias("tiers")
    )
    tiered_lines = (
        tiered.drop("unit_price")
        .join(tiered_explanations(tiered, catalog, amounts, slices), on="line_id", how="inner")
        .with_columns(
            pl.when(pl.col("providers").list.len() == 1)
            .then(pl.col("providers").list.first())
            .otherwise(pl.col("providers").list.join("+"))
            .alias("provider")
        )
    )
    parts = [per_unit_lines, tiered_lines]
    if cost_plus_lines is not None and cost_plus_lines.height:
        parts.append(cost_plus_lines)
    return _columns(pl.concat(parts, how="diagonal_relaxed"))


def _columns(lines: pl.DataFrame) -> pl.DataFrame:
    """LINE_SCHEMA and ``line_id`` of worded usage lines."""
    return with_line_words(lines).select(
        "customer_id",
        "plan_id",
        pl.lit(0, dtype=pl.Int64).alias("position"),
        "charge_id",
        "description",
        "provider",
        "meter",
        pl.when(pl.col("models").list.len() == 1)
        .then(pl.col("models").list.first())
        .alias("model"),
        "dimensions",
        pl.col("billable").alias("quantity"),
        pl.col("included").alias("included_quantity"),
        "unit",
        "unit_size",
        "unit_price",
        "pricing",
        "amount",
        "currency",
        "tiers",
        "components",
        pl.col("daily").fill_null("[]"),
        "explanation",
        pl.lit("variable").alias("consideration"),
        "line_id",
    )
