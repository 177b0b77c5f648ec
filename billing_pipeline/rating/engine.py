"""Rating a month: attributed usage + the catalog -> invoice line items per customer.

Order of work, so that 10 M events stay cheap: assign each event its plan and charge with polars
expressions, consume allowances in time order (a running sum per customer), aggregate to one row
per customer x charge x provider x model, and only then go to Decimal for the prices.

Semantics (DESIGN.md "Catalog"), chosen where the design is silent:
- per-unit charges get one line per provider and model family; tiered and package charges get one
  line per charge, whose tiers apply to the whole month's quantity across the models it covers;
- allowance units are consumed first, in event time order (ties by event id), across the meters the
  allowance names; tiers then apply to the quantity left to charge;
- the base fee is prorated by subscribed days / days in the month; the minimum commitment is
  compared with the usage lines (base fee excluded) and is not prorated;
- each line is rounded once (money.ROUNDING) and the minimum-commitment true-up is computed from
  rounded lines, so every number on the invoice is a sum of numbers printed above it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from billing_pipeline.catalog import Catalog, Charge
from billing_pipeline.money import fmt_money, fmt_quantity, round_money
from billing_pipeline.periods import days_in_month, month_label, overlap_days, parse_month
from billing_pipeline.rating.discounts import discount_lines
from billing_pipeline.rating.pricing import price_quantity
from billing_pipeline.schema import unit_name
from billing_pipeline.usage import dimensions_match, models_match

LINE_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String,
    "plan_id": pl.String,
    "position": pl.Int64,
    "charge_id": pl.String,
    "description": pl.String,
    "provider": pl.String,
    "meter": pl.String,
    "model": pl.String,
    "dimensions": pl.String,
    "quantity": pl.Int64,
    "included_quantity": pl.Int64,
    "unit": pl.String,
    "unit_size": pl.Int64,
    "unit_price": pl.String,
    "pricing": pl.String,
    "amount": pl.String,  # rounded to the currency's minor unit
    "currency": pl.String,
    "tiers": pl.String,  # JSON list of tier slices
    "components": pl.String,  # JSON list of {provider, model, quantity}: what the line is made of
    "daily": pl.String,  # JSON list of {day, model, quantity}: charged units per day, for the chart
    "explanation": pl.String,
    "consideration": pl.String,  # fixed | variable (IFRS 15 / ASC 606 wording)
}

UNRATED_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String,
    "plan_id": pl.String,
    "provider": pl.String,
    "model": pl.String,
    "meter": pl.String,
    "reason": pl.String,
    "events": pl.UInt32,
    "quantity": pl.Int64,
}


@dataclass(frozen=True)
class RatedMonth:
    lines: pl.DataFrame  # LINE_SCHEMA
    unrated: pl.DataFrame  # UNRATED_SCHEMA: attributed usage no charge prices, reported not dropped


def _subscriptions(catalog: Catalog) -> pl.DataFrame:
    rows = [
        (cid, sub.plan, sub.from_, sub.to)
        for cid, customer in catalog.customers.items()
        for sub in customer.subscriptions
    ]
    return pl.DataFrame(
        rows, schema={"customer_id": pl.String, "plan_id": pl.String, "sub_from": pl.Date, "sub_to": pl.Date},
        orient="row",
    )


def assign_charges(usage: pl.LazyFrame, catalog: Catalog) -> pl.LazyFrame:
    """Each attributed event gets the plan active on its day and the one charge that prices it."""
    attributed = usage.filter(pl.col("customer_id").is_not_null())
    with_plan = (
        attributed.join(_subscriptions(catalog).lazy(), on="customer_id", how="inner")
        .filter((pl.col("day") >= pl.col("sub_from")) & (pl.col("sub_to").is_null() | (pl.col("day") <= pl.col("sub_to"))))
        .unique("event_id", keep="first", maintain_order=True)
        .drop("sub_from", "sub_to")
    )
    no_plan = attributed.join(with_plan.select("event_id"), on="event_id", how="anti").with_columns(
        pl.lit(None, dtype=pl.String).alias("plan_id")
    )
    charge = pl.lit(None, dtype=pl.String)
    for plan_id, plan in reversed(list(catalog.plans.items())):
        for c in reversed(plan.charges):
            claims = (
                (pl.col("plan_id") == plan_id)
                & pl.col("meter").is_in(c.meters)
                & models_match(c.models)
                & dimensions_match(c.dimensions)
            )
            charge = pl.when(claims).then(pl.lit(c.id)).otherwise(charge)
    price_from = pl.lit(None, dtype=pl.Date)
    for plan_id, plan in catalog.plans.items():
        for c in plan.charges:
            for change in c.prices or []:  # later changes override earlier ones
                hit = (pl.col("plan_id") == plan_id) & (pl.col("charge_id") == c.id) & (pl.col("day") >= change.from_)
                price_from = pl.when(hit).then(pl.lit(change.from_)).otherwise(price_from)
    return (
        pl.concat([with_plan, no_plan], how="diagonal_relaxed")
        .with_columns(charge.alias("charge_id"))
        .with_columns(price_from.alias("price_from"))
    )


def consume_allowances(charged: pl.LazyFrame, catalog: Catalog) -> pl.LazyFrame:
    """Included units are used up first, in time order, across the allowance's meters."""
    rows = [(pid, p.allowance.quantity, m) for pid, p in catalog.plans.items() if p.allowance for m in p.allowance.meters]
    allowances = pl.DataFrame(rows, schema={"plan_id": pl.String, "allowance": pl.Int64, "meter": pl.String}, orient="row")
    covered = charged.join(allowances.lazy(), on=["plan_id", "meter"], how="left").with_columns(
        (pl.col("allowance").is_not_null() & pl.col("charge_id").is_not_null()).alias("_covered")
    )
    running = (
        pl.col("quantity").cum_sum().over(["customer_id", "plan_id", "_covered"], order_by=["start", "event_id"])
    )
    used_before = running - pl.col("quantity")
    included = pl.min_horizontal(pl.col("quantity"), pl.max_horizontal(pl.col("allowance") - used_before, pl.lit(0)))
    return covered.with_columns(
        pl.when(pl.col("_covered")).then(included).otherwise(0).cast(pl.Int64).alias("included")
    ).drop("allowance", "_covered")


