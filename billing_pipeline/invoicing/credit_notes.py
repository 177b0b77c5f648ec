"""Corrections after issue: credit notes and adjustment invoices that reference the original.

An issued invoice is never edited (VAT Directive art. 233). When usage arrives after issue, the
difference between what the month is now worth and what was already billed (the original plus
earlier late-usage corrections) becomes one correction document: a credit note when the total
goes down, an adjustment invoice when it goes up, one line per changed charge saying what was
billed, what it is now and the difference. Pure functions over documents (plain dicts).

Tax on a correction is the difference of the taxes (new invoice's tax - tax already billed), so
the original plus its corrections always add up to exactly what a fresh invoice would say.
"""

from __future__ import annotations

import json
from decimal import Decimal

from billing_pipeline.invoicing.schema import KIND_ADJUSTMENT, KIND_CREDIT_NOTE
from billing_pipeline.money import ZERO, exact, fmt_money, fmt_quantity, round_money

ORIGIN_LATE_USAGE = "late_usage"
ORIGIN_MANUAL = "manual"
_HEADER_KEYS = ("customer_id", "period", "period_label", "period_start", "period_end", "currency",
                "issuer", "customer", "plan", "tax_rate", "reverse_charge", "tax_note")


def _key(line: dict) -> tuple:
    return (line["charge_id"], line.get("provider"), line.get("model"), line.get("meter"),
            json.dumps(line.get("dimensions") or {}, sort_keys=True))


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
    return (f"Billed so far (invoice {number}): {fmt_quantity(_plain(bq))}{unit} for "
            f"{fmt_money(ba, currency)}. Usage now recorded: {fmt_quantity(_plain(aq))}{unit} for "
            f"{fmt_money(aa, currency)}. Difference: {fmt_quantity(_plain(aq - bq))}{unit}, "
            f"{fmt_money(aa - ba, currency)}.")


def _document(template: dict, number: str, lines: list[dict], tax: Decimal, origin: str,
              reason: str) -> dict:
    currency = template["currency"]
    subtotal = sum((exact(l["amount"]) for l in lines), ZERO)
    total = subtotal + tax
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
        "subtotal": str(round_money(subtotal, currency)),
        "tax": str(round_money(tax, currency)),
        "credits_applied": str(round_money(ZERO, currency)),
        "total": str(round_money(total, currency)),
        "usage_by_day": [],
        "disclosure": {"plan_table": [], "summary": reason, "worked_example": ""},
    }


def late_usage_correction(original: dict, corrections: list[dict], fresh: dict) -> dict | None:
    """The correction that brings ``original`` + issued late-usage ``corrections`` to ``fresh``
    (the month re-rated with the late usage); None when nothing billable changed."""
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
        lines.append({
            "charge_id": line["charge_id"], "description": line["description"],
            "provider": line.get("provider"), "meter": line.get("meter"), "model": line.get("model"),
            "dimensions": line.get("dimensions") or {}, "quantity": _plain(dq), "included_quantity": 0,
            "unit": line.get("unit"), "unit_size": line.get("unit_size") or 1,
            "unit_price": line.get("unit_price"), "pricing": line.get("pricing"),
            "amount": str(round_money(da, currency)), "tiers": [],
            "explanation": _explain(number, line.get("unit") or "", currency, before, after),
            "consideration": line.get("consideration"),
        })
    tax = now_tax - billed_tax
    if not lines and not tax:
        return None
    return _document(fresh, number, lines, tax, ORIGIN_LATE_USAGE,
                     f"Correction of invoice {number}: usage recorded after it was issued.")


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
        "charge_id": "credit", "description": reason, "provider": None, "meter": None, "model": None,
        "dimensions": {}, "quantity": 1, "included_quantity": 0, "unit": "", "unit_size": 1,
        "unit_price": str(-credit), "pricing": "fixed", "amount": str(-credit), "tiers": [],
        "explanation": f"Credit against invoice {original['number']}: {reason}",
        "consideration": "fixed",
    }
    return _document(original, original["number"], [line], round_money(-credit * rate, currency),
                     ORIGIN_MANUAL, f"Credit note for invoice {original['number']}: {reason}")
