"""Shared plumbing for every source reader: which files to read, which day a record belongs to,
how a rejected record is written down, and how a wide record becomes canonical meter rows.

Each reader only knows its native format; the partition rules (dated vs undated files, window
filtering, ``outside_partition``/``bad_timestamp``) live here once, so all sources agree.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from billing_pipeline import schema
from billing_pipeline.providers import model_family_expr

RAW_LIMIT = 2000
# No single provider record carries a quadrillion units: a count above this is a corrupt or hostile
# value, and summing a few of them would overflow 64 bits. Money at risk, never billed as read.
MAX_RECORD_QUANTITY = 10**15
_DAY_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_MONTH_RE = re.compile(r"(\d{4})-(\d{2})(?!-?\d)")
_HOUR_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2})")
HOUR_DTYPE = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class LandingFile:
    """One file in the landing zone; ``day`` is set when the name carries a YYYY-MM-DD date."""

    path: Path
    rel: str  # path relative to the landing dir: the prefix of every origin
    day: date | None
    month: date | None  # first day of the YYYY-MM named in an undated file

    def fallback_day(self, valid_days: Iterable[date | None] = ()) -> date:
        """Day for a record whose own timestamp is unusable (undated files only).

        The month in the name, else the earliest valid day in the file, else the file's mtime
        (UTC): deterministic, so the row lands in exactly one partition.
        """
        if self.day is not None:
            return self.day
        if self.month is not None:
            return self.month
        days = [d for d in valid_days if d is not None]
        if days:
            return min(days)
        return datetime.fromtimestamp(self.path.stat().st_mtime, UTC).date()


def name_day(name: str) -> date | None:
    for m in _DAY_RE.finditer(name):
        try:
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            continue
    return None


def name_month(name: str) -> date | None:
    m = _MONTH_RE.search(name)
    if m and 1 <= int(m[2]) <= 12:
        return date(int(m[1]), int(m[2]), 1)
    return None


def name_hour(name: str) -> datetime | None:
    """The UTC hour a file name carries: ``2026-10-05T14.jsonl`` (a log rotated per hour) and its
    size parts ``2026-10-05T14-000.jsonl``, ``-001``, ... Such a file is also that day's file."""
    for m in _HOUR_RE.finditer(name):
        try:
            return datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), tzinfo=UTC)
        except ValueError:
            continue
    return None


def record_hour(day: date, file_hour: datetime | None, ts: datetime | None) -> datetime:
    """The hourly partition of a record of ``day``: the hour its file's name carries; else the
    hour of its own timestamp when that falls on its day; else (no usable timestamp, or another
    day's: quarantined) the day's first hour. Every record of a day lands in exactly one of its
    hours, so the hours of a day together read exactly what the day reads."""
    if file_hour is not None:
        return file_hour
    if ts is not None and ts.astimezone(UTC).date() == day:
        return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def record_hour_expr(file_hour: datetime | None) -> pl.Expr:
    """``record_hour`` over the ``day`` and ``ts`` columns of a file's records (its polars twin)."""
    if file_hour is not None:
        return pl.lit(file_hour).cast(HOUR_DTYPE)
    return (
        pl.when(pl.col("ts").dt.date() == pl.col("day"))
        .then(pl.col("ts").dt.truncate("1h"))
        .otherwise(pl.col("day").cast(HOUR_DTYPE))
        .cast(HOUR_DTYPE)
    )


def list_files(
    landing: Path, folder: str, suffixes: tuple[str, ...], start: date, end: date
) -> list[LandingFile]:
    """Files under ``landing/folder`` to read for [start, end); dated files outside it are skipped.

    A missing folder means no records, not an error.
    """
    base = Path(landing) / folder
    if not base.is_dir():
        return []
    out = []
    for p in sorted(base.iterdir()):
        if not p.is_file() or not p.name.lower().endswith(suffixes):
            continue
        day = name_day(p.name)
        if day is not None and not (start <= day < end):
            continue
        month = None if day is not None else name_month(p.name)
        out.append(LandingFile(p, p.relative_to(landing).as_posix(), day, month))
    return out


def in_window(day: date, start: date, end: date) -> bool:
    return start <= day < end


def decode_lines(data: bytes) -> tuple[list[str], list[str | None]]:
    """The file's lines and, per line, why it is not UTF-8 (None when it is).

    A UTF-8 BOM is an encoding marker, not data. One bad byte spoils only its own line: the
    rest of the file still bills (the slow per-line decode runs only for files that need it).
    """
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        lines = data.decode("utf-8").split("\n")
        return lines, [None] * len(lines)
    except UnicodeDecodeError:
        pass
    lines, errors = [], []
    for chunk in data.split(b"\n"):
        try:
            lines.append(chunk.decode("utf-8"))
            errors.append(None)
        except UnicodeDecodeError as exc:
            lines.append(chunk.decode("utf-8", errors="replace"))
            errors.append(str(exc))
    return lines, errors