def _subject(charge: Charge, models: list[str]) -> str:
    meters = [m.replace("_tokens", "").replace("_", " ") for m in charge.meters]
    unit = unit_name(charge.meters[0])
    if unit == "tokens":
        what = " and ".join(meters) + " tokens"
    else:
        what = unit
    if len(models) == 1 and models[0]:
        return f"{what} of {models[0]}"
    shown = [m for m in models if m]
    return f"{what} ({', '.join(shown)})" if shown else what


def _line(customer_id, plan_id, position, currency, **fields) -> dict:
    base = dict.fromkeys(LINE_SCHEMA)
    base.update(customer_id=customer_id, plan_id=plan_id, position=position, currency=currency,
                dimensions="{}", tiers="[]", components="[]", daily="[]", included_quantity=0)
    base.update(fields)
    return base


def _period_label(charge: Charge, price_from, month: str) -> str:
    """' (Oct 15-31)' when a price change inside the month splits the charge, else ''."""
    start, end = parse_month(month)
    changes = [c.from_ for c in charge.prices or [] if start < c.from_ < end]
    if not changes:
        return ""
    bounds = [start, *changes, end]
    first = price_from if price_from is not None and price_from > start else start
    last = min(b for b in bounds if b > first) - dt.timedelta(days=1)
    return f" ({first:%b} {first.day}-{last.day})"


