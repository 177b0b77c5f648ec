"""Outcome events for outcome-based charges (``landing/outcomes/*.csv``).

Columns ``outcome_id,customer_id,outcome_type,timestamp``; one row = one outcome = one
``outcomes`` event of quantity 1 with dimensions ``{"outcome": outcome_type}``. These are our
own records, already keyed by customer: account_key ``customer:<customer_id>``. The timestamp
must be RFC 3339 with an offset (a naive time is ambiguous: ``bad_timestamp``).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from billing_pipeline import schema
from billing_pipeline.sources import files

SOURCE = "outcomes"
FOLDER = "outcomes"
METERS = [files.Meter("m_outcomes", "outcomes")]
_REQUIRED = ("outcome_id", "customer_id", "outcome_type")


def _read_file(f: files.LandingFile, start: date, end: date):
    try:
        df = pl.read_csv(f.path, infer_schema=False, null_values=[""], encoding="utf8")
    except Exception as exc:  # noqa: BLE001 - an unreadable file is one quarantine row
        q = files.unreadable(SOURCE, f, f"not a readable CSV: {exc}"[:500])
        return None, q.filter(pl.col("day").is_between(start, end, closed="left"))
    cols = df.columns
    get = files.text_column(cols)
    raw = pl.concat_str([pl.col(c).fill_null("") for c in cols], separator=",")
    # origin row = 1-based data row (header not counted), as in focus.py.
    df = df.with_row_index("row", offset=1).with_columns(
        origin=pl.lit(f.rel + ":") + pl.col("row").cast(pl.String),
        raw=raw,
        ts=files.parse_utc_expr(get("timestamp")),
        **{c: get(c) for c in _REQUIRED},
    )
    checks = [(pl.col(c).is_null(), "missing_field", c, f"{c} is empty") for c in _REQUIRED]
    df = df.with_columns(files.first_problem(checks))
    accepted, rejected = files.split_by_day(df, f, "timestamp", start, end)
    accepted = accepted.with_columns(
        natural_key=pl.col("outcome_id"),
        provider=pl.lit("internal"),
        account_key=pl.lit("customer:") + pl.col("customer_id"),
        model=pl.lit(""),
        start=pl.col("ts"),
        end=pl.col("ts"),
        m_outcomes=pl.lit(1, pl.Int64),
    )
    uniq = accepted.select("outcome_type").unique()
    uniq = uniq.with_columns(
        pl.Series(
            "dimensions",
            [schema.canonical_json({"outcome": t}) for t in uniq["outcome_type"]],
            dtype=pl.String,
        )
    )
    accepted = accepted.join(uniq, on="outcome_type", how="left")
    return files.build_events(accepted, SOURCE, METERS, "outcomes"), files.rejected_to_quarantine(
        SOURCE, rejected
    )


def read(landing: Path, start: date, end: date):
    """Outcome events whose partition day is in [start, end). start == end: a point event."""
    events, quarantine = [], []
    for f in files.list_files(landing, FOLDER, (".csv",), start, end):
        ev, q = _read_file(f, start, end)
        if ev is not None:
            events.append(ev)
        quarantine.append(q)
    return files.combine(events, quarantine)
