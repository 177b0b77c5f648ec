"""When to warn a customer: spend against the monthly limit, sudden spikes, hard caps.

Spend is what the customer's usage charges add up to (rated with their plan, before tax,
discounts, credits and fixed fees: the part that grows with usage). A line's amount is spread
over its days in proportion to the units charged that day, so a day's spend is its share of the
month-to-date invoice. An hour's spend is how much the month-to-date usage charges grew in that
hour: the month rated on the usage that started before the hour ended, less the month rated on
the usage that started before it began (tiers and allowances count as on the invoice). Every
alert has a deterministic id (customer, month or day, rule): the outbox refuses a second alert
with the same id, which is what makes re-runs and backfills safe.

A customer whose month rating holds (``RatedMonth.at_risk``: money at risk) has no lines, so no
spend; it is never counted as $0. Its limit and hard cap are judged on a stated figure instead
(``HeldSpend``, one rule per reason), and every run names it with its reason.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.documents.statement import held_reasons
from billing_pipeline.money import ZERO, amount_text, fmt_money, percent, round_to
from billing_pipeline.periods import month_of, parse_month, utc_text
from billing_pipeline.rating import NEGATIVE_QUANTITY, QUANTITY_OVERFLOW, rate_month
from billing_pipeline.rating.billing_source import split_billing_source
from billing_pipeline.rating.cost_plus import UNPRICED_COST
from billing_pipeline.rating.price_book import entry_index_expr
from billing_pipeline.rating.vectorized import AMOUNT_OVERFLOW
from billing_pipeline.schema import COST_DECIMAL

THRESHOLDS = (50, 75, 90, 100)
SCALE = COST_DECIMAL.scale  # a day's share of a line, in the spend column's decimals
SPEND_SCHEMA = {"customer_id": pl.String, "day": pl.Date, "spend": COST_DECIMAL}


@dataclass(frozen=True)
class AlertRules:
    """Configurable thresholds (Dagster run config maps onto this)."""

    spike_factor: Decimal = Decimal(3)  # a day above k x the trailing 7-day mean
    growth_factor: Decimal = Decimal(2)  # the last 7 days above f x the 7 days before
    min_spend: Decimal = Decimal(1)  # below this a day, week or hour never counts as a spike
    thresholds: tuple[int, ...] = THRESHOLDS
    hourly_spike_factor: Decimal = Decimal(10)  # an hour above h x the mean of the hours before
    baseline_hours: int = 24  # the hours that mean spans; a customer needs usage that old


@dataclass(frozen=True)
class Alert:
    alert_id: str
    customer_id: str
    kind: str  # limit_threshold | daily_spike | weekly_growth | hourly_spike
    period: str  # YYYY-MM
    payload: dict = field(hash=False)

    def body(self) -> bytes:
        """The exact bytes sent and signed: canonical JSON, amounts as decimal strings."""
        return json.dumps(self.payload, sort_keys=True, separators=(",", ":")).encode("utf-8")


# How a held customer's limit and hard cap are judged (HeldSpend.basis), by its hold reason.
BEYOND_ANY_LIMIT = "beyond_any_limit"  # quantity_overflow, amount_overflow
WITHOUT_NEGATIVE_RECORDS = "without_negative_records"  # negative_quantity: at most (see README)
WITHOUT_UNPRICED_USAGE = "without_unpriced_usage"  # unpriced_cost: at least (see README)
NO_BOUND = "no_bound"  # no figure could be stated: named, never capped automatically
_BASIS_OF = {
    QUANTITY_OVERFLOW: BEYOND_ANY_LIMIT,
    AMOUNT_OVERFLOW: BEYOND_ANY_LIMIT,
    NEGATIVE_QUANTITY: WITHOUT_NEGATIVE_RECORDS,
    UNPRICED_COST: WITHOUT_UNPRICED_USAGE,
}


@dataclass(frozen=True)
class HeldSpend:
    """A customer of the month whose rating holds: why, and the figure its limit is judged on."""

    customer_id: str
    reason: str  # the at_risk reasons, comma-separated (documents.statement.held_reasons)
    detail: str
    basis: str  # BEYOND_ANY_LIMIT | WITHOUT_NEGATIVE_RECORDS | WITHOUT_UNPRICED_USAGE | NO_BOUND
    spend_bound: Decimal | None = None  # the month to date on ``basis`` (None: none stated)

    def reached(self, amount: Decimal) -> bool:
        """Whether a limit threshold or hard cap of ``amount`` counts as reached."""
        if self.basis == BEYOND_ANY_LIMIT:
            return True
        return self.spend_bound is not None and self.spend_bound >= amount

    def payload(self, currency: str) -> dict:
        """The ``held`` object of an alert, a hard_caps.json row and its ``held`` list."""
        return {
            "reason": self.reason,
            "detail": self.detail,
            "basis": self.basis,
            "spend_bound": None
            if self.spend_bound is None
            else amount_text(self.spend_bound, currency),
        }

    def words(self, currency: str) -> str:
        """What the figure is, in a sentence's words."""
        if self.basis == BEYOND_ANY_LIMIT:
            return "more than can be stated, beyond any limit"
        if self.spend_bound is None:
            return "not known"
        shown = fmt_money(self.spend_bound, currency)
        if self.basis == WITHOUT_NEGATIVE_RECORDS:
            return f"at most {shown} (its negative records not counted)"
        return f"at least {shown} (the usage without a list price not counted)"


