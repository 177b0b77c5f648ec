"""The month's invoice lines: the columns every line has (LINE_SCHEMA), which usage makes one line
(``line_frames``), and a usage line's columns from its price and its words (``usage_lines``).

Per-unit charges get one line per provider and model family; tiered and package charges get one
line per charge and price period, whose tiers apply to the whole month's quantity across the
models it covers (and run on across a month split by a price change).
"""

from __future__ import annotations

import datetime as dt
import math

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.rating.vectorized import I64_MAX
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
    """(lines, ``aggregated`` with ``line_id``): one row per invoice line with
    billable/before/month_total for pricing, and each aggregate row's line (null where no charge
    prices the row). per_unit: a line per provider and model family; tiered and package: a line
    per price period, tiers running on across the periods.

    The aggregate's groups are sorted once in invoice order: a per-unit line is one group, a
    tiered line the run of its period's groups, so line_id is a running count over the sorted
    groups, and a row finds its line by its group's integer code, not the six string keys."""
    charge_key = ["customer_id", "plan_id", "charge_id"]
    period_key = [*charge_key, "price_from"]
    model_key = [*period_key, "provider", "model_family"]
    per_model = pl.col("pricing").is_in(PER_MODEL)
    order = pl.col("price_from").fill_null(dt.date.min)
    # A line's place: its charge and period, then (per-unit lines) its provider and model; the
    # groups of a tiered line sort by the same keys, which orders its components. Grouped and
    # sorted by each key's rank among its sorted values, packed in one integer where it fits
    # (``_ranks``): a group-by and a sort on the six string columns cost several times more.
    ranked, values, by = _ranks(aggregated, model_key)
    kinds = pl.DataFrame(
        [(pid, c.id, c.pricing) for pid, p in catalog.plans.items() for c in p.charges],
        schema={"plan_id": pl.String, "charge_id": pl.String, "pricing": pl.String},
        orient="row",
    )
    names = [f"_{k}" for k in model_key]
    groups = (
        ranked.filter(pl.col("_charge_id") > 0)
        .group_by(by)
        .agg(pl.sum("quantity"), pl.sum("included"), *[pl.first(c) for c in names if c not in by])
        .sort(by)
        .with_columns(
            pl.lit(v).gather(pl.col(c)).alias(k)
            for k, c, v in zip(model_key, names, values, strict=True)
        )
        .join(kinds, on=["plan_id", "charge_id"], how="left", maintain_order="left")
        .with_columns(
            (
                per_model
                | (pl.int_range(pl.len()) == 0)
                | pl.any_horizontal([pl.col(c) != pl.col(c).shift(1) for c in names[:4]])
            )
            .cum_sum()
            .sub(1)
            .cast(pl.Int64)
            .alias("line_id"),
            pl.struct("provider", pl.col("model_family").alias("model"), "quantity")
            .struct.json_encode()
            .alias("components"),
        )
    )
    # Per-unit lines are their group; a tiered line sums the run of groups of its period (its
    # providers and models listed once each, sorted; its components in group order).
    several = (
        groups.filter(~per_model)
        .group_by("line_id", maintain_order=True)
        .agg(
            pl.sum("quantity").alias("_quantity"),
            pl.sum("included").alias("_included"),
            # "" for usage no provider was named for: listed (providers.py), never dropped
            pl.col("provider").fill_null("").unique().sort().alias("_providers"),
            pl.col("model_family").unique().sort().alias("_models"),
            pl.col("components").str.join(",").alias("_components"),
        )
    )
    one = pl.col("pricing").is_in(PER_MODEL)

    def either(single: pl.Expr, name: str) -> pl.Expr:
        return pl.when(one).then(single).otherwise(pl.col(f"_{name}")).alias(name)

    lines = (
        groups.filter(pl.col("line_id") != pl.col("line_id").shift(1).fill_null(-1))
        .join(several, on="line_id", how="left", maintain_order="left")
        .select(
            "line_id",
            *period_key,
            pl.when(one).then(pl.col("provider")).alias("line_provider"),
            pl.when(one).then(pl.col("model_family")).alias("line_model"),
            "pricing",
            either(pl.col("quantity"), "quantity"),
            either(pl.col("included"), "included"),
            # a one-element list per line without building it element by element
            either(pl.col("provider").reshape((-1, 1)).cast(pl.List(pl.String)), "providers"),
            either(pl.col("model_family").reshape((-1, 1)).cast(pl.List(pl.String)), "models"),
            ("[" + either(pl.col("components"), "components") + "]").alias("components"),
        )
        .with_columns((pl.col("quantity") - pl.col("included")).alias("billable"))
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
    line_of = ranked.select(by).join(
        groups.select(*by, "line_id"), on=by, how="left", maintain_order="left"
    )["line_id"]
    return lines, aggregated.with_columns(line_of)


def _ranks(
    frame: pl.DataFrame, columns: list[str]
) -> tuple[pl.DataFrame, list[pl.Series], list[str]]:
    """(``frame`` with ``_<column>``: each column's rank among its sorted distinct values, 0 for
    null, the values by rank (null first), the columns to group and sort by: ``_code``, the ranks
    packed in one Int64 in the same order, where they fit, else the ranks themselves)."""
    values = [
        pl.concat([frame[c].clear(1), frame[c].drop_nulls().unique().sort()]) for c in columns
    ]
    ranks = [
        pl.col(c)
        .replace_strict(
            v[1:], pl.int_range(1, v.len(), eager=True), default=0, return_dtype=pl.Int64
        )
        .alias(f"_{c}")
        for c, v in zip(columns, values, strict=True)
    ]
    ranked = frame.with_columns(ranks)
    if math.prod(v.len() for v in values) > I64_MAX:
        return ranked, values, [f"_{c}" for c in columns]
    code = pl.lit(0, dtype=pl.Int64)
    for c, v in zip(columns, values, strict=True):
        code = code * v.len() + pl.col(f"_{c}")
    return ranked.with_columns(code.alias("_code")), values, ["_code"]


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
    lines come priced and worded (``cost_plus.price``: its WORDS_SCHEMA).

    One frame of every line: the per-unit words are expressions over it; the few tiered and
    cost-plus lines' words are made apart and joined on line_id, and so are the chart points,
    last (their ~10^8 bytes of text go through no filter or concatenation)."""
    per_unit = (pl.col("pricing") == "per_unit") & pl.col("amount_minor").is_not_null()
    cost_plus = pl.col("pricing") == "cost_plus"
    described = line_rows.join(
        charge_words(line_rows, catalog, month),
        on=["plan_id", "charge_id", "price_from"],
        how="left",
        nulls_equal=True,
    ).join(amounts.select("line_id", "amount_minor"), on="line_id", how="left")
    tiered = described.filter(~per_unit & ~cost_plus)
    worded = [tiered_explanations(tiered, catalog, amounts, slices)]
    if cost_plus_words is not None:
        worded.append(cost_plus_words)
    words = pl.concat(worded, how="diagonal_relaxed")
    words = words.select(
        "line_id",
        *[pl.col(c).alias(f"_{c}") for c in words.columns if c != "line_id"],
        *[
            pl.lit(None, dtype=pl.String).alias(f"_{c}")
            for c in ("title", "period")
            if c not in words.columns
        ],
        pl.lit(True).alias("_worded"),
    )
    lines = (
        per_unit_explanations(described)
        .join(words, on="line_id", how="left")
        .filter(~cost_plus | pl.col("_worded"))  # a cost-plus line without words is not billed
    )

    def own(name: str, per_unit_value: pl.Expr | None = None) -> pl.Expr:
        """The column as the per-unit words made it, else as the line's own words did."""
        value = pl.col(name) if per_unit_value is None else per_unit_value
        return pl.when(per_unit).then(value).otherwise(pl.col(f"_{name}")).alias(name)

    lines = lines.with_columns(
        pl.when(cost_plus).then(pl.col("_title")).otherwise(pl.col("title")).alias("title"),
        pl.when(cost_plus).then(pl.col("_period")).otherwise(pl.col("period")).alias("period"),
        own("subject"),
        own("explanation"),
        own("unit_price"),
        own("amount"),
        own("tiers", pl.lit("[]")),
        pl.when(~per_unit & ~cost_plus & (pl.col("providers").list.len() == 1))
        .then(pl.col("providers").list.first())
        .otherwise(pl.col("providers").list.join("+"))
        .alias("provider"),
    )
    lines = _columns(lines)
    if daily is not None:
        lines = lines.join(daily, on="line_id", how="left", maintain_order="left")
    else:
        lines = lines.with_columns(pl.lit(None, dtype=pl.String).alias("daily"))
    return lines.with_columns(pl.col("daily").fill_null("[]")).select(*LINE_SCHEMA, "line_id")


def _columns(lines: pl.DataFrame) -> pl.DataFrame:
    """LINE_SCHEMA (but ``daily``) and ``line_id`` of worded usage lines."""
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
        "explanation",
        pl.lit("variable").alias("consideration"),
        "line_id",
    )
