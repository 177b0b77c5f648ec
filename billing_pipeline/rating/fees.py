"""The month's fixed lines, a few per customer, in Python: base fees (prorated by subscribed days /
days in the month), minimum-commitment true-ups (compared with the plan's rounded usage lines,
base fee excluded, not prorated) and the customer's discounts (rating/discounts.py).
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.money import fmt_money, round_money
from billing_pipeline.periods import days_in_month, month_label, overlap_days
from billing_pipeline.rating.discounts import discount_lines
from billing_pipeline.rating.lines import LINE_ORDER, LINE_SCHEMA


def _line(customer_id, plan_id, position, currency, **fields) -> dict:
    base = dict.fromkeys(LINE_SCHEMA)
    base.update(
        customer_id=customer_id,
        plan_id=plan_id,
        position=position,
        currency=currency,
        dimensions="{}",
        tiers="[]",
        components="[]",
        daily="[]",
        included_quantity=0,
    )
    base.update(fields)
    return base


def _base_fee_fields(plan, days: int, month: str, label: str) -> dict:
    currency, total_days = plan.currency, days_in_month(month)
    amount = plan.base_fee * Decimal(days) / Decimal(total_days)
    prorated = "" if days == total_days else f", prorated for {days} of {total_days} days"
    return dict(
        charge_id="base_fee",
        description=f"{plan.name} subscription, {label}",
        quantity=1,
        unit="month",
        unit_size=1,
        unit_price=str(plan.base_fee),
        pricing="fixed",
        amount=str(round_money(amount, currency)),
        explanation=f"Monthly base fee {fmt_money(plan.base_fee, currency)}{prorated} = {fmt_money(amount, currency)}",
        consideration="fixed",
    )


def fixed_lines(
    catalog: Catalog, month: str, usage_lines: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Base fees, minimum-commitment true-ups and discounts (a few per customer, in Python), and
    the order keys of the usage lines: per customer, each plan in subscription order with its base
    fee, its usage lines in charge order, its true-up; the customer's discounts last."""
    # A plan's usage total is read only by its minimum commitment and the customer's discounts:
    # summed for those plans and customers only.
    committed = [pid for pid, p in catalog.plans.items() if p.minimum_commitment]
    discounted = [cid for cid, c in catalog.customers.items() if c.discounts]
    usage_total = dict(
        ((c, p), t)
        for c, p, t in usage_lines.filter(
            pl.col("plan_id").is_in(committed) | pl.col("customer_id").is_in(discounted)
        )
        .group_by("customer_id", "plan_id")
        .agg(pl.col("amount").cast(pl.Decimal(38, 12)).sum())
        .iter_rows()
    )
    label = month_label(month)
    lines: list[dict] = []
    keys: list[tuple] = []
    base_fees: dict[tuple[str, int], dict] = {}  # the same words for every customer on the plan
    overlaps: dict[tuple, int] = {}  # 10^4 customers, a few distinct subscription dates
    for n, (customer_id, customer) in enumerate(catalog.customers.items()):
        plan_totals: list[tuple[str, Decimal]] = []
        seen: set[str] = set()
        currency = None
        for s, sub in enumerate(customer.subscriptions):
            days = overlaps.get((sub.from_, sub.to))
            if days is None:
                days = overlaps[sub.from_, sub.to] = overlap_days(month, sub.from_, sub.to)
            if days == 0:
                continue
            plan_id, plan = sub.plan, catalog.plans[sub.plan]
            currency = plan.currency
            first = plan_id not in seen  # the plan's usage lines go with its first subscription
            seen.add(plan_id)
            order = {"_customer": n, "_sub": s, "_charge": 0, "line_id": 0}
            plan_lines: list[dict] = []
            if first:
                keys.append((customer_id, plan_id, n, s))
            if plan.base_fee:
                fee = base_fees.get((plan_id, days))
                if fee is None:
                    fee = base_fees[plan_id, days] = _base_fee_fields(plan, days, month, label)
                plan_lines.append(_line(customer_id, plan_id, 0, currency, **order, _kind=0, **fee))
            if not (plan.minimum_commitment or customer.discounts):
                lines += plan_lines
                continue
            usage = round_money(
                usage_total.get((customer_id, plan_id), Decimal(0)) if first else Decimal(0),
                currency,
            )
            if plan.minimum_commitment and usage < plan.minimum_commitment:
                gap = plan.minimum_commitment - usage
                plan_lines.append(
                    _line(
                        customer_id,
                        plan_id,
                        0,
                        currency,
                        **order,
                        _kind=2,
                        charge_id="minimum_commitment",
                        description=f"Minimum commitment true-up, {label}",
                        quantity=1,
                        unit="month",
                        unit_size=1,
                        unit_price=str(gap),
                        pricing="fixed",
                        amount=str(round_money(gap, currency)),
                        explanation=f"Usage charges {fmt_money(usage, currency)} are below the monthly "
                        f"commitment of {fmt_money(plan.minimum_commitment, currency)}; the difference "
                        f"{fmt_money(gap, currency)} is billed",
                        consideration="fixed",
                    )
                )
            lines += plan_lines
            plan_totals.append(
                (plan_id, usage + sum((Decimal(ln["amount"]) for ln in plan_lines), Decimal(0)))
            )
        if customer.discounts and plan_totals:
            for i, d in enumerate(discount_lines(customer.discounts, month, plan_totals, currency)):
                lines.append(
                    _line(
                        customer_id,
                        d.plan_id,
                        0,
                        currency,
                        _customer=n,
                        _sub=len(customer.subscriptions),
                        _kind=3,
                        _charge=0,
                        line_id=i,
                        charge_id=f"discount_{d.index}",
                        description=d.description,
                        quantity=1,
                        unit="discount",
                        unit_size=1,
                        unit_price=str(d.amount),
                        pricing="discount",
                        amount=str(d.amount),
                        explanation=d.explanation,
                        consideration="fixed",
                    )
                )
    schema = {**LINE_SCHEMA, **LINE_ORDER}
    fixed = pl.DataFrame({k: [line[k] for line in lines] for k in schema}, schema=schema)
    charge_index = pl.DataFrame(
        [(pid, c.id, i) for pid, p in catalog.plans.items() for i, c in enumerate(p.charges)],
        schema={"plan_id": pl.String, "charge_id": pl.String, "_charge": pl.Int64},
        orient="row",
    )
    order_keys = (
        pl.DataFrame(
            keys,
            schema={
                "customer_id": pl.String,
                "plan_id": pl.String,
                "_customer": pl.Int64,
                "_sub": pl.Int64,
            },
            orient="row",
        )
        .join(charge_index, on="plan_id")
        .with_columns(pl.lit(1, dtype=pl.Int64).alias("_kind"))
    )
    return fixed, order_keys