def daily_spend(usage: pl.DataFrame, catalog: Catalog, through: dt.date) -> pl.DataFrame:
    """Usage charges per customer and day up to ``through`` (each month rated on its own)."""
    return spend_and_held(usage, catalog, through)[0]


def spend_and_held(
    usage: pl.DataFrame, catalog: Catalog, through: dt.date
) -> tuple[pl.DataFrame, dict[str, HeldSpend]]:
    """``daily_spend``, and the customers of ``through``'s month whose rating holds (no row in
    the spend: never $0), each with the figure its limit and hard cap are judged on."""
    usage = usage.filter(pl.col("day") <= through)
    months = sorted({d.strftime("%Y-%m") for d in usage["day"].unique().to_list()})
    rows: dict[tuple[str, dt.date], Decimal] = {}
    held: dict[str, HeldSpend] = {}
    for month in months:
        # One source per customer and provider, decided within the month, as on the invoice.
        of_month = usage.filter(pl.col("day").dt.strftime("%Y-%m") == month)
        billable = split_billing_source(of_month, catalog).billable
        rated = rate_month(billable, catalog, month)
        if month == month_of(through) and rated.at_risk.height:
            held = held_spend(billable, catalog, month, rated.at_risk)
        lines = rated.lines.filter(pl.col("consideration") == "variable")
        for customer, amount, daily in lines.select("customer_id", "amount", "daily").iter_rows():
            days = json.loads(daily)
            total = sum(d["quantity"] for d in days)
            for d in days:  # one entry per line, day and model: aggregated, not per event
                key = (customer, dt.date.fromisoformat(d["day"]))
                rows[key] = rows.get(key, ZERO) + round_to(
                    Decimal(amount) * d["quantity"] / total, SCALE
                )
    spend = pl.DataFrame(
        [(c, d, v) for (c, d), v in sorted(rows.items())], schema=SPEND_SCHEMA, orient="row"
    )
    return spend, held


def _basis(reasons: list[str]) -> str:
    """One basis per customer: an overflow among its reasons wins (beyond any limit whatever
    else); two other reasons together have no single rule, so no bound."""
    found = {_BASIS_OF.get(r, NO_BOUND) for r in reasons}
    if BEYOND_ANY_LIMIT in found:
        return BEYOND_ANY_LIMIT
    return found.pop() if len(found) == 1 else NO_BOUND


