"""An invoice line's charged units per day and model, the points of the invoice's usage chart:
the JSON list in the ``daily`` column of LINE_SCHEMA ([{day, model, quantity}, ...], in day,
provider, model order). ``rate_month(daily=False)`` skips them (every line's ``daily`` is "[]").
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl

from billing_pipeline.rating.vectorized import I64_MAX


def daily_points(aggregated: pl.DataFrame, series_days: pl.DataFrame) -> pl.DataFrame:
    """line_id -> JSON list of {day, model, quantity}: charged units per day, for the chart, in
    day, provider, model order. ``aggregated`` carries each row's ``line_id`` (lines.line_frames).
    Rows that carry their day give it themselves; a steady row's days come from ``series_days``.
    A month has ~10^6 such points: each is one packed integer (line, day, provider rank, model
    rank) and its units, sorted once and summed over runs of equal keys; a point's JSON is its
    units after a prefix made once per (day, model), and a line's list is the join of its points'
    texts (no separator to insert: the prefix carries it)."""
    charged = aggregated.filter(pl.col("line_id").is_not_null())
    rows = charged.select(
        "line_id",
        "provider",
        "model_family",
        "day",
        "series",
        (pl.col("quantity") - pl.col("included")).alias("billable"),
    )
    if rows.height == 0:
        return pl.DataFrame(schema={"line_id": pl.Int64, "daily": pl.String})
    providers = rows["provider"].fill_null("").unique().sort()
    models = rows["model_family"].unique().sort(nulls_last=False)
    first = min(
        [d for d in (charged["day"].min(), series_days["day"].min()) if d is not None],
        default=dt.date.min,
    )
    n_pm = max(providers.len(), 1) * max(models.len(), 1)
    n = 32 * n_pm  # keys per line: days (a month spans <= 31 from its first) x providers x models
    rank = pl.col("provider").fill_null("").replace_strict(
        providers, pl.int_range(providers.len(), eager=True), return_dtype=pl.Int64
    ) * max(models.len(), 1) + pl.col("model_family").replace_strict(
        models, pl.int_range(models.len(), eager=True), return_dtype=pl.Int64
    )
    day = (pl.col("day").cast(pl.Int32) - pl.lit(first).cast(pl.Int32)).cast(pl.Int64) * n_pm
    rows = rows.lazy().select(
        "series", "day", "billable", (pl.col("line_id") * n + rank).alias("_line_rank")
    )
    by_series = (
        rows.filter(pl.col("series").is_not_null())
        .select("series", "_line_rank")
        .join(series_days.lazy(), on="series")
        .select((pl.col("_line_rank") + day).alias("_key"), pl.col("quantity").alias("billable"))
    )
    dated = rows.filter(pl.col("series").is_null()).select(
        (pl.col("_line_rank") + day).alias("_key"), "billable"
    )
    points = _summed(_sorted(pl.concat([dated, by_series]).collect(engine="streaming")))
    prefixes = [
        f'{{"day":"{first + dt.timedelta(days=d)}","model":{json.dumps(m, ensure_ascii=False)},"quantity":'
        for d in range(32)
        for _ in range(max(providers.len(), 1))
        for m in (models.to_list() or [None])
    ]
    # a line's first point opens the list, every other closes the point before it
    texts = pl.Series([*("}," + p for p in prefixes), *("[" + p for p in prefixes)])
    line_id = pl.col("_key") // n
    opens = (line_id != line_id.shift(1)).fill_null(True)
    return (
        points.select(
            line_id.set_sorted().alias("line_id"),
            (
                pl.lit(texts).gather(pl.col("_key") % n + pl.when(opens).then(n).otherwise(0))
                + pl.col("billable").cast(pl.String)
            ).alias("point"),
        )
        .group_by("line_id", maintain_order=True)
        .agg("point")
        .select("line_id", (pl.col("point").list.join("") + "}]").alias("daily"))
    )


def _sorted(points: pl.DataFrame) -> pl.DataFrame:
    """``points`` (_key, billable) sorted by _key. When both fit one int64 (they do for any month
    seen: a key of < 2^30, daily units of < 2^32), as one packed integer: a single-column sort
    on one thread is ~5x cheaper than sorting the frame (multithreaded, it only adds CPU)."""
    low, high = points["billable"].min(), points["billable"].max()
    if low is None:
        return points
    bits = (high - low).bit_length()
    if points["_key"].min() < 0 or (points["_key"].max() << bits) >= 2**62:
        return points.sort("_key", multithreaded=False)
    packed = (pl.col("_key") * 2**bits + (pl.col("billable") - low)).alias("_packed")
    return (
        points.select(packed)
        .sort("_packed", multithreaded=False)
        .select(
            (pl.col("_packed") // 2**bits).set_sorted().alias("_key"),
            (pl.col("_packed") % 2**bits + low).alias("billable"),
        )
    )


def _summed(points: pl.DataFrame) -> pl.DataFrame:
    """``points`` sorted by _key, summed over runs of equal keys, zero sums left out: the
    differences of the running sum at each run's last row (no group-by: ~2x cheaper). Billable
    units are >= 0 (negative usage is held before rating), so the running sum cannot wrap Int64
    when its largest value times the count fits; else it runs in Int128."""
    high = points["billable"].max() or 0
    wide = pl.Int64 if high * points.height <= I64_MAX else pl.Int128
    total = pl.col("billable").cast(wide).cum_sum()
    last = (pl.col("_key") != pl.col("_key").shift(-1)).fill_null(True)
    return (
        points.with_columns(total)
        .filter(last)
        .with_columns(
            (pl.col("billable") - pl.col("billable").shift(1, fill_value=0)).cast(pl.Int64)
        )
        .filter(pl.col("billable") != 0)
    )
