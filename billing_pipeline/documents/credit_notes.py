"""Corrections after issue: credit notes and adjustment invoices that reference the original.

An issued invoice is never edited (VAT Directive art. 233). When usage arrives after issue, the
difference between what the month is now worth and what was already billed (the original plus
earlier late-usage corrections) becomes one correction document: a credit note when the total
goes down, an adjustment invoice when it goes up, one line per changed charge saying what was
billed, what it is now and the difference. Pure functions over documents (plain dicts).

Tax on a correction is the difference of the taxes (new invoice's tax - tax already billed), so
the original plus its corrections always add up to exactly what a fresh invoice would say.

Prepaid credits follow the same rule, grant by grant: a correction draws what a fresh invoice
would draw from each grant minus what the original and earlier corrections drew (the fresh
invoice is drawn the way the original was: same grants, same order, same opening balances).
An adjustment therefore draws the balance the original left before anything is billed, and a
credit note that lowers the usage gives the over-drawn credit back to its grant (a negative draw)
before refunding money. A grant never goes below zero: what other invoices drew from it since
(later months, other corrections: ``drawn_elsewhere``) caps an adjustment's draw, the shortfall
is taken from the customer's other usable grants in the usual order, and what is still not
covered is billed. Manual credit notes are money, not credit: they do not touch the grants.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal

from billing_pipeline.documents.kinds import KIND_ADJUSTMENT, KIND_CREDIT_NOTE
from billing_pipeline.documents.sections import sections
from billing_pipeline.money import ZERO, amount_text, exact, fmt_money, fmt_quantity, round_money

ORIGIN_LATE_USAGE = "late_usage"
ORIGIN_MANUAL = "manual"
_HEADER_KEYS = (
    "customer_id",
    "period",
    "period_label",
    "period_start",
    "period_end",
    "currency",
    "issuer",
    "customer",
    "plan",
    "tax_rate",
    "reverse_charge",
    "tax_note",
)


def _key(line: dict) -> tuple:
    return (
        line["charge_id"],
        line.get("provider"),
        line.get("model"),
        line.get("meter"),
        json.dumps(line.get("dimensions") or {}, sort_keys=True),
    )


def _quantity(value) -> Decimal:
    return exact(str(value)) if not isinstance(value, int) else Decimal(value)


def _plain(q: Decimal) -> int | str:
    """Quantities stay ints in documents when they are whole (as the rating engine writes them)."""
    return int(q) if q == q.to_integral_value() else str(q.normalize())


def _totals(docs: list[dict]) -> tuple[dict, Decimal]:
    lines: dict[tuple, dict] = {}
    tax = ZERO
    for doc in docs:
        tax += exact(doc["tax"])
        for line in doc["lines"]:
            cell = lines.setdefault(_key(line), {"line": line, "quantity": ZERO, "amount": ZERO})
            cell["quantity"] += _quantity(line["quantity"])
            cell["amount"] += exact(line["amount"])
    return lines, tax


def _explain(number: str, unit: str, currency: str, before: dict | None, after: dict | None) -> str:
    bq, ba = (before["quantity"], before["amount"]) if before else (ZERO, ZERO)
    aq, aa = (after["quantity"], after["amount"]) if after else (ZERO, ZERO)
    unit = f" {unit}" if unit else ""
    return (
        f"Billed so far (invoice {number}): {fmt_quantity(_plain(bq))}{unit} for "
        f"{fmt_money(ba, currency)}. Usage now recorded: {fmt_quantity(_plain(aq))}{unit} for "
        f"{fmt_money(aa, currency)}. Difference: {fmt_quantity(_plain(aq - bq))}{unit}, "
        f"{fmt_money(aa - ba, currency)}."
    )


def credits_drawn(docs: Sequence[dict]) -> dict[int, Decimal]:
    """Grant index -> what ``docs`` drew from it (a credit note's give-back counts negative)."""
    drawn: dict[int, Decimal] = {}
    for doc in docs:
        for draw in doc.get("credits") or []:
            applied = exact(draw["applied"])
            if applied:
                drawn[draw["grant"]] = drawn.get(draw["grant"], ZERO) + applied
    return drawn


def _draw_order(grant: dict) -> tuple:
    """Soonest-expiring first, no expiry last, then grant order (rating.credits' order; the
    document does not carry a grant's start, which only breaks ties there)."""
    expires = grant.get("expires")
    return (dt.date.fromisoformat(expires) if expires else dt.date.max, grant["grant"])


def correction_credits(
    billed: Sequence[dict], fresh: dict, drawn_elsewhere: Mapping[int, Decimal] | None = None
) -> list[dict]:
    """Per grant of ``fresh``, what a correction draws so that ``billed`` (the original and its
    issued corrections) + the correction draw what ``fresh`` draws, within each grant's balance
    after ``drawn_elsewhere`` (every other live document's draws; None: nothing else drew)."""
    grants = fresh.get("credits") or []
    if not grants:
        return []
    currency = fresh["currency"]
    here = credits_drawn(billed)
    elsewhere = drawn_elsewhere or {}
    opening = {
        g["grant"]: max(
            exact(g["granted"]) - here.get(g["grant"], ZERO) - elsewhere.get(g["grant"], ZERO), ZERO
        )
        for g in grants
    }
    take = {g["grant"]: exact(g["applied"]) - here.get(g["grant"], ZERO) for g in grants}
    shortfall = ZERO
    for grant, wanted in take.items():
        if wanted > opening[grant]:
            shortfall += wanted - opening[grant]
            take[grant] = opening[grant]
    for g in sorted(grants, key=_draw_order):  # a grant drawn since: the next usable one pays
        if shortfall <= 0:
            break
        if g["status"] == "active":
            extra = min(opening[g["grant"]] - take[g["grant"]], shortfall)
            if extra > 0:
                take[g["grant"]] += extra
                shortfall -= extra
    return [
        {
            **{k: g[k] for k in ("grant", "granted", "expires", "status")},
            "opening": amount_text(opening[g["grant"]], currency),
            "applied": amount_text(take[g["grant"]], currency),
            "closing": amount_text(opening[g["grant"]] - take[g["grant"]], currency),
        }
        for g in grants
    ]


def _document(
    template: dict,
    number: str,
    lines: list[dict],
    tax: Decimal,
    origin: str,
    reason: str,
    credits: list[dict] | None = None,
) -> dict:
    currency = template["currency"]
    subtotal = sum((exact(ln["amount"]) for ln in lines), ZERO)
    credits_applied = sum((exact(c["applied"]) for c in credits or []), ZERO)
    total = round_money(subtotal, currency) + round_money(tax, currency) - credits_applied
    return {
        **{k: template[k] for k in _HEADER_KEYS if k in template},
        "kind": KIND_CREDIT_NOTE if total < 0 else KIND_ADJUSTMENT,
        "references": number,
        "origin": origin,
        "reason": reason,
        "number": None,
        "status": "draft",
        "issue_date": None,
        "due_date": None,
        "lines": lines,
        "subtotal": amount_text(subtotal, currency),
        "tax": amount_text(tax, currency),
        "credits_applied": amount_text(credits_applied, currency),
        "credits": credits or [],
        "total": amount_text(total, currency),
        "sections": sections(lines, currency),
        "usage_by_day": [],
        "disclosure": {"plan_table": [], "summary": reason, "worked_example": ""},
    }


def late_usage_correction(
    original: dict,
    corrections: list[dict],
    fresh: dict,
    drawn_elsewhere: Mapping[int, Decimal] | None = None,
) -> dict | None:
    """The correction that brings ``original`` + issued late-usage ``corrections`` to ``fresh``
    (the month re-rated with the late usage, its credits drawn as the original's were); None when
    nothing billable changed. ``drawn_elsewhere``: what every other live document of the customer
    drew from each grant (the ledger's), so a correction never draws a balance already spent."""
    number = original["number"]
    billed, billed_tax = _totals([original, *corrections])
    now, now_tax = _totals([fresh])
    currency = original["currency"]
    lines = []
    for key in [*billed, *(k for k in now if k not in billed)]:
        before, after = billed.get(key), now.get(key)
        dq = (after["quantity"] if after else ZERO) - (before["quantity"] if before else ZERO)
        da = (after["amount"] if after else ZERO) - (before["amount"] if before else ZERO)
        if not dq and not da:
            continue
        line = (after or before)["line"]
        lines.append(
            {
                "charge_id": line["charge_id"],
                "description": line["description"],
                "provider": line.get("provider"),
                "meter": line.get("meter"),
                "model": line.get("model"),
                "dimensions": line.get("dimensions") or {},
                "quantity": _plain(dq),
                "included_quantity": 0,
                "unit": line.get("unit"),
                "unit_size": line.get("unit_size") or 1,
                "unit_price": line.get("unit_price"),
                "pricing": line.get("pricing"),
                "amount": amount_text(da, currency),
                "tiers": [],
                "explanation": _explain(number, line.get("unit") or "", currency, before, after),
                "consideration": line.get("consideration"),
            }
        )
    tax = now_tax - billed_tax
    credits = correction_credits([original, *corrections], fresh, drawn_elsewhere)
    if not lines and not tax and not any(exact(c["applied"]) for c in credits):
        return None
    return _document(
        fresh,
        number,
        lines,
        tax,
        ORIGIN_LATE_USAGE,
        f"Correction of invoice {number}: usage recorded after it was issued.",
        credits,
    )


def manual_credit_note(original: dict, amount: str | Decimal, reason: str) -> dict:
    """A credit of ``amount`` (before tax) against ``original``, taxed at the original's rate."""
    currency = original["currency"]
    credit = round_money(exact(amount), currency)
    if credit <= 0:
        raise ValueError(f"credit amount must be positive, got {amount}")
    if not reason.strip():
        raise ValueError("a credit note needs a reason (it is printed on it)")
    rate = ZERO if original.get("reverse_charge") else exact(original["tax_rate"])
    line = {
        "charge_id": "credit",
        "description": reason,
        "provider": None,
        "meter": None,
        "model": None,
        "dimensions": {},
        "quantity": 1,
        "included_quantity": 0,
        "unit": "",
        "unit_size": 1,
        "unit_price": str(-credit),
        "pricing": "fixed",
        "amount": str(-credit),
        "tiers": [],
        "explanation": f"Credit against invoice {original['number']}: {reason}",
        "consideration": "fixed",
    }
    return _document(
        original,
        original["number"],
        [line],
        round_money(-credit * rate, currency),
        ORIGIN_MANUAL,
        f"Credit note for invoice {original['number']}: {reason}",
    )
