"""Shared walk over provider usage-API pages saved as JSON (OpenAI and Anthropic share the shape
``{"data": [bucket{..., "results": [result, ...]}]}``).

Pages are small (at most 31 buckets), so a Python walk is clear and cheap; the frame is built once
per file and the partition rules come from ``files.split_by_day``.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Callable

import polars as pl

from billing_pipeline import schema
from billing_pipeline.sources import files
from billing_pipeline.sources.files import Meter, Problem

# parse(bucket, result, path_prefix) -> dict of record columns; raises Problem to reject.
ParseResult = Callable[[dict, dict, str], dict]

_TEXT = ("natural_key", "provider", "account_key", "model", "dimensions", "origin", "raw", "reason", "field", "message")


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
):
    """Read every page file for the window into a SourceRead.

    ``bucket_time(bucket)`` gives the bucket's start as a UTC datetime (None when unusable);
    ``ts_field`` names it in quarantine rows.
    """
    frame_schema = {c: pl.String for c in _TEXT} | {
        "ts": schema.UTC_DATETIME,
        "end": schema.UTC_DATETIME,
    } | {m.column: pl.Int64 for m in meters}
    events, quarantine = [], []
    for f in files.list_files(landing, folder, (".json",), start, end):
        try:
            page = json.loads(f.path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            q = files.unreadable(source, f, f"not a readable UTF-8 JSON page: {exc}")
            quarantine.append(q.filter(pl.col("day").is_between(start, end, closed="left")))
            continue
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            q = files.unreadable(source, f, "page has no 'data' list", files.raw_text(page))
            quarantine.append(q.filter(pl.col("day").is_between(start, end, closed="left")))
            continue
        rows = []
        for i, bucket in enumerate(page["data"]):
            results = bucket.get("results") if isinstance(bucket, dict) else None
            if not isinstance(results, list):
                rows.append(
                    dict(origin=f"{f.rel}#data[{i}]", raw=files.raw_text(bucket), ts=None, reason="missing_field",
                         field=f"data[{i}].results", message="bucket has no 'results' list")
                )
                continue
            ts = bucket_time(bucket)
            for j, result in enumerate(results):
                prefix = f"data[{i}].results[{j}]"
                row = dict(origin=f"{f.rel}#{prefix}", raw=files.raw_text(result), ts=ts)
                try:
                    if not isinstance(result, dict):
                        raise Problem("missing_field", prefix, "result is not an object")
                    row.update(parse(bucket, result, prefix))
                except Problem as p:
                    row.update(reason=p.reason, field=p.field, message=p.message)
                rows.append(row)
        frame = pl.DataFrame(rows, schema=frame_schema)
        accepted, rejected = files.split_by_day(frame, f, ts_field, start, end)
        events.append(files.build_events(accepted.rename({"ts": "start"}), source, meters, primary))
        quarantine.append(files.rejected_to_quarantine(source, rejected))
    return files.combine(events, quarantine)


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
