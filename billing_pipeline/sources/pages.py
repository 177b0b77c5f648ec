"""Shared walk over provider usage-API pages saved as JSON (OpenAI and Anthropic share the shape
``{"data": [bucket{..., "results": [result, ...]}], "has_more": bool, "next_page": cursor}``).

Pages are small (at most 31 buckets), so a Python walk is clear and cheap; the frame is built once
per file and the partition rules come from ``files.split_by_day``.

Three rules keep a page from losing money in silence:

- A page is read as ``utf-8-sig`` (a BOM is an encoding marker, not an error), gzipped pages
  (``.json.gz``) are read too, and a page that is not whole JSON (truncated, bad encoding) is one
  ``unreadable_file`` row: money at risk, since nobody knows what it billed.
- Pagination: a page that says ``has_more: true`` needs its successor in the landing zone. The
  fetcher saves a day's pages as ``<name>_p1.json``, ``<name>_p2.json``, ...; a page whose
  ``_p<N+1>`` is missing (or whose name has no ``_p<N>`` to find it by) adds a
  ``missing_next_page`` row naming it. Its own records still bill.
- Overlap is a time range, not an equal start: an export whose first bucket starts mid-day (the
  OpenAI cookbook's real output does) overlaps another export's full-day bucket of the same
  group. A bucket inside another file's bucket of the same ``group_key`` is counted there
  (``overlapped_bucket``, not billable by design) when the covering bucket carries at least as
  much of every meter; otherwise, and for buckets that overlap without one containing the other,
  every bucket involved is ``overlap_conflict``: money at risk, held for a person.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl

from billing_pipeline import schema
from billing_pipeline.sources import files
from billing_pipeline.sources.files import Meter, Problem

# parse(bucket, result, path_prefix) -> dict of record columns; raises Problem to reject. Besides
# the record's columns it returns ``group_key`` (every grouping field, no time) and ``end``.
ParseResult = Callable[[dict, dict, str], dict]

_TEXT = (
    "natural_key",
    "group_key",
    "provider",
    "account_key",
    "model",
    "dimensions",
    "origin",
    "raw",
    "reason",
    "field",
    "message",
)
_PAGE_NUMBER = re.compile(r"^(?P<series>.*)_p(?P<n>\d+)\.json(?:\.gz)?$", re.IGNORECASE)


def load_page(path: Path) -> object:
    """A saved page as JSON: gzip by name, UTF-8 with or without a BOM. Raises ValueError."""
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ValueError(f"not a whole gzip file: {exc}") from None
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: {exc}") from None


def successor_name(name: str) -> str | None:
    """``2026-11-01_p2.json`` -> ``2026-11-01_p3.json``; None when the name has no page number."""
    m = _PAGE_NUMBER.match(name)
    if m is None:
        return None
    suffix = name[m.end("n") :]
    return f"{m['series']}_p{int(m['n']) + 1}{suffix}"


def missing_successor(f: files.LandingFile, page: dict) -> dict | None:
    """The quarantine row for a page that says more pages follow when the next one is absent."""
    if page.get("has_more") is not True:
        return None
    nxt = successor_name(f.path.name)
    if nxt is not None and (f.path.parent / nxt).is_file():
        return None
    where = (
        f"{nxt} is not in the landing zone"
        if nxt
        else "its name has no _p<N> page number to find the next page by"
    )
    return dict(
        origin=f.rel,
        field="has_more",
        reason="missing_next_page",
        raw=files.raw_text({"has_more": True, "next_page": page.get("next_page")}),
        day=f.fallback_day(),
        message=f"page says has_more: true (next_page {page.get('next_page')!r}) but {where}; "
        "the rest of the day is not billed until it is fetched",
    )


def read_pages(
    source: str,
    landing: Path,
    folder: str,
    start: date,
    end: date,
    parse: ParseResult,
    bucket_time: Callable[[dict], object],
    ts_field: str,
    meters: list[Meter],
    primary: str,
    owner: Callable[[dict], str | None] | None = None,
):
    """Read every page file for the window into a SourceRead.

    ``bucket_time(bucket)`` gives the bucket's start as a UTC datetime (None when unusable);
    ``ts_field`` names it in quarantine rows. ``owner(result)`` is the account key a result bills
    (``openai:proj_abc``), set on rejected results too so their hold names the customer.
    """
    frame_schema = (
        {c: pl.String for c in _TEXT}
        | {
            "ts": schema.UTC_DATETIME,
            "end": schema.UTC_DATETIME,
        }
        | {m.column: pl.Int64 for m in meters}
    )
    accepted_files, quarantine = [], []
    in_window = pl.col("day").is_between(start, end, closed="left")
    for f in files.list_files(landing, folder, (".json", ".json.gz"), start, end):
        try:
            page = load_page(f.path)
        except (OSError, ValueError) as exc:
            q = files.unreadable(source, f, f"not a readable UTF-8 JSON page: {exc}"[:500])
            quarantine.append(q.filter(in_window))
            continue
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            q = files.unreadable(source, f, "page has no 'data' list", files.raw_text(page))
            quarantine.append(q.filter(in_window))
            continue
        gap = missing_successor(f, page)
        if gap is not None:
            quarantine.append(files.quarantine_frame(source, [gap]).filter(in_window))
        rows = []
        for i, bucket in enumerate(page["data"]):
            results = bucket.get("results") if isinstance(bucket, dict) else None
            if not isinstance(results, list):
                rows.append(
                    dict(
                        origin=f"{f.rel}#data[{i}]",
                        raw=files.raw_text(bucket),
                        ts=None,
                        reason="missing_field",
                        field=f"data[{i}].results",
                        message="bucket has no 'results' list",
                    )
                )
                continue
            ts = bucket_time(bucket)
            for j, result in enumerate(results):
                prefix = f"data[{i}].results[{j}]"
                row = dict(origin=f"{f.rel}#{prefix}", raw=files.raw_text(result), ts=ts)
                try:
                    if not isinstance(result, dict):
                        raise Problem("missing_field", prefix, "result is not an object")
                    if owner is not None:
                        row["account_key"] = owner(result)
                    row.update(parse(bucket, result, prefix))
                except Problem as p:
                    row.update(reason=p.reason, field=p.field, message=p.message)
                rows.append(row)
        frame = pl.DataFrame(rows, schema=frame_schema)
        accepted, rejected = files.split_by_day(frame, f, ts_field, start, end)
        accepted_files.append(accepted.with_columns(pl.lit(f.rel).alias("_file")))
        quarantine.append(files.rejected_to_quarantine(source, rejected))
    accepted = pl.concat(
        [pl.DataFrame(schema=frame_schema | {"day": pl.Date, "_file": pl.String}), *accepted_files],
        how="diagonal_relaxed",
    )
    accepted, overlapped = resolve_overlaps(accepted, [m.column for m in meters])
    events = [
        files.build_events(accepted.drop("_file").rename({"ts": "start"}), source, meters, primary)
    ]
    quarantine.append(files.rejected_to_quarantine(source, overlapped))
    return files.combine(events, quarantine)


def resolve_overlaps(
    records: pl.DataFrame, meter_columns: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split accepted bucket records into (billed, overlapping) by the time-range rule above.

    Only buckets of the same ``group_key`` from different files whose ranges overlap without being
    equal are compared (equal ranges have equal natural keys: deduplication decides those).
    """
    if records.height == 0 or records["group_key"].null_count() == records.height:
        return records, records.clear().with_columns(
            pl.lit(None, pl.String).alias(c) for c in ("reason", "field", "message")
        )
    rec = records.with_row_index("_rid")
    # Only a group that two files describe on one day can overlap (buckets never cross UTC
    # midnight): the usual month compares nothing, and no group is compared across days.
    spans = rec.select("_rid", "_file", "group_key", "day", "ts", "end", *meter_columns).filter(
        pl.col("group_key").is_not_null()
        & pl.col("end").is_not_null()
        & (pl.col("_file").n_unique().over("group_key", "day") > 1)
    )
    pairs = spans.join(spans, on=["group_key", "day"], suffix="_o").filter(
        (pl.col("_file") != pl.col("_file_o"))
        & (pl.col("ts") < pl.col("end_o"))
        & (pl.col("ts_o") < pl.col("end"))
        & ~((pl.col("ts") == pl.col("ts_o")) & (pl.col("end") == pl.col("end_o")))
    )
    if pairs.height == 0:
        return records, rec.clear().drop("_rid").with_columns(
            pl.lit(None, pl.String).alias(c) for c in ("reason", "field", "message")
        )
    inside = (pl.col("ts") >= pl.col("ts_o")) & (pl.col("end") <= pl.col("end_o"))
    contains = (pl.col("ts_o") >= pl.col("ts")) & (pl.col("end_o") <= pl.col("end"))
    pairs = pairs.with_columns(inside.alias("_inside"), contains.alias("_contains"))
    # A covering bucket is fine when what it covers fits in it, meter by meter.
    covered_sums = (
        pairs.filter(pl.col("_contains"))
        .group_by("_rid")
        .agg([pl.col(f"{c}_o").fill_null(0).sum().alias(f"{c}_sum") for c in meter_columns])
    )
    fits = (
        spans.join(covered_sums, on="_rid")
        .with_columns(
            pl.all_horizontal(
                [pl.col(f"{c}_sum") <= pl.col(c).fill_null(0) for c in meter_columns]
            ).alias("_fits")
        )
        .select("_rid", "_fits")
    )
    pairs = pairs.join(
        fits.rename({"_rid": "_rid_o", "_fits": "_cover_fits"}), on="_rid_o", how="left"
    )
    verdict = (
        pairs.group_by("_rid")
        .agg(
            (~pl.col("_inside") & ~pl.col("_contains")).any().alias("_partial"),
            (pl.col("_inside") & pl.col("_cover_fits").fill_null(False)).any().alias("_covered"),
            (pl.col("_inside") & ~pl.col("_cover_fits").fill_null(False)).any().alias("_bad_cover"),
            pl.col("_file_o").filter(pl.col("_inside")).first().alias("_cover_file"),
        )
        .join(fits, on="_rid", how="left")
        .with_columns(
            conflict=pl.col("_partial") | pl.col("_bad_cover") | ~pl.col("_fits").fill_null(True)
        )
    )
    flagged = rec.join(verdict, on="_rid", how="inner").filter(
        pl.col("conflict") | pl.col("_covered")
    )
    flagged = flagged.with_columns(
        reason=pl.when(pl.col("conflict"))
        .then(pl.lit("overlap_conflict"))
        .otherwise(pl.lit("overlapped_bucket")),
        field=pl.lit("start_time"),
        message=pl.when(pl.col("conflict"))
        .then(
            pl.lit(
                "bucket overlaps another export's bucket of the same group with quantities that do not fit "
                "inside each other; none of them is billed until a person resolves it"
            )
        )
        .otherwise(
            pl.lit("bucket lies inside ")
            + pl.col("_cover_file")
            + pl.lit("'s bucket of the same group, which carries at least as much: counted there")
        ),
    )
    billed = rec.join(flagged.select("_rid"), on="_rid", how="anti").drop("_rid")
    return billed, flagged.drop("_rid", *[c for c in verdict.columns if c != "_rid"])


def key(*parts: object) -> str:
    """Natural key text: JSON of the parts, so None, "" and "None" stay distinct."""
    return json.dumps(list(parts), default=str, separators=(",", ":"))


def text(result: dict, name: str, prefix: str, required: bool = False) -> str | None:
    value = result.get(name)
    if value is None or value == "":
        if required:
            raise Problem("missing_field", f"{prefix}.{name}", f"{name} is missing")
        return None
    return value if isinstance(value, str) else json.dumps(value)
