"""One day's alerts, end to end without Dagster: spend -> alerts -> outbox, hard caps -> table + file."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from sqlalchemy.engine import Engine

from billing_pipeline.alerts import outbox
from billing_pipeline.alerts.rules import (
    Alert,
    AlertRules,
    daily_spend,
    limit_alerts,
    over_hard_cap,
    spike_alerts,
)
from billing_pipeline.catalog import Catalog
from billing_pipeline.rendering.pdf import write_atomically

HARD_CAPS_FILE = "hard_caps.json"
MAX_AGE = dt.timedelta(days=7)  # alerts about days older than this are recorded, not sent


@dataclass(frozen=True)
class DayAlerts:
    day: dt.date
    spend: pl.DataFrame  # customer_id, day, spend
    alerts: list[Alert]  # every alert the day's numbers justify (new or already recorded)
    new: list[str]  # ids recorded by this run (the rest were fired before)
    over_cap: list[dict]
    caps_written: bool


def evaluate_day(
    usage: pl.DataFrame,
    catalog: Catalog,
    day: dt.date,
    engine: Engine,
    out_dir: Path,
    rules: AlertRules | None = None,
    now: dt.datetime | None = None,
) -> DayAlerts:
    """``usage``: the usage events of the days before ``day`` (month to date and 13 days back)."""
    rules = rules or AlertRules()
    now = now or dt.datetime.now(dt.UTC)
    spend = daily_spend(usage, catalog, day)
    alerts = limit_alerts(spend, catalog, day, rules) + spike_alerts(spend, catalog, day, rules)
    endpoints = {
        cid: (c.webhook.url, c.webhook.secret_env) if c.webhook else None
        for cid, c in catalog.customers.items()
    }
    new = outbox.record(engine, alerts, endpoints, now, send=now.date() - day <= MAX_AGE)
    capped = over_hard_cap(spend, catalog, day)
    period = day.strftime("%Y-%m")
    written = outbox.write_hard_caps(engine, period, day, capped, now)
    if written:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(
            outbox.hard_caps_json(period, day, capped).encode("utf-8"), out_dir / HARD_CAPS_FILE
        )
    return DayAlerts(day, spend, alerts, new, capped, written)
