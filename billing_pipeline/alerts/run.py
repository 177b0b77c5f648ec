"""A day's or an hour's alerts, end to end without Dagster: spend -> alerts -> outbox, hard caps
-> table + file."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from sqlalchemy.engine import Engine

from billing_pipeline.alerts import outbox
from billing_pipeline.alerts.rules import (
    Alert,
    AlertRules,
    held_list,
    hourly_spike_alerts,
    limit_alerts,
    over_hard_cap,
    spend_and_held,
    spike_alerts,
)
from billing_pipeline.atomic import write_text
from billing_pipeline.catalog import Catalog
from billing_pipeline.periods import end_of_day, utc_text

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
    as_of: dt.datetime | None = None  # an hourly evaluation: where its month to date ends
    # customers whose rating holds (money at risk), never counted as $0 (rules.held_list)
    held: tuple[dict, ...] = ()


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
    spend, held = spend_and_held(usage, catalog, day)
    alerts = limit_alerts(spend, catalog, day, rules, held=held) + spike_alerts(
        spend, catalog, day, rules
    )
    new = _record(alerts, catalog, engine, now, send=now.date() - day <= MAX_AGE)
    capped = over_hard_cap(spend, catalog, day, end_of_day(day), held)
    named = tuple(held_list(held, catalog, capped))
    written = _write_caps(engine, out_dir, day, end_of_day(day), capped, now, named)
    return DayAlerts(day, spend, alerts, new, capped, written, held=named)


def evaluate_hour(
    usage: pl.DataFrame,
    catalog: Catalog,
    hour: dt.datetime,
    engine: Engine,
    out_dir: Path,
    rules: AlertRules | None = None,
    now: dt.datetime | None = None,
) -> DayAlerts:
    """After an hour of the gateway log was ingested: the same limit, spike and hard-cap rules as
    a day's, on the month to date as it has landed, plus the hourly spike rule for ``hour``.

    ``usage``: the usage of ``hour``'s month through its day, as ingested so far, and 13 days
    before (alerts/month_to_date.py). The month to date ends at ``as_of``: now, or the end of
    ``hour``'s day when that day is over (a late line for an earlier day)."""
    rules = rules or AlertRules()
    now = now or dt.datetime.now(dt.UTC)
    day = hour.date()
    as_of = min(now, end_of_day(day))
    spend, held = spend_and_held(usage, catalog, day)
    alerts = (
        limit_alerts(spend, catalog, day, rules, as_of, held)
        + spike_alerts(spend, catalog, day, rules, as_of)
        + hourly_spike_alerts(usage, spend, catalog, hour, as_of, rules)
    )
    new = _record(alerts, catalog, engine, now, send=now - as_of <= MAX_AGE)
    capped = over_hard_cap(spend, catalog, day, as_of, held)
    named = tuple(held_list(held, catalog, capped))
    written = _write_caps(engine, out_dir, day, as_of, capped, now, named)
    return DayAlerts(day, spend, alerts, new, capped, written, as_of, named)


def _record(
    alerts: list[Alert], catalog: Catalog, engine: Engine, now: dt.datetime, send: bool
) -> list[str]:
    endpoints = {
        cid: (c.webhook.url, c.webhook.secret_env) if c.webhook else None
        for cid, c in catalog.customers.items()
    }
    return outbox.record(engine, alerts, endpoints, now, send=send)


def _write_caps(
    engine: Engine,
    out_dir: Path,
    day: dt.date,
    as_of: dt.datetime,
    capped: list[dict],
    now: dt.datetime,
    held: tuple[dict, ...] = (),
) -> bool:
    """The month's list in the ledger, then the file a gateway polls, replaced atomically. An
    evaluation older than the one the file holds (an earlier day re-run, last month's late line)
    leaves the file alone, so nobody is unblocked by a backfill."""
    period = day.strftime("%Y-%m")
    if not outbox.write_hard_caps(engine, period, day, capped, now):
        return False
    path = out_dir / HARD_CAPS_FILE
    if _file_is_newer(path, period, utc_text(as_of)):
        return True
    write_text(path, outbox.hard_caps_json(period, utc_text(as_of), capped, list(held)))
    return True


def _file_is_newer(path: Path, period: str, as_of: str) -> bool:
    """Whether ``path`` holds a later month, or the same month as of a later instant."""
    try:
        held = json.loads(path.read_text(encoding="utf-8"))
        return (str(held["period"]), str(held["as_of"])) > (period, as_of)
    except (OSError, ValueError, KeyError, TypeError):
        return False  # no file yet, or one that cannot be read: write it
