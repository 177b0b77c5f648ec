"""Prepaid credits carried from month to month through the ledger: a grant is never drawn twice.

Runs on SQLite and PostgreSQL (skipped only when PostgreSQL is unreachable and CI is not "true").
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import sqlalchemy as sa

from billing_pipeline.catalog import parse_catalog
from billing_pipeline.invoicing.document import build_documents
from billing_pipeline.invoicing.ledger import Ledger
from billing_pipeline.rating import rate_month
from billing_pipeline.schema import USAGE_SCHEMA
from billing_pipeline_tests.test_ledger import ledger  # noqa: F401 - fixture (SQLite and PostgreSQL)

CATALOG = parse_catalog({
    "issuer": {"name": "I"},
    "plans": {"p": {"name": "P", "base_fee": "100.00"}},
    "customers": {
        "acme": {"name": "A", "tax": {"rate": "0.19"}, "subscriptions": [{"plan": "p", "from": "2026-01-01"}],
                 "credits": [{"amount": "150.00", "from": "2026-01-01"},
                             {"amount": "500.00", "from": "2026-01-01", "expires": "2026-11-30"}]},
        "initech": {"name": "I", "subscriptions": [{"plan": "p", "from": "2026-01-01"}]},
    },
})


def month_end(ledger: Ledger, month: str) -> dict[str, dict]:
    """What the invoice_drafts asset does: rate, draw credits after earlier months, save drafts."""
    lines = rate_month(pl.DataFrame(schema=USAGE_SCHEMA), CATALOG, month).lines
    documents = build_documents(lines, CATALOG, month, credits_used=ledger.credits_used(month))
    ledger.save_drafts(month, documents)
    return {d["customer_id"]: d for d in documents}


def test_a_grant_drawn_in_october_is_not_drawn_again_in_november(ledger):
    october = month_end(ledger, "2026-10")["acme"]
    # the grant expiring 2026-11-30 goes first: 100.00 of its 500.00
    assert [g["applied"] for g in october["credits"]] == ["0.00", "100.00"]
    assert ledger.credits_used("2026-11") == {"acme": {1: Decimal("100.00")}}

    november = month_end(ledger, "2026-11")["acme"]
    assert [g["opening"] for g in november["credits"]] == ["150.00", "400.00"]
    assert [g["applied"] for g in november["credits"]] == ["0.00", "100.00"]
    assert (november["credits_applied"], november["total"]) == ("100.00", "19.00")


def test_balances_carry_over_and_an_expired_grant_leaves_the_rest_to_the_next_one(ledger):
    for month in ("2026-10", "2026-11"):
        month_end(ledger, month)
    december = month_end(ledger, "2026-12")["acme"]
    # 300.00 left on the expired grant is not drawn; the 150.00 grant pays 100.00
    assert [(g["status"], g["opening"], g["applied"]) for g in december["credits"]] == [
        ("active", "150.00", "100.00"), ("expired", "300.00", "0.00")]
    january = month_end(ledger, "2027-01")["acme"]
    assert (january["credits_applied"], january["total"]) == ("50.00", "69.00")


def test_re_running_a_month_does_not_count_its_own_draft(ledger):
    month_end(ledger, "2026-10")
    again = month_end(ledger, "2026-10")["acme"]
    assert [g["opening"] for g in again["credits"]] == ["150.00", "500.00"]
    assert ledger.credits_used("2026-10") == {}


def test_a_void_invoice_gives_its_credits_back(ledger):
    month_end(ledger, "2026-10")
    with ledger.engine.begin() as conn:
        conn.execute(sa.text("UPDATE invoices SET status = 'issued', number = 'INV-1' WHERE customer_id = 'acme'"))
    ledger.void("INV-1", "wrong customer")
    assert ledger.credits_used("2026-11") == {}
