"""The ledger: re-running month-end is idempotent, and an issued invoice can never change.

Every test runs against SQLite and PostgreSQL (a throwaway schema on 127.0.0.1:5432); Postgres is
skipped only when unreachable and CI is not "true".
"""

from __future__ import annotations

import copy

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from billing_pipeline.ledger.ledger import Ledger
from billing_pipeline_tests.support.ledger import document, issue_raw


def _dump(ledger: Ledger) -> list:
    with ledger.engine.connect() as conn:
        invoices = conn.execute(
            sa.text(
                "SELECT customer_id, period, status, subtotal_micros, tax_micros, credits_micros, "
                "total_micros, document, updated_at FROM invoices ORDER BY customer_id"
            )
        ).all()
        lines = conn.execute(
            sa.text(
                "SELECT invoice_id, position, charge_id, quantity, unit_price, amount_micros "
                "FROM invoice_lines ORDER BY invoice_id, position"
            )
        ).all()
    return [tuple(r) for r in invoices] + [tuple(r) for r in lines]


def test_saving_the_same_drafts_twice_changes_nothing(ledger):
    docs = [document("acme"), document("globex", total="100.00")]
    assert ledger.save_drafts("2026-10", docs) == {
        "inserted": 2,
        "replaced": 0,
        "unchanged": 0,
        "skipped_issued": 0,
        "deleted": 0,
        "corrections": 0,
    }
    before = _dump(ledger)
    assert ledger.save_drafts("2026-10", copy.deepcopy(docs)) == {
        "inserted": 0,
        "replaced": 0,
        "unchanged": 2,
        "skipped_issued": 0,
        "deleted": 0,
        "corrections": 0,
    }
    assert _dump(ledger) == before
    rows = ledger.list_invoices("2026-10")
    assert [(r["customer_id"], r["status"], r["total"], r["subtotal"]) for r in rows] == [
        ("acme", "draft", "737.80", "620.00"),
        ("globex", "draft", "100.00", "620.00"),
    ]
    assert ledger.get_document("acme", "2026-10") == docs[0]
    assert len(ledger.audit_entries()) == 2


def test_late_usage_replaces_the_draft_and_vanished_customers_lose_theirs(ledger):
    ledger.save_drafts("2026-10", [document("acme"), document("globex")])
    counts = ledger.save_drafts("2026-10", [document("acme", total="800.00")])
    assert counts == {
        "inserted": 0,
        "replaced": 1,
        "unchanged": 0,
        "skipped_issued": 0,
        "deleted": 1,
        "corrections": 0,
    }
    assert [(r["customer_id"], r["total"]) for r in ledger.list_invoices("2026-10")] == [
        ("acme", "800.00")
    ]
    assert ledger.count_lines() == 2
    assert [e["action"] for e in ledger.audit_entries()][-2:] == ["replace_draft", "delete_draft"]


def test_issued_invoice_is_untouched_by_save_drafts(ledger):
    ledger.save_drafts("2026-10", [document("acme")])
    issue_raw(ledger, "acme")
    before = _dump(ledger)
    counts = ledger.save_drafts("2026-10", [document("acme", total="999.99")])
    assert counts["skipped_issued"] == 1 and counts["replaced"] == 0
    assert ledger.save_drafts("2026-10", [])["deleted"] == 0  # an issued invoice is not a draft
    assert _dump(ledger) == before
    assert ledger.list_invoices("2026-10")[0]["total"] == "737.80"


def test_database_refuses_to_change_or_delete_an_issued_invoice(ledger):
    ledger.save_drafts("2026-10", [document("acme")])
    issue_raw(ledger, "acme")
    statements = [
        "UPDATE invoices SET total_micros = 1 WHERE customer_id = 'acme'",
        "UPDATE invoices SET document = '{}' WHERE customer_id = 'acme'",
        "UPDATE invoices SET status = 'draft' WHERE customer_id = 'acme'",
        "UPDATE invoice_lines SET amount_micros = 1",
        "DELETE FROM invoice_lines",
        "DELETE FROM invoices WHERE customer_id = 'acme'",
        "DELETE FROM audit_log",
    ]
    for statement in statements:
        with pytest.raises(DBAPIError, match="immutable|cannot delete|append-only|may only go"):
            with ledger.engine.begin() as conn:
                conn.execute(sa.text(statement))
    assert ledger.list_invoices("2026-10")[0]["total"] == "737.80"
    ledger.void(
        "INV-2026-000001", "wrong address"
    )  # voiding (with its audit row) is the one allowed change
    assert ledger.save_drafts("2026-10", [document("acme")])["inserted"] == 1  # its successor


def test_one_live_invoice_per_customer_period_and_kind(ledger):
    ledger.save_drafts("2026-10", [document("acme")])
    with pytest.raises(IntegrityError):
        with ledger.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO invoices (customer_id, period, kind, status, currency, subtotal_micros, "
                    "tax_micros, credits_micros, total_micros, document, created_at, updated_at) "
                    "VALUES ('acme', '2026-10', 'invoice', 'draft', 'USD', 0, 0, 0, 0, '{}', "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )


def test_money_is_stored_as_integer_micros_and_floats_are_refused(ledger):
    ledger.save_drafts("2026-10", [document("acme")])
    with ledger.engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT total_micros FROM invoices")).scalar_one() == 737_800_000
        )
    bad = document("acme")
    bad["total"] = 737.8
    with pytest.raises(TypeError):
        ledger.save_drafts("2026-10", [bad])


@pytest.mark.parametrize("value", [12.0, float("nan"), 1e300])
def test_a_float_deep_inside_a_line_is_refused_with_its_path(ledger, value):
    bad = document("acme")
    bad["lines"][0]["daily"] = [
        {"day": "2026-10-01", "model": "gpt-4o", "quantity": 5},
        {"day": "2026-10-02", "model": "gpt-4o", "quantity": value},
    ]
    with pytest.raises(TypeError, match=r"document\.lines\[0\]\.daily\[1\]\.quantity is a float"):
        ledger.save_drafts("2026-10", [bad])
