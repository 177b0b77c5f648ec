"""Ledger test data: a draft as month-end saves it, and issuing done by hand or as a run does."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from decimal import Decimal

import sqlalchemy as sa

from billing_pipeline.ledger.ledger import Ledger, audit
from billing_pipeline.money import round_money

MONTH = "2026-10"  # the period of ``document`` unless told otherwise
ISSUED_ON = dt.date(2026, 11, 3)


def document(customer_id: str, total: str = "737.80", period: str = "2026-10") -> dict:
    """A draft as month-end saves it: 120.00 of output tokens + a 500.00 base fee, 19 % tax."""
    return {
        "number": None,
        "status": "draft",
        "customer_id": customer_id,
        "period": period,
        "period_start": f"{period}-01",
        "period_end": f"{period}-31",
        "issue_date": None,
        "due_date": None,
        "currency": "USD",
        "issuer": {
            "name": "Example AI GmbH",
            "address": "Street 1",
            "vat_id": "DE1",
            "email": "b@e.ai",
        },
        "customer": {"id": customer_id, "name": customer_id.title(), "address": "x", "email": "y"},
        "plan": {"id": "enterprise", "name": "Enterprise"},
        "lines": [
            {
                "charge_id": "gpt4o-output",
                "description": "GPT-4o output tokens",
                "provider": "openai",
                "meter": "output_tokens",
                "model": "gpt-4o",
                "dimensions": {},
                "quantity": 12500000,
                "unit": "tokens",
                "unit_size": 1000,
                "unit_price": None,
                "pricing": "graduated",
                "amount": "120.00",
                "tiers": [],
                "explanation": "...",
                "consideration": "variable",
            },
            {
                "charge_id": "base_fee",
                "description": "Enterprise subscription",
                "provider": None,
                "meter": None,
                "model": None,
                "dimensions": {},
                "quantity": 1,
                "unit": "month",
                "unit_size": 1,
                "unit_price": "500.00",
                "pricing": "fixed",
                "amount": "500.00",
                "tiers": [],
                "explanation": "...",
                "consideration": "fixed",
            },
        ],
        "subtotal": "620.00",
        "tax_rate": "0.19",
        "tax": "117.80",
        "reverse_charge": False,
        "tax_note": "",
        "credits_applied": "0.00",
        "total": total,
        "usage_by_day": [],
        "disclosure": {"plan_table": [], "summary": "", "worked_example": ""},
    }


def issue_raw(ledger: Ledger, customer_id: str, number: str = "INV-2026-000001") -> None:
    """Issue by hand as issuing does: the audit row first, then the status change pointing at it
    (the database refuses a status change without its audit row)."""
    with ledger.engine.begin() as conn:
        invoice_id = conn.execute(
            sa.text("SELECT id FROM invoices WHERE customer_id = :c AND status = 'draft'"),
            {"c": customer_id},
        ).scalar_one()
        audit_id = audit(conn, invoice_id, "test", "issue", {"number": number})
        conn.execute(
            sa.text(
                "UPDATE invoices SET status = 'issued', number = :n, status_audit_id = :a WHERE id = :i"
            ),
            {"n": number, "a": audit_id, "i": invoice_id},
        )


def passed_checks(ledger, period: str = MONTH) -> None:
    """What a month-end run that finished records: issuing refuses a month without it."""
    ledger.record_checks(
        period, [{"name": "month_end_run_completed", "passed": True, "blocking": True}]
    )


def dump(ledger) -> str:
    """Everything that matters in the ledger, without ids and timestamps, as one hash."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT customer_id, period, kind, status, number, series, sequence, references_number, "
                "subtotal_micros, tax_micros, credits_micros, total_micros, document, pdf_sha256 "
                "FROM invoices ORDER BY customer_id, kind, number"
            )
        ).all()
        lines = conn.execute(
            sa.text(
                "SELECT i.customer_id, i.kind, l.position, l.charge_id, l.quantity, l.amount_micros "
                "FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id "
                "ORDER BY i.customer_id, i.kind, l.position"
            )
        ).all()
    text = json.dumps([[list(r) for r in rows], [list(r) for r in lines]], default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def with_output_tokens(doc: dict, quantity: int, amount: str) -> dict:
    """``doc`` with other output-token usage (late usage after issue), its totals added up again."""
    doc = copy.deepcopy(doc)
    doc["lines"][0].update(quantity=quantity, amount=amount)
    subtotal = sum(Decimal(ln["amount"]) for ln in doc["lines"])
    tax = round_money(subtotal * Decimal("0.19"), "USD")
    doc.update(subtotal=str(subtotal), tax=str(tax), total=str(subtotal + tax))
    return doc


def rewrite_issued(ledger: Ledger, number: str, assignments: str, params: dict) -> None:
    """What only the tables' owner can do (README: the application role must not own them):
    switch the guards off, rewrite an issued invoice (``UPDATE invoices SET <assignments>``),
    switch them on again: how tests forge a ledger row."""
    with ledger.engine.begin() as conn:
        if ledger.engine.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE invoices DISABLE TRIGGER invoices_guard"))
        else:
            conn.execute(sa.text("DROP TRIGGER invoices_issued_immutable"))
        conn.execute(
            sa.text(f"UPDATE invoices SET {assignments} WHERE number = :number"),
            {**params, "number": number},
        )
        if ledger.engine.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE invoices ENABLE TRIGGER invoices_guard"))
