"""Billing periods: a month is the unit of invoicing, a UTC day the unit of ingestion (an hour
for the gateway log's fresh view)."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from functools import lru_cache

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@lru_cache(maxsize=256)  # called per customer and subscription at month-end
def parse_month(month: str) -> tuple[dt.date, dt.date]:
    """'2026-10' -> (2026-10-01, 2026-11-01): first day, and first day of the next month."""
    m = _MONTH.match(month or "")
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"month must look like YYYY-MM, got {month!r}")
    year, mon = int(m.group(1)), int(m.group(2))
    start = dt.date(year, mon, 1)
    end = dt.date(year + (mon == 12), mon % 12 + 1, 1)
    return start, end


def days_in_month(month: str) -> int:
    start, _ = parse_month(month)
    return calendar.monthrange(start.year, start.month)[1]


def month_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_label(month: str) -> str:
    start, _ = parse_month(month)
    return start.strftime("%B %Y")


def overlap_days(month: str, first: dt.date, last: dt.date | None) -> int:
    """Days of ``month`` inside the inclusive range [first, last] (last None = open-ended)."""
    start, end = parse_month(month)
    lo = max(start, first)
    hi = min(end - dt.timedelta(days=1), last or end)
    return max(0, (hi - lo).days + 1)


def utc_text(moment: dt.datetime) -> str:
    """An instant as the documents and files that say ``as_of`` write it: 2026-10-05T14:37:12Z
    (UTC, whole seconds)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def end_of_day(day: dt.date) -> dt.datetime:
    """The instant a UTC day ends (the next day's midnight): a whole day's ``as_of``."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