def held_spend(
    billable: pl.DataFrame, catalog: Catalog, month: str, at_risk: pl.DataFrame
) -> dict[str, HeldSpend]:
    """Each held customer of ``month`` (``at_risk``: RatedMonth.at_risk of ``billable``) with
    its basis: an overflow is beyond any limit; a negative_quantity customer is rated again
    without its negative records (more units: at most what it owes), an unpriced_cost one
    without its usage that no price-book entry prices (fewer units: at least what it owes).
    Rated so, only those customers' usage is read; one still held has no bound."""
    reasons = held_reasons(at_risk)
    basis = {cid: _basis(h["reason"].split(", ")) for cid, h in reasons.items()}
    negative = [c for c, b in basis.items() if b == WITHOUT_NEGATIVE_RECORDS]
    unpriced = [c for c, b in basis.items() if b == WITHOUT_UNPRICED_USAGE]
    bounds: dict[str, Decimal] = {}
    if negative or unpriced:
        again = billable.filter(
            (pl.col("customer_id").is_in(negative) & (pl.col("quantity") >= 0))
            | (pl.col("customer_id").is_in(unpriced) & entry_index_expr(catalog).is_not_null())
        )
        rated = rate_month(again, catalog, month, daily=False)  # a few customers' usage
        still = set(rated.at_risk["customer_id"].to_list())
        bounds = {c: ZERO for c in [*negative, *unpriced] if c not in still}
        for cid, amount in (
            rated.lines.filter(
                (pl.col("consideration") == "variable") & pl.col("customer_id").is_in(list(bounds))
            )
            .select("customer_id", "amount")
            .iter_rows()
        ):
            bounds[cid] += Decimal(amount)
    return {
        cid: HeldSpend(
            cid,
            h["reason"],
            h["detail"],
            basis[cid] if basis[cid] == BEYOND_ANY_LIMIT or cid in bounds else NO_BOUND,
            bounds.get(cid),
        )
        for cid, h in reasons.items()
    }


def _spend_between(spend: pl.DataFrame, customer: str, first: dt.date, last: dt.date) -> Decimal:
    values = spend.filter(
        (pl.col("customer_id") == customer) & pl.col("day").is_between(first, last)
    )["spend"]
    return sum(values.to_list(), ZERO)


def month_to_date(spend: pl.DataFrame, customer: str, day: dt.date) -> Decimal:
    return _spend_between(spend, customer, day.replace(day=1), day)


def projected(mtd: Decimal, day: dt.date, as_of: dt.datetime | None = None) -> Decimal:
    """Month-end spend at the month-to-date rate: per day elapsed, or per hour elapsed when the
    month to date ends at ``as_of`` within a day (the same figure at the end of a day)."""
    days = calendar.monthrange(day.year, day.month)[1]
    if as_of is None:
        return mtd * days / day.day
    start = dt.datetime.combine(day.replace(day=1), dt.time(), dt.UTC)
    hours = Decimal(int((as_of - start).total_seconds())) / 3600
    return mtd * days * 24 / hours if hours > 0 else mtd


def _as_of_text(day: dt.date, as_of: dt.datetime | None) -> str:
    """A day's evaluation says its day; an hourly one the instant its month to date ends."""
    return day.isoformat() if as_of is None else utc_text(as_of)


def limit_alerts(
    spend: pl.DataFrame,
    catalog: Catalog,
    day: dt.date,
    rules: AlertRules = AlertRules(),
    as_of: dt.datetime | None = None,
    held: dict[str, HeldSpend] | None = None,
) -> list[Alert]:
    """One alert per threshold the month-to-date spend has reached (the outbox keeps each once).
    ``as_of``: the month to date ends within ``day`` (an hourly evaluation), not at its end.
    ``held`` (``spend_and_held``): customers whose rating holds, judged on their figure."""
    alerts = []
    held = held or {}
    period = day.strftime("%Y-%m")
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    for cid, customer in sorted(catalog.customers.items()):
        limit = customer.monthly_limit
        if not limit:
            continue
        cur = customer.currency
        if cid in held:
            alerts += _held_limit_alerts(held[cid], limit, cur, day, rules, as_of)
            continue
        mtd = month_to_date(spend, cid, day)
        used = percent(mtd, limit)
        forecast = projected(mtd, day, as_of)
        for threshold in rules.thresholds:
            if mtd * 100 < limit * threshold:
                continue
            alerts.append(
                _limit_alert(
                    cid,
                    day,
                    as_of,
                    cur,
                    limit,
                    threshold,
                    {
                        "percent_used": str(used),
                        "spend_to_date": amount_text(mtd, cur),
                        "projected_month_end": amount_text(forecast, cur),
                    },
                    f"Usage charges for {period} reached {used} % of your monthly limit of "
                    f"{fmt_money(limit, cur)} ({threshold} % threshold): {fmt_money(mtd, cur)} "
                    f"in {day.day} of {days_in_month} days. At this rate the month ends at "
                    f"{fmt_money(forecast, cur)}.",
                )
            )
    return alerts


