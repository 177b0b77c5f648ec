"""Issuing: gapless numbers, frozen documents, final PDFs, and corrections after issue.

RELIABILITY.md scenarios 3-9, 16, 17 (14 is in test_invoice_pdf.py), each on SQLite and on the
real PostgreSQL (the ``ledger`` fixture).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json

import pytest

from billing_pipeline.issuing.month import PdfsNotRendered, issue_month
from billing_pipeline.ledger import ledger as ledger_module
from billing_pipeline.ledger.numbering import ChecksFailed, issue_drafts
from billing_pipeline.rendering.pdf import InvoiceRenderer
from billing_pipeline_tests.support.credits import month_end_with
from billing_pipeline_tests.support.ledger import (
    ISSUED_ON,
    MONTH,
    document,
    dump,
    passed_checks,
    with_output_tokens,
)

CUSTOMERS = ("acme", "globex", "initech")


def _issue(ledger, checked: bool = True, **kwargs):
    if checked:
        passed_checks(ledger)
    return issue_drafts(
        ledger, MONTH, prefix="INV", issue_date=ISSUED_ON, payment_terms_days=30, **kwargs
    )


def _numbers(ledger) -> list[tuple[str, str | None, str]]:
    return [(r["customer_id"], r["number"], r["status"]) for r in ledger.list_invoices(MONTH)]


def test_issuing_assigns_gapless_numbers_issue_and_due_dates(ledger):
    ledger.save_drafts(MONTH, [document(c) for c in CUSTOMERS])
    issued = _issue(ledger)
    assert [(i["customer_id"], i["number"]) for i in issued] == [
        ("acme", "INV-2026-000001"),
        ("globex", "INV-2026-000002"),
        ("initech", "INV-2026-000003"),
    ]
    doc = ledger.get_document("globex", MONTH)
    assert (doc["number"], doc["status"], doc["issue_date"], doc["due_date"]) == (
        "INV-2026-000002",
        "issued",
        "2026-11-03",
        "2026-12-03",
    )
    assert _issue(ledger) == []  # nothing left to issue


def test_issuing_one_customer_leaves_the_others_draft(ledger):
    ledger.save_drafts(MONTH, [document(c) for c in CUSTOMERS])
    _issue(ledger, customer_id="globex")
    assert _numbers(ledger) == [
        ("acme", None, "draft"),
        ("globex", "INV-2026-000001", "issued"),
        ("initech", None, "draft"),
    ]
    _issue(ledger)
    assert [n for _, n, _ in _numbers(ledger)] == [
        "INV-2026-000002",
        "INV-2026-000001",
        "INV-2026-000003",
    ]


def test_killed_mid_draft_writing_then_rerun_equals_a_clean_run(ledger, monkeypatch, tmp_path):
    """Scenario 3: the drafts are written in one transaction; a crash leaves the old state."""
    docs = [document(c) for c in CUSTOMERS]
    real = ledger_module._line_rows
    calls = []

    def crash_on_second(
        doc, invoice_id
    ):  # every invoice row is written by then, no line of the second
        calls.append(doc["customer_id"])
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(doc, invoice_id)

    monkeypatch.setattr(ledger_module, "_line_rows", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        ledger.save_drafts(MONTH, docs)
    assert ledger.list_invoices(MONTH) == []
    monkeypatch.setattr(ledger_module, "_line_rows", real)
    ledger.save_drafts(MONTH, docs)
    clean = ledger_module.Ledger(f"sqlite:///{tmp_path / 'clean.db'}")
    clean.migrate()
    clean.save_drafts(MONTH, copy.deepcopy(docs))
    assert dump(ledger) == dump(clean)


def test_crash_while_issuing_leaves_no_number_behind(ledger):
    """Scenario 5: numbering is one transaction; after a crash the series is still contiguous."""
    ledger.save_drafts(MONTH, [document(c) for c in CUSTOMERS])

    def crash(number):
        if number.endswith("000002"):
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        _issue(ledger, before_each=crash)
    assert _numbers(ledger) == [(c, None, "draft") for c in CUSTOMERS]
    _issue(ledger)
    assert sorted(n for _, n, _ in _numbers(ledger)) == [f"INV-2026-00000{i}" for i in (1, 2, 3)]


def test_crash_after_commit_before_rendering_renders_only_missing_pdfs(ledger, renderer, tmp_path):
    """Scenario 4: a render that dies after numbering; the re-run renders, numbers nothing new."""
    ledger.save_drafts(MONTH, [document(c) for c in CUSTOMERS[:2]])
    passed_checks(ledger)

    class Broken(InvoiceRenderer):
        def render_pdf(self, doc):
            raise MemoryError("renderer killed")

    with pytest.raises(PdfsNotRendered) as crashed:
        issue_month(
            ledger,
            MONTH,
            tmp_path,
            prefix="INV",
            payment_terms_days=30,
            issue_date=ISSUED_ON,
            renderer=Broken(),
        )
    assert [(f["customer_id"], f["error"]) for f in crashed.value.failed] == [
        ("acme", "MemoryError: renderer killed"),
        ("globex", "MemoryError: renderer killed"),
    ]
    numbers = _numbers(ledger)
    assert [n for _, n, _ in numbers] == ["INV-2026-000001", "INV-2026-000002"]
    assert not list((tmp_path / MONTH / "invoices").glob("*.pdf"))
    again = issue_month(
        ledger,
        MONTH,
        tmp_path,
        prefix="INV",
        payment_terms_days=30,
        issue_date=ISSUED_ON,
        renderer=renderer,
    )
    assert (again["issued"], again["rendered"], again["unchanged"]) == ([], 2, 0)
    assert _numbers(ledger) == numbers
    assert [e["action"] for e in ledger.audit_entries()].count("issue") == 2
    pdf = (tmp_path / MONTH / "invoices" / "acme.pdf").read_bytes()
    assert ledger.list_invoices(MONTH)[0]["pdf_sha256"] == hashlib.sha256(pdf).hexdigest()
    assert (
        json.loads((tmp_path / MONTH / "invoices" / "acme.json").read_text())["number"]
        == "INV-2026-000001"
    )


def test_rerunning_an_issued_month_changes_nothing_and_pdfs_are_byte_identical(
    ledger, renderer, tmp_path
):
    """Scenario 7."""
    ledger.save_drafts(MONTH, [document(c) for c in CUSTOMERS[:2]])
    passed_checks(ledger)
    issue_month(
        ledger,
        MONTH,
        tmp_path,
        prefix="INV",
        payment_terms_days=30,
        issue_date=ISSUED_ON,
        renderer=renderer,
    )
    folder = tmp_path / MONTH / "invoices"
    first = {p.name: p.read_bytes() for p in folder.iterdir()}
    before = dump(ledger)
    assert ledger.save_drafts(MONTH, [document(c) for c in CUSTOMERS[:2]])["skipped_issued"] == 2
    (folder / "acme.pdf").unlink()
    (folder / "globex.pdf").write_bytes(b"a draft PDF written over it")
    rerun = issue_month(
        ledger,
        MONTH,
        tmp_path,
        prefix="INV",
        payment_terms_days=30,
        issue_date=dt.date(2027, 1, 5),
        renderer=renderer,
    )
    assert (rerun["issued"], rerun["rendered"]) == ([], 2)
    assert dump(ledger) == before
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == first


def test_usage_after_issue_leaves_the_invoice_and_drafts_an_adjustment_that_explains_each_line(
    ledger,
):
    """Scenario 8: the original is untouched; the correction references it, line by line."""
    ledger.save_drafts(MONTH, [document("acme")])
    _issue(ledger)
    original = ledger.get_document("acme", MONTH)
    late = with_output_tokens(document("acme"), 13_000_000, "125.00")
    counts = ledger.save_drafts(MONTH, [late])
    assert (counts["skipped_issued"], counts["corrections"]) == (1, 1)
    assert ledger.get_document("acme", MONTH) == original
    rows = ledger.list_invoices(MONTH)
    correction = [r for r in rows if r["kind"] != "invoice"]
    assert [
        (r["kind"], r["status"], r["references"], r["subtotal"], r["tax"], r["total"])
        for r in correction
    ] == [("adjustment", "draft", "INV-2026-000001", "5.00", "0.95", "5.95")]
    ((_, _, doc),) = ledger.documents(MONTH, ("draft",))
    (line,) = doc["lines"]
    assert (line["charge_id"], line["quantity"], line["amount"]) == (
        "gpt4o-output",
        500_000,
        "5.00",
    )
    assert line["explanation"] == (
        "Billed so far (invoice INV-2026-000001): 12,500,000 tokens for $120.00. Usage now recorded: "
        "13,000,000 tokens for $125.00. Difference: 500,000 tokens, $5.00."
    )
    assert ledger.save_drafts(MONTH, [late])["corrections"] == 0  # same late usage: nothing new
    _issue(ledger)
    assert [(r["kind"], r["number"]) for r in ledger.list_invoices(MONTH)] == [
        ("adjustment", "INV-2026-000002"),
        ("invoice", "INV-2026-000001"),
    ]
    assert ledger.save_drafts(MONTH, [late])["corrections"] == 0  # billed in full now


def test_less_usage_after_issue_gives_a_credit_note(ledger):
    ledger.save_drafts(MONTH, [document("acme")])
    _issue(ledger)
    ledger.save_drafts(MONTH, [with_output_tokens(document("acme"), 12_000_000, "115.00")])
    (row,) = [r for r in ledger.list_invoices(MONTH) if r["kind"] != "invoice"]
    assert (row["kind"], row["references"], row["total"]) == (
        "credit_note",
        "INV-2026-000001",
        "-5.95",
    )


def test_late_usage_while_draft_is_included_when_the_draft_is_refreshed(ledger):
    """Scenario 9."""
    ledger.save_drafts(MONTH, [document("acme")])
    ledger.save_drafts(MONTH, [with_output_tokens(document("acme"), 13_000_000, "125.00")])
    assert [(r["kind"], r["status"], r["total"]) for r in ledger.list_invoices(MONTH)] == [
        ("invoice", "draft", "743.75")
    ]


def test_a_failed_blocking_check_stops_issuing(ledger):
    """Scenario 17: recorded by month-end, refused by issuing, whoever runs it."""
    ledger.save_drafts(MONTH, [document("acme")])
    ledger.record_checks(
        MONTH,
        [
            {"name": "invoice_totals_equal_rated_lines", "passed": False, "blocking": True},
            {"name": "every_usage_event_has_a_cost", "passed": False, "blocking": False},
        ],
    )
    with pytest.raises(ChecksFailed, match="invoice_totals_equal_rated_lines") as refused:
        _issue(ledger, checked=False)
    assert refused.value.checks == ["invoice_totals_equal_rated_lines"]
    assert _numbers(ledger) == [("acme", None, "draft")]
    ledger.record_checks(MONTH, [{"name": "invoice_totals_equal_rated_lines", "passed": True}])
    assert [i["number"] for i in _issue(ledger, checked=False)] == ["INV-2026-000001"]


def test_void_and_manual_credit_note(ledger):
    ledger.save_drafts(MONTH, [document("acme"), document("globex")])
    _issue(ledger)
    credit = ledger.add_credit_note("INV-2026-000001", "100.00", "Goodwill: outage on 12 October")
    assert (credit["kind"], credit["total"]) == ("credit_note", "-119.00")
    _issue(ledger)
    ledger.void("INV-2026-000002", "wrong customer address")
    rows = {(r["customer_id"], r["kind"]): r for r in ledger.list_invoices(MONTH)}
    assert rows[("acme", "credit_note")]["number"] == "INV-2026-000003"
    assert rows[("globex", "invoice")]["status"] == "void"
    with pytest.raises(ledger_module.LedgerError, match="void"):
        ledger.void("INV-2026-000002", "again")
    assert ledger.save_drafts(MONTH, [document("acme"), document("globex")])["inserted"] == 1


def test_cli_issue_exits_1_naming_the_failed_check_and_issues_nothing(tmp_path):
    from click.testing import CliRunner

    from billing_pipeline.cli import main
    from billing_pipeline.demo.generator import write_demo

    write_demo(tmp_path / "landing", tmp_path / "catalog.yaml", month=MONTH)
    ledger = ledger_module.Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    ledger.save_drafts(MONTH, [document("acme")])
    ledger.record_checks(MONTH, [{"name": "revenue_equals_rated_lines", "passed": False}])
    result = CliRunner().invoke(main, ["issue", "--month", MONTH, "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "revenue_equals_rated_lines" in result.output
    assert _numbers(ledger) == [("acme", None, "draft")]


def test_an_issued_adjustment_prints_the_credit_it_drew_and_adds_up(ledger, renderer, tmp_path):
    """Scenario 8 with prepaid credit: $100.00 granted, $70.00 drawn by the original, $50.00 of late
    usage: the adjustment draws the $30.00 left and bills $20.00, numbered after the original."""
    from pypdf import PdfReader

    month_end_with(ledger, MONTH, "acme2", 70)
    _issue(ledger)
    month_end_with(ledger, MONTH, "acme2", 120)
    passed_checks(ledger)
    issue_month(
        ledger,
        MONTH,
        tmp_path,
        prefix="INV",
        payment_terms_days=30,
        issue_date=ISSUED_ON,
        renderer=renderer,
    )
    stored = json.loads((tmp_path / MONTH / "invoices" / "acme2.INV-2026-000002.json").read_text())
    assert (stored["kind"], stored["references"]) == ("adjustment", "INV-2026-000001")
    # $50.00 + $0.00 tax - $30.00 credits = $20.00
    assert (stored["subtotal"], stored["tax"], stored["credits_applied"], stored["total"]) == (
        "50.00",
        "0.00",
        "30.00",
        "20.00",
    )
    text = (
        PdfReader(tmp_path / MONTH / "invoices" / "acme2.INV-2026-000002.pdf")
        .pages[0]
        .extract_text()
    )
    assert "Credits applied" in text and "-$30.00" in text and "$20.00" in text
