"""Prepaid credits carried from month to month through the ledger: a grant is never drawn twice.

Runs on SQLite and PostgreSQL (skipped only when PostgreSQL is unreachable and CI is not "true").
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl

from billing_pipeline.catalog import parse_catalog
from billing_pipeline.documents.invoice import build_documents
from billing_pipeline.ledger.ledger import Ledger
from billing_pipeline.ledger.numbering import issue_drafts
from billing_pipeline.rating import rate_month
from billing_pipeline.schema import USAGE_SCHEMA
from billing_pipeline_tests.support.credits import month_end_with
from billing_pipeline_tests.support.ledger import issue_raw

CATALOG = parse_catalog(
    {
        "issuer": {"name": "I"},
        "plans": {"p": {"name": "P", "base_fee": "100.00"}},
        "customers": {
            "acme": {
                "name": "A",
                "tax": {"rate": "0.19"},
                "subscriptions": [{"plan": "p", "from": "2026-01-01"}],
                "credits": [
                    {"amount": "150.00", "from": "2026-01-01"},
                    {"amount": "500.00", "from": "2026-01-01", "expires": "2026-11-30"},
                ],
            },
            "initech": {"name": "I", "subscriptions": [{"plan": "p", "from": "2026-01-01"}]},
        },
    }
)


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
        ("active", "150.00", "100.00"),
        ("expired", "300.00", "0.00"),
    ]
    january = month_end(ledger, "2027-01")["acme"]
    assert (january["credits_applied"], january["total"]) == ("50.00", "69.00")


def test_re_running_a_month_does_not_count_its_own_draft(ledger):
    month_end(ledger, "2026-10")
    again = month_end(ledger, "2026-10")["acme"]
    assert [g["opening"] for g in again["credits"]] == ["150.00", "500.00"]
    assert ledger.credits_used("2026-10") == {}


def test_a_void_invoice_gives_its_credits_back(ledger):
    month_end(ledger, "2026-10")
    issue_raw(ledger, "acme", "INV-1")
    ledger.void("INV-1", "wrong customer")
    assert ledger.credits_used("2026-11") == {}


# ---------------------------------------------------------------- corrections after issue
# support/credits.py: acme2 buys requests at $1.00 each (no base fee, so every dollar below is
# usage) and holds one $100.00 grant; issue 15 section 6: corrections apply credits the way the
# original invoice did.


def issue(ledger: Ledger, month: str) -> None:
    ledger.record_checks(
        month, [{"name": "month_end_run_completed", "passed": True}]
    )  # as a finished run does
    issue_drafts(
        ledger, month, prefix="INV", issue_date=dt.date(2026, 12, 3), payment_terms_days=30
    )


def money(row: dict) -> tuple:
    return (
        row["kind"],
        row["status"],
        row["subtotal"],
        row["tax"],
        row["credits_applied"],
        row["total"],
    )


def correction(ledger: Ledger, month: str) -> tuple[dict, dict]:
    (row,) = [
        r for r in ledger.list_invoices(month) if r["kind"] != "invoice" and r["status"] != "void"
    ]
    (doc,) = [
        d for _, _, d in ledger.documents(month, (row["status"],)) if d.get("kind") == row["kind"]
    ]
    return row, doc


def test_an_adjustment_for_late_usage_draws_what_the_grant_has_left_before_billing(ledger):
    october = month_end_with(ledger, "2026-10", "acme2", 70)
    # 70 requests x $1.00 = $70.00, all paid by the $100.00 grant: total $0.00
    assert (october["subtotal"], october["credits_applied"], october["total"]) == (
        "70.00",
        "70.00",
        "0.00",
    )
    issue(ledger, "2026-10")
    month_end_with(ledger, "2026-10", "acme2", 120)  # 50 late requests: $50.00 more
    row, doc = correction(ledger, "2026-10")
    # the grant has $100.00 - $70.00 = $30.00 left: it pays $30.00 of the $50.00, $20.00 is billed
    assert money(row) == ("adjustment", "draft", "50.00", "0.00", "30.00", "20.00")
    assert [(g["opening"], g["applied"], g["closing"]) for g in doc["credits"]] == [
        ("30.00", "30.00", "0.00")
    ]
    issue(ledger, "2026-10")
    # November sees the grant spent: 70.00 by the invoice + 30.00 by the adjustment
    assert ledger.credits_used("2026-11") == {"acme2": {0: Decimal("100.00")}}
    november = month_end_with(ledger, "2026-11", "acme2", 10)
    assert (november["credits_applied"], november["total"]) == (
        "0.00",
        "10.00",
    )  # 10 x $1.00, no credit left
    month_end_with(
        ledger, "2026-10", "acme2", 120
    )  # the same late usage again: billed in full already
    assert [r["kind"] for r in ledger.list_invoices("2026-10")] == ["adjustment", "invoice"]


def test_credits_pay_the_tax_exclusive_part_of_an_adjustment_and_tax_is_on_the_whole_difference(
    ledger,
):
    month_end_with(ledger, "2026-10", "taxed", 70)
    issue(ledger, "2026-10")
    month_end_with(ledger, "2026-10", "taxed", 120)
    row, _ = correction(ledger, "2026-10")
    # original: $70.00 + 19 % tax $13.30 - credits $70.00 = $13.30
    # now: $120.00 + tax $22.80 - credits $100.00 = $42.80
    # adjustment: $50.00 + tax ($22.80 - $13.30 = $9.50) - credits $30.00 = $29.50 ($13.30 + $29.50 = $42.80)
    assert money(row) == ("adjustment", "draft", "50.00", "9.50", "30.00", "29.50")


def test_a_credit_note_for_lower_usage_gives_the_over_drawn_credit_back_to_the_grant(ledger):
    october = month_end_with(ledger, "2026-10", "acme2", 120)
    # 120 x $1.00 = $120.00; the grant pays $100.00, $20.00 is billed
    assert (october["credits_applied"], october["total"]) == ("100.00", "20.00")
    issue(ledger, "2026-10")
    month_end_with(ledger, "2026-10", "acme2", 70)  # the provider restated October: 70 requests
    row, doc = correction(ledger, "2026-10")
    # now: $70.00, all paid by credit. Credit note: -$50.00 of usage, of which $30.00 goes back to
    # the grant and $20.00 (what the customer paid) is refunded: -$50.00 - (-$30.00) = -$20.00
    assert money(row) == ("credit_note", "draft", "-50.00", "0.00", "-30.00", "-20.00")
    assert [(g["opening"], g["applied"], g["closing"]) for g in doc["credits"]] == [
        ("0.00", "-30.00", "30.00")
    ]
    issue(ledger, "2026-10")
    assert ledger.credits_used("2026-11") == {
        "acme2": {0: Decimal("70.00")}
    }  # $100.00 - $30.00 given back
    november = month_end_with(ledger, "2026-11", "acme2", 40)
    # 40 x $1.00 = $40.00; the $30.00 given back pays for part of it: $10.00 billed
    assert (november["credits_applied"], november["total"]) == ("30.00", "10.00")


def test_an_adjustment_never_draws_credit_a_later_month_already_spent(ledger):
    month_end_with(ledger, "2026-10", "acme2", 70)  # draws $70.00
    issue(ledger, "2026-10")
    november = month_end_with(ledger, "2026-11", "acme2", 30)  # draws the last $30.00
    assert (november["credits_applied"], november["total"]) == ("30.00", "0.00")
    issue(ledger, "2026-11")
    month_end_with(ledger, "2026-10", "acme2", 120)  # 50 late October requests
    row, doc = correction(ledger, "2026-10")
    # the $30.00 October left was spent by November: nothing to draw, the $50.00 is billed
    assert money(row) == ("adjustment", "draft", "50.00", "0.00", "0.00", "50.00")
    assert [(g["opening"], g["applied"]) for g in doc["credits"]] == [("0.00", "0.00")]