# ---------------------------------------------------------------- timestamps

_TZ_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")
_NAIVE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d")


def parse_utc_expr(expr: pl.Expr, allow_naive: bool = False) -> pl.Expr:
    """RFC 3339 text -> UTC datetime (null when unparseable). Naive text counts as UTC only when
    ``allow_naive`` (FOCUS exports write ``2024-09-18 22:00:00``); elsewhere it is rejected."""
    text = expr.str.strip_chars()
    fmts = _TZ_FORMATS + (_NAIVE_FORMATS if allow_naive else ())
    return pl.coalesce(
        [text.str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC") for f in fmts]
    )


def parse_utc(value: Any) -> datetime | None:
    """Python twin of ``parse_utc_expr`` for the JSON API walks: aware RFC 3339 only."""
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return dt.astimezone(UTC)


def from_unix(value: Any) -> datetime | None:
    """OpenAI bucket bounds are Unix seconds; anything else (bool, str, float NaN) is bad."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        return None
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (OverflowError, OSError, ValueError):
        return None


# ---------------------------------------------------------------- numbers


class Problem(Exception):
    """A record-level rejection: becomes one quarantine row."""

    def __init__(self, reason: str, field: str, message: str):
        super().__init__(message)
        self.reason, self.field, self.message = reason, field, message


def count(obj: dict, key: str, field: str, required: bool = False) -> int:
    """A non-negative integer count from parsed JSON; 0 when an optional field is absent/null."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None:
        if required:
            raise Problem("missing_field", field, f"{field} is missing")
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Problem("bad_number", field, f"{field} is not a number: {value!r}"[:300])
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise Problem("bad_number", field, f"{field} is not a whole finite number: {value!r}")
        value = int(value)
    if value < 0:
        raise Problem("negative_quantity", field, f"{field} is negative: {value}")
    if value > MAX_RECORD_QUANTITY:
        raise Problem(
            "implausible_quantity",
            field,
            f"{field} is {value:,}, above the per-record ceiling "
            f"of {MAX_RECORD_QUANTITY:,}: not billed as read",
        )
    return value


# ---------------------------------------------------------------- quarantine


def raw_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text[:RAW_LIMIT]


def quarantine_frame(source: str, rows: list[dict]) -> pl.DataFrame:
    """Rows with origin/field/reason/message/raw/day -> QUARANTINE_SCHEMA."""
    if not rows:
        return schema.empty_quarantine()
    frame = pl.DataFrame(
        [{**r, "source": source, "raw": (r.get("raw") or "")[:RAW_LIMIT]} for r in rows],
        schema_overrides={k: v for k, v in schema.QUARANTINE_SCHEMA.items()},
    )
    return schema.conform(frame, schema.QUARANTINE_SCHEMA)


def unreadable(source: str, f: LandingFile, message: str, raw: str = "") -> pl.DataFrame:
    """The whole file could not be read: one row for the file, origin = the file itself."""
    row = dict(
        origin=f.rel,
        field="",
        reason="unreadable_file",
        message=message,
        raw=raw,
        day=f.fallback_day(),
    )
    return quarantine_frame(source, [row])


def unreadable_export(
    source: str,
    f: LandingFile,
    label: str,
    exc: Exception,
    superseded_by: str | None,
    start: date,
    end: date,
) -> pl.DataFrame:
    """A cloud export file that could not be read: money at risk, unless a newer delivery of its
    billing period replaced it anyway (then it is ``superseded_delivery``, not billable)."""
    if superseded_by:
        q = unreadable(source, f, f"superseded by {superseded_by} (and not readable: {exc})"[:500])
        q = q.with_columns(reason=pl.lit("superseded_delivery"))
    else:
        q = unreadable(source, f, f"not a readable {label} export: {exc}"[:500])
    return q.filter(pl.col("day").is_between(start, end, closed="left"))


def split_by_day(
    frame: pl.DataFrame, f: LandingFile, ts_field: str, start: date, end: date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Apply the partition rules to one file's records.

    Input columns: ``origin``, ``raw``, ``ts`` (UTC datetime, null when missing/bad), and
    ``reason``/``field``/``message`` (null when the record is otherwise fine). Returns
    (accepted records with ``day``, rejected records with reason), both limited to [start, end).
    A record keeps the first problem found; timestamp checks apply to otherwise-fine records.
    """
    ts_day = pl.col("ts").dt.date()
    if f.day is not None:
        day = pl.lit(f.day)
        outside = ts_day != pl.lit(f.day)
    else:
        valid = frame.filter(pl.col("ts").is_not_null() & pl.col("reason").is_null())
        fallback = f.fallback_day(valid["ts"].dt.date().to_list() if valid.height else [])
        day = ts_day.fill_null(pl.lit(fallback))
        outside = pl.lit(False)
    fine = pl.col("reason").is_null()
    bad_ts = fine & pl.col("ts").is_null()
    outside = fine & ~bad_ts & outside
    frame = frame.with_columns(
        day=day,
        reason=pl.when(bad_ts)
        .then(pl.lit("bad_timestamp"))
        .when(outside)
        .then(pl.lit("outside_partition"))
        .otherwise(pl.col("reason")),
        field=pl.when(bad_ts | outside).then(pl.lit(ts_field)).otherwise(pl.col("field")),
        message=pl.when(bad_ts)
        .then(pl.lit(f"{ts_field} is missing, unparseable or has no UTC offset"))
        .when(outside)
        .then(
            pl.lit(f"{ts_field} falls on ")
            + ts_day.cast(pl.String)
            + pl.lit(f", not on the file's day {f.day}")
        )
        .otherwise(pl.col("message")),
    ).filter(pl.col("day").is_between(pl.lit(start), pl.lit(end), closed="left"))
    rejected = frame.filter(pl.col("reason").is_not_null()).with_columns(
        raw=pl.col("raw").str.slice(0, RAW_LIMIT)
    )
    return frame.filter(pl.col("reason").is_null()), rejected


# ---------------------------------------------------------------- canonical rows


@dataclass(frozen=True)
class Meter:
    """One quantity column of a wide record frame and the canonical meter it feeds."""

    column: str
    meter: str
    variant: str = ""  # extra part of event_id when one record has two rows of the same meter
    extra_dims: dict | None = None  # merged into the record's dimensions for this row only


def _merge_dims(dimensions: pl.Series, extra: dict) -> pl.Expr:
    """``dimensions`` with ``extra`` merged in: computed once per distinct value, not per row."""
    distinct = dimensions.unique().to_list()
    merged = [schema.canonical_json({**json.loads(text or "{}"), **extra}) for text in distinct]
    return pl.col("dimensions").replace_strict(distinct, merged, return_dtype=pl.String)


def _model_family_of(models: pl.Series) -> pl.Expr:
    """``model_family_expr`` worked out once per distinct model id and looked up per row."""
    distinct = models.drop_nulls().unique()
    families = pl.DataFrame({"model": distinct}).select(model_family_expr("model")).to_series()
    return pl.col("model").replace_strict(distinct, families, default=None, return_dtype=pl.String)


def build_events(
    frame: pl.DataFrame, source: str, meters: list[Meter], primary: str
) -> pl.DataFrame:
    """Wide accepted records -> USAGE_SCHEMA rows: one per meter with quantity > 0.

    ``frame`` needs ``natural_key`` plus provider, account_key, model, dimensions, start, end,
    origin, day (reported_cost optional) and the meter columns. A record whose meters are all
    zero keeps one zero row for ``primary`` so every accepted record stays visible.
    """
    if frame.height == 0:
        return schema.empty_usage()
    cols = [m.column for m in meters]
    keep = [c for c in frame.columns if c in schema.USAGE_SCHEMA or c in cols or c == "natural_key"]
    base = (
        frame.select(keep)
        .with_row_index("_row")
        .with_columns(  # only what a usage row needs: parts copy it
            pl.lit(source).alias("source"),
            pl.sum_horizontal([pl.col(c).fill_null(0) for c in cols]).alias("_total"),
        )
        .with_columns(schema.event_id_expr("source", "natural_key").alias("record_id"))
    )
    # A record's rows in canonical order (usage.canonical_order: meter, then event_id): by the
    # meter's name, variants of one meter in the list's order (canonical_order orders those by
    # event_id when they meet in one record). Rows that arrive in canonical order are written as
    # they are; any other order makes normalize move every column of the day (a 10 M-event month
    # through Dagster: usage_tables 24.5 -> 14.1 s, its peak 6.1 -> 4.0 GB; benchmarks/RESULTS.md).
    rank = {name: r for r, name in enumerate(sorted({m.meter for m in meters}))}
    parts = []
    for m in meters:
        part = base.with_columns(
            pl.lit(rank[m.meter]).alias("_meter_pos"),
            pl.lit(m.meter).alias("meter"),
            pl.lit(m.variant).alias("variant"),
            pl.col(m.column).fill_null(0).cast(pl.Int64).alias("quantity"),
        )
        keep = (pl.col("quantity") > 0) | (
            (pl.col("_total") == 0) & pl.lit(m.meter == primary and not m.variant)
        )
        part = part.filter(keep)
        if m.extra_dims:
            part = part.with_columns(
                _merge_dims(part["dimensions"], m.extra_dims).alias("dimensions")
            )
        parts.append(part.drop(cols))
    long = pl.concat(parts, how="diagonal_relaxed")
    long = long.with_columns(
        schema.sha256_id_expr(
            pl.concat_str(  # = event_id_expr(record_id, meter[, variant]), one hash
                [
                    pl.col("record_id"),
                    pl.col("meter"),
                    pl.when(pl.col("variant") != "").then(pl.col("variant")),
                ],
                separator="\x1f",
                ignore_nulls=True,
            )
        ).alias("event_id"),
        _model_family_of(long["model"]).alias("model_family"),
        pl.lit(None, pl.String).alias("customer_id"),
    )
    # Record order as read, then meter order: one integer key, and (lazily) only the canonical
    # columns are moved by the sort (stable: a meter's variants keep the list's order).
    order = pl.col("_row").cast(pl.Int64) * len(meters) + pl.col("_meter_pos")
    return schema.conform(long.lazy().sort(order, maintain_order=True), schema.USAGE_SCHEMA)


def first_problem(checks: list[tuple[pl.Expr, str, pl.Expr | str, pl.Expr | str]]) -> list[pl.Expr]:
    """(condition, reason, field, message) in priority order -> reason/field/message columns."""
    out = []
    for idx, name in ((1, "reason"), (2, "field"), (3, "message")):
        expr = pl.lit(None, pl.String)
        for check in reversed(checks):
            value = check[idx] if isinstance(check[idx], pl.Expr) else pl.lit(check[idx])
            expr = pl.when(check[0]).then(value).otherwise(expr)
        out.append(expr.alias(name))
    return out


def apply_checks(
    frame: pl.DataFrame, checks: list[tuple[pl.Expr, str, pl.Expr | str, pl.Expr | str]]
) -> pl.DataFrame:
    """``first_problem`` as columns, with the messages built only for the rows that fail a check
    (building every message for every row costs more than all the parsing). Row order changes."""
    failing = pl.any_horizontal([c[0].fill_null(False) for c in checks])
    flagged = frame.with_columns(failing.alias("_failing"))
    ok = flagged.filter(~pl.col("_failing")).with_columns(
        pl.lit(None, pl.String).alias(name) for name in ("reason", "field", "message")
    )
    bad = flagged.filter(pl.col("_failing")).with_columns(first_problem(checks))
    return pl.concat([ok, bad]).drop("_failing")


def rejected_to_quarantine(source: str, rejected: pl.DataFrame) -> pl.DataFrame:
    return schema.conform(
        rejected.with_columns(pl.lit(source).alias("source")), schema.QUARANTINE_SCHEMA
    )


@dataclass(frozen=True)
class SourceRead:
    """What one reader made of a window: canonical events, quarantined records, and the count of
    records read (``events["origin"].n_unique() + quarantine.height``), so nothing goes missing."""

    events: pl.DataFrame  # schema.USAGE_SCHEMA; customer_id null (attribution happens later)
    quarantine: pl.DataFrame  # schema.QUARANTINE_SCHEMA
    records_read: int


def combine(
    events: list[pl.DataFrame], quarantine: list[pl.DataFrame], accepted_records: int | None = None
) -> SourceRead:
    """Concatenate per-file frames into a SourceRead (records_read counts both sides).

    ``accepted_records``: the reader's own count of accepted records, when it has one (saves a
    distinct count over millions of origins); otherwise the distinct origins of the events.
    Quarantine rows a reader left without a kind get it from their reason, here for every reader.
    """
    ev = pl.concat([schema.empty_usage(), *events], how="vertical_relaxed")
    qu = pl.concat([schema.empty_quarantine(), *quarantine], how="vertical_relaxed").with_columns(
        pl.coalesce("kind", schema.quarantine_kind_expr()).alias("kind")
    )  # every reader's rows, one rule
    accepted = ev["origin"].n_unique() if accepted_records is None else accepted_records
    return SourceRead(events=ev, quarantine=qu, records_read=accepted + qu.height)


def map_unique(frame: pl.DataFrame, cols: list[str], fn, name: str, dtype) -> pl.DataFrame:
    """Apply a Python function once per distinct value combination (few), then join back."""
    uniq = frame.select(cols).unique()
    values = [fn(*row) for row in uniq.iter_rows()]
    uniq = uniq.with_columns(pl.Series(name, values, dtype=dtype))
    return frame.join(uniq, on=cols, how="left", nulls_equal=True)


def text_column(columns: list[str]):
    """For a CSV read as text: the column's values with surrounding blanks stripped, or nulls when
    the file has no such column (an optional field of the format)."""

    def get(name: str) -> pl.Expr:
        if name in columns:
            return pl.col(name).str.strip_chars()
        return pl.lit(None, pl.String)

    return get