def _usage_lines(customer_id, plan_id, plan, charge: Charge, groups: list[dict], daily: list[dict],
                 month: str) -> list[dict]:
    """Lines for one charge: per model for per-unit, one line for tiered and package pricing; one
    more line per price period when an effective-dated price change splits the month."""
    currency = plan.currency
    groups = sorted(groups, key=lambda g: (g["price_from"] or dt.date.min, g["provider"], g["model_family"] or ""))
    if charge.pricing == "per_unit":
        buckets = [[g] for g in groups]
    else:
        periods: dict = {}
        for g in groups:
            periods.setdefault(g["price_from"], []).append(g)
        buckets = list(periods.values())
    month_total = sum(g["quantity"] - g["included"] for g in groups)
    lines = []
    before = 0
    for bucket in buckets:
        quantity = sum(g["quantity"] for g in bucket)
        included = sum(g["included"] for g in bucket)
        billable = quantity - included
        models = sorted({g["model_family"] for g in bucket})
        providers = sorted({g["provider"] for g in bucket})
        subject = _subject(charge, models)
        price_from = bucket[0]["price_from"]
        period = _period_label(charge, price_from, month)
        priced_charge = charge.price_from(price_from)
        if charge.pricing == "per_unit":
            priced = price_quantity(priced_charge, billable, currency, subject)
        else:
            priced = price_quantity(priced_charge, billable, currency, subject, before=before, month_total=month_total)
            before += billable
        explanation = priced.explanation
        if period:
            explanation = f"Usage{period} at the prices in effect then: " + explanation
        if included:
            explanation = (
                f"{fmt_quantity(quantity)} {subject}, of which {fmt_quantity(included)} were covered "
                f"by the plan's included {fmt_quantity(plan.allowance.quantity)} units; " + explanation
            )
        keys = {(g["provider"], g["model_family"], g["price_from"]) for g in bucket}
        days = [{"day": d["day"].isoformat(), "model": d["model_family"], "quantity": d["billable"]}
                for d in daily if (d["provider"], d["model_family"], d["price_from"]) in keys and d["billable"]]
        lines.append(_line(
            customer_id, plan_id, 0, currency,
            charge_id=charge.id,
            description=charge.title + (f" ({models[0]})" if charge.pricing == "per_unit" and models[0] else "") + period,
            provider=providers[0] if len(providers) == 1 else "+".join(providers),
            meter="+".join(charge.meters),
            model=models[0] if len(models) == 1 else None,
            dimensions=json.dumps(charge.dimensions or {}, sort_keys=True),
            quantity=billable,
            included_quantity=included,
            unit=unit_name(charge.meters[0]),
            unit_size=charge.unit_size,
            unit_price=None if priced.unit_price is None else str(priced.unit_price),
            pricing=charge.pricing,
            amount=str(round_money(priced.amount, currency)),
            tiers=json.dumps([t.as_json() for t in priced.tiers]),
            components=json.dumps([{"provider": g["provider"], "model": g["model_family"], "quantity": g["quantity"]} for g in bucket]),
            daily=json.dumps(days),
            explanation=explanation,
            consideration="variable",
        ))
    return lines