def _limit_alert(
    cid: str,
    day: dt.date,
    as_of: dt.datetime | None,
    cur: str,
    limit: Decimal,
    threshold: int,
    spend: dict,
    message: str,
) -> Alert:
    """A limit_threshold alert (id ``limit:<customer>:<month>:<threshold>``); ``spend``: its
    percent_used, spend_to_date, projected_month_end (and a held customer's ``held``)."""
    period = day.strftime("%Y-%m")
    aid = f"limit:{cid}:{period}:{threshold}"
    payload = {
        "alert_id": aid,
        "type": "limit_threshold",
        "customer_id": cid,
        "period": period,
        "as_of": _as_of_text(day, as_of),
        "currency": cur,
        "threshold_percent": threshold,
        "percent_used": spend["percent_used"],
        "spend_to_date": spend["spend_to_date"],
        "monthly_limit": amount_text(limit, cur),
        "projected_month_end": spend["projected_month_end"],
        "days_elapsed": day.day,
        "days_in_month": calendar.monthrange(day.year, day.month)[1],
        **({"held": spend["held"]} if "held" in spend else {}),
        "message": message,
    }
    return Alert(aid, cid, "limit_threshold", period, payload)


def _held_limit_alerts(
    held: HeldSpend,
    limit: Decimal,
    cur: str,
    day: dt.date,
    rules: AlertRules,
    as_of: dt.datetime | None,
) -> list[Alert]:
    """The thresholds a held customer's figure reaches, with the same ids as any limit alert.
    No amount is stated as its spend (``spend_to_date``, ``percent_used``, ``projected_month_end``
    are null); ``held`` says why and what the figure is."""
    period = day.strftime("%Y-%m")
    cid = held.customer_id
    bound = held.spend_bound
    share = None if bound is None or held.basis == BEYOND_ANY_LIMIT else percent(bound, limit)
    alerts = []
    for threshold in rules.thresholds:
        if not held.reached(limit * threshold / 100):
            continue
        figure = held.words(cur) + ("" if share is None else f", {share} % of it")
        alerts.append(
            _limit_alert(
                cid,
                day,
                as_of,
                cur,
                limit,
                threshold,
                {
                    "percent_used": None,
                    "spend_to_date": None,
                    "projected_month_end": None,
                    "held": held.payload(cur),
                },
                f"Usage charges for {period} are held for review ({held.reason}) and "
                f"cannot be stated exactly. Against your monthly limit of "
                f"{fmt_money(limit, cur)} they are {figure}: the {threshold} % threshold "
                f"counts as reached.",
            )
        )
    return alerts


def _common(
    spend: pl.DataFrame, catalog: Catalog, cid: str, day: dt.date, as_of: dt.datetime | None
) -> dict:
    """The fields every spike alert carries: who, the month so far and where it is heading."""
    customer = catalog.customers.get(cid)
    cur = customer.currency if customer else "USD"
    mtd = month_to_date(spend, cid, day)
    return {
        "customer_id": cid,
        "period": day.strftime("%Y-%m"),
        "as_of": _as_of_text(day, as_of),
        "currency": cur,
        "spend_to_date": amount_text(mtd, cur),
        "projected_month_end": amount_text(projected(mtd, day, as_of), cur),
        "monthly_limit": None
        if customer is None or customer.monthly_limit is None
        else amount_text(customer.monthly_limit, cur),
    }


def spike_alerts(
    spend: pl.DataFrame,
    catalog: Catalog,
    day: dt.date,
    rules: AlertRules = AlertRules(),
    as_of: dt.datetime | None = None,
) -> list[Alert]:
    """A day above k x the trailing 7-day mean; a week above f x the week before. Evaluated
    within the day (``as_of``), the day so far counts: it can only grow, so an alert that fires
    early is the one the whole day would fire. As with the hourly rule, a customer needs the
    history a mean is taken over: its first day of spend (in ``spend``) 7 days back for the
    daily rule and 13 for the weekly one, so a new customer's first days are not spikes (a
    first evening's $1 is not a 7-day mean)."""
    alerts = []
    period = day.strftime("%Y-%m")
    one = dt.timedelta(days=1)
    first_day = dict(spend.group_by("customer_id").agg(pl.col("day").min()).iter_rows())
    for cid in sorted(spend.filter(pl.col("day") == day)["customer_id"].unique().to_list()):
        cur = catalog.customers[cid].currency if cid in catalog.customers else "USD"
        history = (day - first_day[cid]).days
        today = _spend_between(spend, cid, day, day)
        mean = _spend_between(spend, cid, day - 7 * one, day - one) / 7
        week = _spend_between(spend, cid, day - 6 * one, day)
        before = _spend_between(spend, cid, day - 13 * one, day - 7 * one)
        common = _common(spend, catalog, cid, day, as_of)
        if (
            history >= 7
            and today >= rules.min_spend
            and mean > 0
            and today > rules.spike_factor * mean
        ):
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
        if (
            history >= 13
            and week >= rules.min_spend
            and before > 0
            and week > rules.growth_factor * before
        ):
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


