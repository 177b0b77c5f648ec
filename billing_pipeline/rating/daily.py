"""An invoice line's charged units per day and model, the points of the invoice's usage chart:
the JSON list in the ``daily`` column of LINE_SCHEMA ([{day, model, quantity}, ...], in day,
provider, model order). ``rate_month(daily=False)`` skips them (every line's ``daily`` is "[]").
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl


def daily_points(
    aggregated: pl.DataFrame, series_days: pl.DataFrame, line_of: pl.DataFrame
) -> pl.DataFrame:
    """line_id -> JSON list of {day, model, quantity}: charged units per day, for the chart, in
    day, provider, model order. Rows that carry their day give it themselves; a steady row's days
    come from ``series_days``. A month has ~10^6 such points: they are summed and sorted on one
    packed integer (line, day, provider rank, model rank), and each point's JSON is its quantity
    after a prefix made once per (day, model)."""
    keys = ["customer_id", "plan_id", "charge_id", "price_from", "provider", "model_family"]
    rows = (
        aggregated.filter(pl.col("charge_id").is_not_null())
        .join(line_of, on=keys, how="inner", nulls_equal=True)
        .select(
            "line_id",
            "provider",
            "model_family",
            "day",
            "series",
            (pl.col("quantity") - pl.col("included")).alias("billable"),
        )
    )
    if rows.height == 0:
        return pl.DataFrame(schema={"line_id": pl.Int64, "daily": pl.String})
    providers = rows["provider"].fill_null("").unique().sort()
    models = rows["model_family"].unique().sort(nulls_last=False)
    first = min(
        [d for d in (rows["day"].min(), series_days["day"].min()) if d is not None],
        default=dt.date.min,
    )
    n_p, n_m, n_d = (
        max(providers.len(), 1),
        max(models.len(), 1),
        32,
    )  # days: a month spans <= 31 from its first
    rank = pl.col("provider").fill_null("").replace_strict(
        providers, pl.int_range(providers.len(), eager=True), return_dtype=pl.Int64
    ) * n_m + pl.col("model_family").replace_strict(
        models, pl.int_range(models.len(), eager=True), return_dtype=pl.Int64
    )
    rows = rows.with_columns(rank.alias("_rank")).drop("provider", "model_family")
    by_series = (
        rows.filter(pl.col("series").is_not_null())
        .drop("day", "billable")
        .join(series_days.rename({"quantity": "billable"}), on="series")
    )
    points = pl.concat([rows.filter(pl.col("series").is_null()), by_series], how="diagonal").select(
        (
            (pl.col("line_id") * n_d + (pl.col("day") - first).dt.total_days()) * (n_p * n_m)
            + pl.col("_rank")
        ).alias("_key"),
        "billable",
    )
    prefixes = pl.Series(
        [
            f'{{"day":"{first + dt.timedelta(days=d)}","model":{json.dumps(m, ensure_ascii=False)},"quantity":'
            for d in range(n_d)
            for _ in range(n_p)
            for m in (models.to_list() or [None])
        ]
    )
    return (
        points.group_by("_key")
        .agg(pl.sum("billable"))
        .filter(pl.col("billable") != 0)
        .sort("_key")
        .select(
            (pl.col("_key") // (n_d * n_p * n_m)).alias("line_id"),
            (
                pl.lit(prefixes).gather(pl.col("_key") % (n_d * n_p * n_m))
                + pl.col("billable").cast(pl.String)
                + "}"
            ).alias("point"),
        )
        .group_by("line_id", maintain_order=True)
        .agg(pl.col("point").str.join(","))
        .select("line_id", ("[" + pl.col("point") + "]").alias("daily"))
    )
