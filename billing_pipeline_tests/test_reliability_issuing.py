"""Issuing across processes and databases (RELIABILITY.md scenarios 6 and 16)."""

from __future__ import annotations

import multiprocessing

import pytest

from billing_pipeline.ledger.ledger import Ledger
from billing_pipeline.ledger.numbering import issue_drafts
from billing_pipeline_tests.support.ledger import (
    ISSUED_ON,
    MONTH,
    document,
    dump,
    passed_checks,
    with_output_tokens,
)
from billing_pipeline_tests.support.postgres import PG_URL, drop_schema, postgres_ledger

CUSTOMERS = [f"customer{i:02d}" for i in range(12)]


def _issue_in_child(url: str, schema: str, barrier, results) -> None:
    ledger = Ledger(url, connect_args={"options": f"-csearch_path={schema}"})
    barrier.wait()  # both processes start issuing at the same moment
    issued = issue_drafts(ledger, MONTH, prefix="INV", issue_date=ISSUED_ON, payment_terms_days=30)
    results.put([(i["customer_id"], i["number"]) for i in issued])
    ledger.engine.dispose()


@pytest.fixture
def pg():
    ledger, admin, schema = postgres_ledger()
    ledger.migrate()
    try:
        yield ledger, schema
    finally:
        drop_schema(ledger, admin, schema)


def test_two_processes_issuing_one_month_on_postgresql_issue_one_set(pg):
    """Scenario 6: exactly one invoice per customer, numbers 1..N, none twice, none skipped."""
    ledger, schema = pg
    ledger.save_drafts(MONTH, [document(c) for c in CUSTOMERS])
    passed_checks(ledger)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_issue_in_child, args=(PG_URL, schema, barrier, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    issued = sorted(pair for outcome in outcomes for pair in outcome)
    assert sorted(len(o) for o in outcomes) == [0, len(CUSTOMERS)]  # one run issued everything
    assert [n for _, n in issued] == [f"INV-2026-{i:06d}" for i in range(1, len(CUSTOMERS) + 1)]
    rows = ledger.list_invoices(MONTH)
    assert sorted((r["customer_id"], r["number"]) for r in rows) == issued
    assert {r["status"] for r in rows} == {"issued"}


def test_sqlite_and_postgresql_ledgers_give_identical_results(pg, tmp_path):
    """Scenario 16: the same month (drafts, issue, late usage) gives the same ledger on both."""
    sqlite = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    sqlite.migrate()
    for ledger in (sqlite, pg[0]):
        ledger.save_drafts(MONTH, [document(c) for c in CUSTOMERS[:3]])
        passed_checks(ledger)
        issue_drafts(ledger, MONTH, prefix="INV", issue_date=ISSUED_ON, payment_terms_days=30)
        ledger.save_drafts(
            MONTH,
            [
                with_output_tokens(document(CUSTOMERS[1]), 1_000, "0.01"),
                document(CUSTOMERS[0]),
                document(CUSTOMERS[2]),
            ],
        )
    assert dump(sqlite) == dump(pg[0])
    assert [r["kind"] for r in sqlite.list_invoices(MONTH)].count("credit_note") == 1