def _started() -> pl.Expr:
    """When a usage row started: its ``start``, else its day's midnight (UTC)."""
    return pl.coalesce(pl.col("start"), pl.col("day").cast(pl.Datetime("us", "UTC")))


def month_spend_before(
    usage: pl.DataFrame, catalog: Catalog, month: str, until: dt.datetime
) -> dict[str, Decimal]:
    """Usage charges per customer of ``month``, rated on its usage that started before ``until``."""
    first, end = parse_month(month)
    of_month = usage.filter(
        pl.col("day").is_between(first, end, closed="left")
        & pl.col("customer_id").is_not_null()
        & (_started() < until)
    )
    if of_month.height == 0:
        return {}
    billable = split_billing_source(of_month, catalog).billable
    lines = rate_month(billable, catalog, month, daily=False).lines
    totals: dict[str, Decimal] = {}
    for customer, amount in (
        lines.filter(pl.col("consideration") == "variable")
        .select("customer_id", "amount")
        .iter_rows()
    ):
        totals[customer] = totals.get(customer, ZERO) + Decimal(amount)
    return totals


def spend_between(
    usage: pl.DataFrame, catalog: Catalog, start: dt.datetime, end: dt.datetime
) -> dict[str, Decimal]:
    """What the usage that started in [start, end) added to each customer's usage charges: per
    month the window touches, the month rated up to ``end`` less the month rated up to ``start``."""
    totals: dict[str, Decimal] = {}
    month = month_of(start.astimezone(dt.UTC).date())
    while True:
        first, after = (dt.datetime.combine(d, dt.time(), dt.UTC) for d in parse_month(month))
        if first >= end:
            return totals
        upto = month_spend_before(usage, catalog, month, min(end, after))
        before = month_spend_before(usage, catalog, month, start) if start > first else {}
        for cid in upto.keys() | before.keys():
            totals[cid] = totals.get(cid, ZERO) + upto.get(cid, ZERO) - before.get(cid, ZERO)
        month = month_of(after.date())


def hourly_spike_alerts(
    usage: pl.DataFrame,
    spend: pl.DataFrame,
    catalog: Catalog,
    hour: dt.datetime,
    as_of: dt.datetime,
    rules: AlertRules = AlertRules(),
) -> list[Alert]:
    """An hour whose spend is above ``hourly_spike_factor`` x the customer's mean hourly spend
    over the ``baseline_hours`` before it, and at least ``min_spend``. A customer whose first
    usage is less than ``baseline_hours`` old has no baseline yet and gets no alert (a new
    customer's first busy hours are not spikes). One per customer and day: the first hour of the
    day that spikes (``hourly_spike:<customer>:<day>``), so a runaway day is one alert, not 24.
    ``spend``: the daily spend (``daily_spend``) the month-to-date fields are read from."""
    end, base = hour + dt.timedelta(hours=1), hour - dt.timedelta(hours=rules.baseline_hours)
    started = usage.filter(pl.col("customer_id").is_not_null()).with_columns(_started().alias("_t"))
    active = started.filter(pl.col("_t").is_between(hour, end, closed="left"))[
        "customer_id"
    ].unique()
    first_seen = (
        started.filter(pl.col("customer_id").is_in(active.implode()))
        .group_by("customer_id")
        .agg(pl.col("_t").min())
    )
    known = first_seen.filter(pl.col("_t") <= base)["customer_id"]
    if known.len() == 0:
        return []
    mine = usage.filter(pl.col("customer_id").is_in(known.implode()))
    this_hour = spend_between(mine, catalog, hour, end)
    before = spend_between(mine, catalog, base, hour)
    alerts = []
    as_of_day = (as_of - dt.timedelta(microseconds=1)).date()
    for cid in sorted(this_hour):
        spent, mean = this_hour[cid], before.get(cid, ZERO) / rules.baseline_hours
        if spent < rules.min_spend or mean <= 0 or spent <= rules.hourly_spike_factor * mean:
            continue
        common = _common(spend, catalog, cid, as_of_day, as_of)
        cur = common["currency"]
        aid = f"hourly_spike:{cid}:{hour.date().isoformat()}"
        alerts.append(
            Alert(
                aid,
                cid,
                "hourly_spike",
                common["period"],
                {
                    **common,
                    "alert_id": aid,
                    "type": "hourly_spike",
                    "hour": utc_text(hour),
                    "hour_spend": amount_text(spent, cur),
                    "baseline_hourly_mean": amount_text(mean, cur),
                    "baseline_hours": rules.baseline_hours,
                    "factor": str(rules.hourly_spike_factor),
                    "message": (
                        f"Usage charges in the hour from {hour:%H:%M} UTC on {hour.date().isoformat()} "
                        f"were {fmt_money(spent, cur)}, {round_to(spent / mean, 1)} x the mean "
                        f"hour of the {rules.baseline_hours} hours before "
                        f"({fmt_money(mean, cur)}; alert above {rules.hourly_spike_factor} x)."
                    ),
                },
            )
        )
    return alerts


