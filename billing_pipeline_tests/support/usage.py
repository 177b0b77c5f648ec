"""Canonical usage rows written by hand: one event as a dict, a list of them as USAGE_SCHEMA."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import polars as pl

from billing_pipeline.schema import USAGE_SCHEMA, conform, model_family_expr

DAY = dt.date(2026, 10, 1)


def usage_row(**fields) -> dict:
    """One usage event; ``fields`` override the canonical one: acme's 100,000 gpt-4o output
    tokens through the gateway log on ``day`` (2026-10-01), from midnight to 01:00 UTC.
    Unless given, ``record_id`` is the ``event_id``, ``account_key`` is the customer's gateway key
    and ``start`` and ``end`` follow ``day``."""
    day = fields.get("day", DAY)
    event_id = fields.get("event_id", "e1")
    start = fields.get("start", dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC))
    row = {
        "event_id": event_id,
        "record_id": event_id,
        "source": "gateway_log",
        "provider": "openai",
        "account_key": f"gateway:{fields.get('customer_id', 'acme')}",
        "customer_id": "acme",
        "model": "gpt-4o",
        "meter": "output_tokens",
        "dimensions": "{}",
        "quantity": 100_000,
        "start": start,
        "end": start + dt.timedelta(hours=1),
        "origin": f"t:{event_id}",
        "day": day,
    }
    return row | fields


def usage_frame(rows: Iterable[dict]) -> pl.DataFrame:
    """``usage_row``s as the canonical usage table, each row's model family from its model."""
    frame = pl.DataFrame(list(rows)).with_columns(model_family_expr().alias("model_family"))
    return conform(frame, USAGE_SCHEMA)
