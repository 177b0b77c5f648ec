"""Customer discounts: percentage or fixed, each its own negative line with its explanation.

Rules (chosen so that a discount can never make an invoice negative or compound by accident):
- a discount applies in every month its [from, to] range overlaps; it is not prorated;
- a percentage discount takes that percentage of each plan's lines of the month (base fee,
  usage, minimum-commitment true-up), before any other discount: percentages never compound;
- a fixed discount is taken once per month, after the percentages, and never more than what is
  left to pay; it goes on the last plan the customer had that month;
- each discount line is rounded once, half up, like every other line.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from billing_pipeline.catalog.model import Discount
from billing_pipeline.money import ZERO, fmt_money, fmt_price, round_money
from billing_pipeline.periods import parse_month


@dataclass(frozen=True)
class DiscountLine:
    plan_id: str
    index: int  # position in the customer's discounts list
    description: str
    amount: Decimal  # negative, rounded
    explanation: str


def _active(discount: Discount, month: str) -> bool:
    start, end = parse_month(month)
    return (discount.from_ is None or discount.from_ < end) and (
        discount.to is None or discount.to >= start
    )


def discount_lines(
    discounts: list[Discount], month: str, plan_totals: list[tuple[str, Decimal]], currency: str
) -> list[DiscountLine]:
    """``plan_totals``: (plan_id, sum of that plan's rounded lines) in invoice order."""
    out: list[DiscountLine] = []
    active = [(i, d) for i, d in enumerate(discounts) if _active(d, month)]
    for i, d in active:
        if d.percent is None:
            continue
        for plan_id, total in plan_totals:
            if total <= 0:
                continue
            amount = round_money(total * d.percent / 100, currency)
            name = d.name or f"{fmt_price(d.percent).rstrip('0').rstrip('.')} % discount"
            out.append(
                DiscountLine(
                    plan_id,
                    i,
                    name,
                    -amount,
                    f"{name}: {fmt_price(d.percent).rstrip('0').rstrip('.')} % of {fmt_money(total, currency)} "
                    f"= {fmt_money(amount, currency)} off",
                )
            )
    left = sum((t for _, t in plan_totals), ZERO) + sum((line.amount for line in out), ZERO)
    last_plan = plan_totals[-1][0] if plan_totals else None
    for i, d in active:
        if d.amount is None or last_plan is None:
            continue
        amount = round_money(min(d.amount, max(left, ZERO)), currency)
        name = d.name or "Discount"
        capped = (
            ""
            if amount == d.amount
            else f", limited to the {fmt_money(left, currency)} left to pay"
        )
        out.append(
            DiscountLine(
                last_plan,
                i,
                name,
                -amount,
                f"{name}: fixed {fmt_money(d.amount, currency)} off{capped} = {fmt_money(amount, currency)} off",
            )
        )
        left -= amount
    return out
