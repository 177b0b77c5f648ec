"""When to warn a customer: spend against the monthly limit, sudden spikes, hard caps.

Spend is what the customer's usage charges add up to (rated with their plan, before tax,
discounts, credits and fixed fees: the part that grows with usage). A line's amount is spread
over its days in proportion to the units charged that day, so a day's spend is its share of the
month-to-date invoice. Every alert has a deterministic id (customer, month or day, rule): the
outbox refuses a second alert with the same id, which is what makes re-runs and backfills safe.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.money import ZERO, amount_text, fmt_money, percent, round_to
from billing_pipeline.rating import rate_month
from billing_pipeline.rating.billing_source import split_billing_source
from billing_pipeline.schema import COST_DECIMAL

THRESHOLDS = (50, 75, 90, 100)
SCALE = COST_DECIMAL.scale  # a day's share of a line, in the spend column's decimals
SPEND_SCHEMA = {"customer_id": pl.String, "day": pl.Date, "spend": COST_DECIMAL}


@dataclass(frozen=True)
class AlertRules:
    """Configurable thresholds (Dagster run config maps onto this)."""

    spike_factor: Decimal = Decimal(3)  # a day above k x the trailing 7-day mean
    growth_factor: Decimal = Decimal(2)  # the last 7 days above f x the 7 days before
    min_spend: Decimal = Decimal(1)  # below this a day (or week) never counts as a spike
    thresholds: tuple[int, ...] = THRESHOLDS


@dataclass(frozen=True)
class Alert:
    alert_id: str
    customer_id: str
    kind: str  # limit_threshold | daily_spike | weekly_growth
    period: str  # YYYY-MM
    payload: dict = field(hash=False)

    def body(self) -> bytes:
        """The exact bytes sent and signed: canonical JSON, amounts as decimal strings."""
        return json.dumps(self.payload, sort_keys=True, separators=(",", ":")).encode("utf-8")


def daily_spend(usage: pl.DataFrame, catalog: Catalog, through: dt.date) -> pl.DataFrame:
    """Usage charges per customer and day up to ``through`` (each month rated on its own)."""
    usage = usage.filter(pl.col("day") <= through)
    months = sorted({d.strftime("%Y-%m") for d in usage["day"].unique().to_list()})
    rows: dict[tuple[str, dt.date], Decimal] = {}
    for month in months:
        # One source per customer and provider, decided within the month, as on the invoice.
        of_month = usage.filter(pl.col("day").dt.strftime("%Y-%m") == month)
        billable = split_billing_source(of_month, catalog).billable
        lines = rate_month(billable, catalog, month).lines.filter(
            pl.col("consideration") == "variable"
        )
        for customer, amount, daily in lines.select("customer_id", "amount", "daily").iter_rows():
            days = json.loads(daily)
            total = sum(d["quantity"] for d in days)
            for d in days:  # one entry per line, day and model: aggregated, not per event
                key = (customer, dt.date.fromisoformat(d["day"]))
                rows[key] = rows.get(key, ZERO) + round_to(
                    Decimal(amount) * d["quantity"] / total, SCALE
                )
    return pl.DataFrame(
        [(c, d, v) for (c, d), v in sorted(rows.items())], schema=SPEND_SCHEMA, orient="row"
    )


def _spend_between(spend: pl.DataFrame, customer: str, first: dt.date, last: dt.date) -> Decimal:
    values = spend.filter(
        (pl.col("customer_id") == customer) & pl.col("day").is_between(first, last)
    )["spend"]
    return sum(values.to_list(), ZERO)


def month_to_date(spend: pl.DataFrame, customer: str, day: dt.date) -> Decimal:
    return _spend_between(spend, customer, day.replace(day=1), day)


def projected(mtd: Decimal, day: dt.date) -> Decimal:
    """Month-end spend at the month-to-date daily rate."""
    days = calendar.monthrange(day.year, day.month)[1]
    return mtd * days / day.day


def limit_alerts(
    spend: pl.DataFrame, catalog: Catalog, day: dt.date, rules: AlertRules = AlertRules()
) -> list[Alert]:
    """One alert per threshold the month-to-date spend has reached (the outbox keeps each once)."""
    alerts = []
    period = day.strftime("%Y-%m")
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    for cid, customer in sorted(catalog.customers.items()):
        limit = customer.monthly_limit
        if not limit:
            continue
        mtd = month_to_date(spend, cid, day)
        used = percent(mtd, limit)
        forecast = projected(mtd, day)
        cur = customer.currency
        for threshold in rules.thresholds:
            if mtd * 100 < limit * threshold:
                continue
            alerts.append(
                Alert(
                    f"limit:{cid}:{period}:{threshold}",
                    cid,
                    "limit_threshold",
                    period,
                    {
                        "alert_id": f"limit:{cid}:{period}:{threshold}",
                        "type": "limit_threshold",
                        "customer_id": cid,
                        "period": period,
                        "as_of": day.isoformat(),
                        "currency": cur,
                        "threshold_percent": threshold,
                        "percent_used": str(used),
                        "spend_to_date": amount_text(mtd, cur),
                        "monthly_limit": amount_text(limit, cur),
                        "projected_month_end": amount_text(forecast, cur),
                        "days_elapsed": day.day,
                        "days_in_month": days_in_month,
                        "message": (
                            f"Usage charges for {period} reached {used} % of your monthly limit of "
                            f"{fmt_money(limit, cur)} ({threshold} % threshold): {fmt_money(mtd, cur)} "
                            f"in {day.day} of {days_in_month} days. At this rate the month ends at "
                            f"{fmt_money(forecast, cur)}."
                        ),
                    },
                )
            )
    return alerts


def spike_alerts(
    spend: pl.DataFrame, catalog: Catalog, day: dt.date, rules: AlertRules = AlertRules()
) -> list[Alert]:
    """A day above k x the trailing 7-day mean; a week above f x the week before."""
    alerts = []
    period = day.strftime("%Y-%m")
    one = dt.timedelta(days=1)
    for cid in sorted(spend.filter(pl.col("day") == day)["customer_id"].unique().to_list()):
        cur = catalog.customers[cid].currency if cid in catalog.customers else "USD"
        today = _spend_between(spend, cid, day, day)
        mean = _spend_between(spend, cid, day - 7 * one, day - one) / 7
        week = _spend_between(spend, cid, day - 6 * one, day)
        before = _spend_between(spend, cid, day - 13 * one, day - 7 * one)
        mtd = month_to_date(spend, cid, day)
        common = {
            "customer_id": cid,
            "period": period,
            "as_of": day.isoformat(),
            "currency": cur,
            "spend_to_date": amount_text(mtd, cur),
            "projected_month_end": amount_text(projected(mtd, day), cur),
            "monthly_limit": None
            if catalog.customers.get(cid) is None or catalog.customers[cid].monthly_limit is None
            else amount_text(catalog.customers[cid].monthly_limit, cur),
        }
        if today >= rules.min_spend and mean > 0 and today > rules.spike_factor * mean:
            aid = f"spike:{cid}:{day.isoformat()}"
            alerts.append(
                Alert(
                    aid,
                    cid,
                    "daily_spike",
                    period,
                    {
                        **common,
                        "alert_id": aid,
                        "type": "daily_spike",
                        "day_spend": amount_text(today, cur),
                        "trailing_7_day_mean": amount_text(mean, cur),
                        "factor": str(rules.spike_factor),
                        "message": (
                            f"Usage charges on {day.isoformat()} were {fmt_money(today, cur)}, "
                            f"{round_to(today / mean, 1)} x the trailing 7-day mean of "
                            f"{fmt_money(mean, cur)} (alert above {rules.spike_factor} x)."
                        ),
                    },
                )
            )
        if week >= rules.min_spend and before > 0 and week > rules.growth_factor * before:
            aid = f"growth:{cid}:{day.isoformat()}"
            alerts.append(
                Alert(
                    aid,
                    cid,
                    "weekly_growth",
                    period,
                    {
                        **common,
                        "alert_id": aid,
                        "type": "weekly_growth",
                        "last_7_days": amount_text(week, cur),
                        "previous_7_days": amount_text(before, cur),
                        "factor": str(rules.growth_factor),
                        "message": (
                            f"Usage charges in the 7 days to {day.isoformat()} were {fmt_money(week, cur)}, "
                            f"{round_to(week / before * 100 - 100, 0)} % more than the 7 days before "
                            f"({fmt_money(before, cur)}; alert above {rules.growth_factor} x)."
                        ),
                    },
                )
            )
    return alerts


def over_hard_cap(spend: pl.DataFrame, catalog: Catalog, day: dt.date) -> list[dict]:
    """Customers whose month-to-date spend reached their ``hard_cap``: the gateway should block them."""
    rows = []
    for cid, customer in sorted(catalog.customers.items()):
        if customer.hard_cap is None:
            continue
        mtd = month_to_date(spend, cid, day)
        if mtd >= customer.hard_cap:
            rows.append(
                {
                    "customer_id": cid,
                    "period": day.strftime("%Y-%m"),
                    "as_of": day.isoformat(),
                    "currency": customer.currency,
                    "spend_to_date": amount_text(mtd, customer.currency),
                    "hard_cap": amount_text(customer.hard_cap, customer.currency),
                    "keys": sorted([*customer.keys, *(k.key for k in customer.dated_keys)]),
                }
            )
    return rows