def over_hard_cap(
    spend: pl.DataFrame,
    catalog: Catalog,
    day: dt.date,
    as_of: dt.datetime | None = None,
    held: dict[str, HeldSpend] | None = None,
) -> list[dict]:
    """Customers whose month-to-date spend reached their ``hard_cap``: the gateway should block
    them. A held customer (``spend_and_held``) is blocked when its figure reaches the cap; its
    row says ``held`` and states no ``spend_to_date``."""
    rows = []
    held = held or {}
    for cid, customer in sorted(catalog.customers.items()):
        if customer.hard_cap is None:
            continue
        cur = customer.currency
        row = {
            "customer_id": cid,
            "period": day.strftime("%Y-%m"),
            "as_of": _as_of_text(day, as_of),
            "currency": cur,
            "hard_cap": amount_text(customer.hard_cap, cur),
            "keys": sorted([*customer.keys, *(k.key for k in customer.dated_keys)]),
        }
        if cid in held:
            if held[cid].reached(customer.hard_cap):
                rows.append(row | {"spend_to_date": None, "held": held[cid].payload(cur)})
            continue
        mtd = month_to_date(spend, cid, day)
        if mtd >= customer.hard_cap:
            rows.append(row | {"spend_to_date": amount_text(mtd, cur)})
    return rows


def held_list(held: dict[str, HeldSpend], catalog: Catalog, capped: list[dict]) -> list[dict]:
    """Every held customer as the run names it (hard_caps.json ``held``, run metadata): its
    reason, basis and figure, its hard cap and whether it is blocked."""
    blocked = {r["customer_id"] for r in capped}
    out = []
    for cid, h in sorted(held.items()):
        customer = catalog.customers.get(cid)
        cur = customer.currency if customer else "USD"
        cap = customer.hard_cap if customer else None
        out.append(
            {
                "customer_id": cid,
                **h.payload(cur),
                "currency": cur,
                "hard_cap": None if cap is None else amount_text(cap, cur),
                "capped": cid in blocked,
            }
        )
    return out


def held_text(row: dict) -> str:
    """One sentence for ops about a ``held_list`` row: who, why, the figure and the cap."""
    cur = row["currency"]
    figure = {
        BEYOND_ANY_LIMIT: "beyond any limit",
        NO_BOUND: "no figure can be stated",
        WITHOUT_NEGATIVE_RECORDS: f"at most {row['spend_bound']} {cur} (negative records not counted)",
        WITHOUT_UNPRICED_USAGE: f"at least {row['spend_bound']} {cur} (unpriced usage not counted)",
    }[row["basis"]]
    cap = (
        "no hard cap"
        if row["hard_cap"] is None
        else f"hard cap {row['hard_cap']} {cur}: " + ("blocked" if row["capped"] else "not blocked")
    )
    return (
        f"{row['customer_id']}: rating held ({row['reason']}), usage charges not counted as 0: "
        f"{figure}; {cap}. {row['detail']}"
    )


def held_summary(rows: list[dict]) -> str:
    """The ``held_list`` rows in one metadata line: 'globex (quantity_overflow: beyond_any_limit,
    capped), ...', or 'none'."""
    return (
        ", ".join(
            f"{h['customer_id']} ({h['reason']}: {h['basis']}"
            + (", capped)" if h["capped"] else ")")
            for h in rows
        )
        or "none"
    )
