"""The month to date as an hourly evaluation sees it, from the stored daily and hourly partitions.

A day's ``usage_events`` (every source, normalized together: what the month-end bills) is used as
it is, unless the gateway log's hourly partitions of that day were written after it: a line that
landed since the day was ingested (today, or a late line for an earlier day). Then that day's
gateway rows come from its hourly partitions, normalized together exactly as the daily ingestion
normalizes them (same reader records, deduplicated by request id, attributed), and its other
sources from the day's ``usage_events``. Gateway rows never come from both, so nothing counts twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.schema import empty_usage
from billing_pipeline.sources.gateway_log import SOURCE as GATEWAY_SOURCE
from billing_pipeline.usage import normalize, split_raw


@dataclass(frozen=True)
class StoredDay:
    """What is stored for one day: its usage_events (None: not ingested daily), and the raw
    records of its hourly gateway partitions when they are newer than that (else None)."""

    day: dt.date
    daily: pl.DataFrame | None
    hourly_raw: pl.DataFrame | None


def month_to_date_usage(
    days: list[StoredDay],
    catalog: Catalog,
    file_order: Mapping[str, int] | Callable[[str], int] | None = None,
) -> pl.DataFrame:
    """The usage of ``days``: each day's usage_events, its gateway rows replaced by its hourly
    partitions' where those are newer (see the module docstring)."""
    frames = [empty_usage()]
    for stored in days:
        if stored.hourly_raw is None:
            if stored.daily is not None:
                frames.append(stored.daily)
            continue
        if stored.daily is not None:
            frames.append(stored.daily.filter(pl.col("source") != GATEWAY_SOURCE))
        events, quarantine = split_raw(stored.hourly_raw)
        usage, _ = normalize([events], [quarantine], catalog, file_order)
        frames.append(usage)
    return pl.concat(frames, how="vertical")