def rate_month(usage: pl.DataFrame | pl.LazyFrame, catalog: Catalog, month: str) -> RatedMonth:
    """Line items for every customer with a subscription or usage in ``month``."""
    start, end = parse_month(month)
    in_month = usage.lazy().filter((pl.col("day") >= start) & (pl.col("day") < end))
    charged = consume_allowances(assign_charges(in_month, catalog), catalog)
    aggregated = (
        charged.filter(pl.col("charge_id").is_not_null())
        .group_by("customer_id", "plan_id", "charge_id", "price_from", "provider", "model_family")
        .agg(pl.sum("quantity"), pl.sum("included"))
        .sort("customer_id", "plan_id", "charge_id", "provider", "model_family")
        .collect()
    )
    per_day = (
        charged.filter(pl.col("charge_id").is_not_null())
        .group_by("customer_id", "plan_id", "charge_id", "price_from", "provider", "model_family", "day")
        .agg((pl.col("quantity") - pl.col("included")).sum().alias("billable"))
        .sort("customer_id", "plan_id", "charge_id", "day", "provider", "model_family")
        .collect()
    )
    unrated = (
        charged.filter(pl.col("charge_id").is_null())
        .with_columns(
            pl.when(pl.col("plan_id").is_null())
            .then(pl.lit("no_active_subscription"))
            .otherwise(pl.lit("no_charge_in_plan"))
            .alias("reason"),
            pl.col("model_family").alias("model"),
        )
        .group_by("customer_id", "plan_id", "provider", "model", "meter", "reason")
        .agg(pl.len().alias("events"), pl.sum("quantity"))
        .sort("customer_id", "provider", "model", "meter")
        .collect()
    )

    by_charge: dict[tuple[str, str, str], list[dict]] = {}
    for row in aggregated.iter_rows(named=True):
        by_charge.setdefault((row["customer_id"], row["plan_id"], row["charge_id"]), []).append(row)
    daily_by_charge: dict[tuple[str, str, str], list[dict]] = {}
    for row in per_day.iter_rows(named=True):
        daily_by_charge.setdefault((row["customer_id"], row["plan_id"], row["charge_id"]), []).append(row)

    lines: list[dict] = []
    label = month_label(month)
    for customer_id, customer in catalog.customers.items():
        customer_lines: list[dict] = []
        plan_totals: list[tuple[str, Decimal]] = []
        for sub in customer.subscriptions:
            days = overlap_days(month, sub.from_, sub.to)
            if days == 0:
                continue
            plan_id, plan = sub.plan, catalog.plans[sub.plan]
            currency = plan.currency
            position = len(customer_lines)
            plan_lines: list[dict] = []
            if plan.base_fee:
                total_days = days_in_month(month)
                amount = plan.base_fee * Decimal(days) / Decimal(total_days)
                prorated = "" if days == total_days else f", prorated for {days} of {total_days} days"
                plan_lines.append(_line(
                    customer_id, plan_id, 0, currency,
                    charge_id="base_fee", description=f"{plan.name} subscription, {label}",
                    quantity=1, unit="month", unit_size=1, unit_price=str(plan.base_fee), pricing="fixed",
                    amount=str(round_money(amount, currency)),
                    explanation=f"Monthly base fee {fmt_money(plan.base_fee, currency)}{prorated}"
                    f" = {fmt_money(amount, currency)}",
                    consideration="fixed",
                ))
            for charge in plan.charges:
                key = (customer_id, plan_id, charge.id)
                if key in by_charge:
                    plan_lines += _usage_lines(customer_id, plan_id, plan, charge, by_charge[key],
                                               daily_by_charge.get(key, []), month)
            usage_total = sum((Decimal(l["amount"]) for l in plan_lines if l["consideration"] == "variable"), Decimal(0))
            if plan.minimum_commitment and usage_total < plan.minimum_commitment:
                gap = plan.minimum_commitment - usage_total
                plan_lines.append(_line(
                    customer_id, plan_id, 0, currency,
                    charge_id="minimum_commitment", description=f"Minimum commitment true-up, {label}",
                    quantity=1, unit="month", unit_size=1, unit_price=str(gap), pricing="fixed",
                    amount=str(round_money(gap, currency)),
                    explanation=f"Usage charges {fmt_money(usage_total, currency)} are below the monthly "
                    f"commitment of {fmt_money(plan.minimum_commitment, currency)}; the difference "
                    f"{fmt_money(gap, currency)} is billed",
                    consideration="fixed",
                ))
            for i, line in enumerate(plan_lines):
                line["position"] = position + i
            customer_lines += plan_lines
            plan_totals.append((plan_id, sum((Decimal(l["amount"]) for l in plan_lines), Decimal(0))))
        if customer.discounts and plan_totals:
            for d in discount_lines(customer.discounts, month, plan_totals, currency):
                customer_lines.append(_line(
                    customer_id, d.plan_id, len(customer_lines), currency,
                    charge_id=f"discount_{d.index}", description=d.description, quantity=1, unit="discount",
                    unit_size=1, unit_price=str(d.amount), pricing="discount", amount=str(d.amount),
                    explanation=d.explanation, consideration="fixed",
                ))
        lines += customer_lines
    frame = pl.DataFrame(lines, schema=LINE_SCHEMA) if lines else pl.DataFrame(schema=LINE_SCHEMA)
    return RatedMonth(lines=frame, unrated=unrated.select(list(UNRATED_SCHEMA)).cast(UNRATED_SCHEMA))
