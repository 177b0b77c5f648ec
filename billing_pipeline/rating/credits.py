"""Prepaid credits: grants drawn down by invoices, balances carried from month to month.

Rules (pure functions; the ledger only has to remember what each invoice drew from each grant):
- credits pay for the tax-exclusive charges: at most the invoice subtotal is drawn; tax is still
  computed on the whole subtotal (money rule: total = subtotal + tax - credits applied);
- a grant is usable on the invoice of a month whose last day lies in [from, expires]; a grant
  that expires before the month ends is not used, and its balance is shown as expired;
- grants are drawn soonest-expiring first (no expiry last), then oldest first, then catalog order;
- drawn amounts are in the minor unit of the invoice currency, so balances stay exact cents.

``used_before`` is what earlier invoices drew from each grant (grant index -> amount): the
ledger's sum of past ``credits`` rows (their corrections included: an adjustment's draw and a
credit note's give-back count too), or ``credit_history`` replaying months from the catalog.
Corrections after issue draw as the original did: see documents/credit_notes.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from billing_pipeline.catalog.model import Credit
from billing_pipeline.money import ZERO, round_money, truncate_money
from billing_pipeline.periods import parse_month


@dataclass(frozen=True)
class GrantBalance:
    grant: int  # index in the customer's credits list
    granted: Decimal
    opening: Decimal
    applied: Decimal
    closing: Decimal
    expires: dt.date | None
    status: str  # active | expired | not_yet_valid

    def as_json(self) -> dict:
        return {
            "grant": self.grant,
            "granted": str(self.granted),
            "opening": str(self.opening),
            "applied": str(self.applied),
            "closing": str(self.closing),
            "expires": self.expires.isoformat() if self.expires else None,
            "status": self.status,
        }


@dataclass(frozen=True)
class CreditResult:
    applied: Decimal
    balances: list[GrantBalance] = field(default_factory=list)

    def drawn(self) -> dict[int, Decimal]:
        return {b.grant: b.applied for b in self.balances if b.applied}


def apply_credits(
    grants: Sequence[Credit],
    used_before: Mapping[int, Decimal],
    month: str,
    subtotal: Decimal,
    currency: str,
) -> CreditResult:
    """Draw this month's invoice (``subtotal``, tax excluded) from the customer's grants."""
    _, end = parse_month(month)
    last_day = end - dt.timedelta(days=1)
    due = max(round_money(subtotal, currency), ZERO)
    order = sorted(
        range(len(grants)), key=lambda i: (grants[i].expires or dt.date.max, grants[i].from_, i)
    )
    applied: dict[int, Decimal] = {}
    for i in order:
        g = grants[i]
        opening = truncate_money(g.amount - used_before.get(i, ZERO), currency)
        usable = g.from_ <= last_day and (g.expires is None or g.expires >= last_day)
        take = round_money(min(opening, due) if usable and opening > 0 else ZERO, currency)
        applied[i] = take
        due -= take
    balances = []
    for i, g in enumerate(grants):
        opening = truncate_money(g.amount - used_before.get(i, ZERO), currency)
        status = (
            "not_yet_valid"
            if g.from_ > last_day
            else "expired"
            if g.expires is not None and g.expires < last_day
            else "active"
        )
        balances.append(
            GrantBalance(i, g.amount, opening, applied[i], opening - applied[i], g.expires, status)
        )
    return CreditResult(sum(applied.values(), ZERO), balances)


def credit_history(
    grants: Sequence[Credit], subtotals: Mapping[str, Decimal], currency: str
) -> dict[str, CreditResult]:
    """Replay months in order (``subtotals``: month -> invoice subtotal): each month's draw
    continues from the balances the previous months left. For when there is no ledger yet."""
    used: dict[int, Decimal] = {}
    out = {}
    for month in sorted(subtotals):
        result = apply_credits(grants, used, month, subtotals[month], currency)
        for grant, amount in result.drawn().items():
            used[grant] = used.get(grant, ZERO) + amount
        out[month] = result
    return out
