"""Final PDFs after issue (issue 16, items 3 and 4): one customer's unrenderable PDF holds that
customer, not the month; and a PDF that re-renders differently says whether the document was
tampered with or the renderer changed. On SQLite and PostgreSQL (the ``ledger`` fixture).

The renderers here are stand-ins whose bytes depend only on the document (what the real one
guarantees, see test_invoice_pdf.py); a "new template" is one that writes different bytes.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from billing_pipeline.issuing.month import PdfsNotRendered, issue_month, render_issued
from billing_pipeline.ledger.ledger import Ledger, canonical_json
from billing_pipeline_tests.support.ledger import document, rewrite_issued

MONTH = "2026-10"
ISSUED_ON = dt.date(2026, 11, 3)
CUSTOMERS = (
    "acme",
    "globex",
    "initech",
)  # numbered in this order: INV-2026-000001, -000002, -000003


class Renderer:
    """Template version 1: the PDF's bytes are a function of the document."""

    template = b"template v1"

    def render_pdf(self, doc: dict) -> bytes:
        return b"%PDF-1.7\n" + self.template + b"\n" + canonical_json(doc).encode()


class NewTemplate(Renderer):
    template = b"template v2"


class BrokenFor(Renderer):
    """Cannot lay out one customer's document (e.g. a line the page breaker chokes on)."""

    def __init__(self, customer_id: str):
        self.customer_id = customer_id

    def render_pdf(self, doc: dict) -> bytes:
        if doc["customer_id"] == self.customer_id:
            raise ValueError("cannot lay out line 2: description wider than the page")
        return super().render_pdf(doc)


def _month(ledger: Ledger) -> None:
    ledger.save_drafts(MONTH, [document(c) for c in CUSTOMERS])
    ledger.record_checks(MONTH, [{"name": "month_end_run_completed", "passed": True}])


def _issue(ledger: Ledger, out, renderer) -> dict:
    return issue_month(
        ledger,
        MONTH,
        out,
        prefix="INV",
        payment_terms_days=30,
        issue_date=ISSUED_ON,
        renderer=renderer,
    )


def _pdfs(out) -> list[str]:
    return sorted(p.name for p in (out / MONTH / "invoices").glob("*.pdf"))


# ---------------------------------------------------------------- one bad PDF holds one customer


def test_one_customers_unrenderable_pdf_holds_only_that_customer(ledger, tmp_path):
    _month(ledger)
    with pytest.raises(PdfsNotRendered) as failed:
        _issue(ledger, tmp_path, BrokenFor("globex"))
    result = failed.value.result
    assert [i["number"] for i in result["issued"]] == [
        "INV-2026-000001",
        "INV-2026-000002",
        "INV-2026-000003",
    ]
    assert (result["rendered"], result["unchanged"]) == (2, 0)
    assert failed.value.failed == [
        {
            "customer_id": "globex",
            "number": "INV-2026-000002",
            "kind": "render_failed",
            "error": "ValueError: cannot lay out line 2: description wider than the page",
        }
    ]
    assert "globex (INV-2026-000002): ValueError: cannot lay out line 2" in str(failed.value)
    assert _pdfs(tmp_path) == ["acme.pdf", "initech.pdf"]
    globex = {r["customer_id"]: r for r in ledger.list_invoices(MONTH)}["globex"]
    recorded = [
        json.loads(e["detail"])
        for e in ledger.audit_entries(globex["id"])
        if e["action"] == "render_failed"
    ]
    assert recorded == failed.value.failed
    # The next run, still broken for globex: the same one failure, nothing else redone, no new number.
    with pytest.raises(PdfsNotRendered) as again:
        _issue(ledger, tmp_path, BrokenFor("globex"))
    assert (
        again.value.result["issued"],
        again.value.result["rendered"],
        again.value.result["unchanged"],
    ) == ([], 0, 2)
    assert [f["customer_id"] for f in again.value.failed] == ["globex"]
    # Fixed: the missing PDF is rendered, the others are left as they are.
    fixed = _issue(ledger, tmp_path, Renderer())
    assert (fixed["issued"], fixed["rendered"], fixed["unchanged"], fixed["failed"]) == (
        [],
        1,
        2,
        [],
    )
    assert _pdfs(tmp_path) == ["acme.pdf", "globex.pdf", "initech.pdf"]


def test_cli_issue_exits_1_naming_the_customer_and_why_then_renders_the_rest(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from billing_pipeline.cli import main
    from billing_pipeline.demo.generator import write_demo
    from billing_pipeline.issuing import month as issuing

    write_demo(tmp_path / "landing", tmp_path / "catalog.yaml", month=MONTH)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    _month(ledger)
    monkeypatch.setattr(issuing, "InvoiceRenderer", lambda: BrokenFor("globex"))
    result = CliRunner().invoke(main, ["issue", "--month", MONTH, "--out", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert "Traceback" not in result.output
    assert (
        "error: globex: INV-2026-000002 is issued but its PDF was not rendered: "
        "ValueError: cannot lay out line 2: description wider than the page"
    ) in result.output
    assert "issued 3, PDFs rendered 2, unchanged 0, not rendered 1" in result.output
    monkeypatch.setattr(issuing, "InvoiceRenderer", Renderer)
    result = CliRunner().invoke(main, ["issue", "--month", MONTH, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "issued 0, PDFs rendered 1, unchanged 2" in result.output
    assert _pdfs(tmp_path) == ["acme.pdf", "globex.pdf", "initech.pdf"]


# ---------------------------------------------------------------- tampered document or new renderer


def test_a_changed_template_is_reported_as_a_renderer_change_not_tampering(ledger, tmp_path):
    _month(ledger)
    _issue(ledger, tmp_path, Renderer())
    issued_pdf = (tmp_path / MONTH / "invoices" / "acme.pdf").read_bytes()
    (tmp_path / MONTH / "invoices" / "acme.pdf").unlink()  # lost: to be rendered again
    result = render_issued(ledger, MONTH, tmp_path, renderer=NewTemplate())
    assert (result["rendered"], result["unchanged"]) == (0, 2)
    [failure] = result["failed"]
    assert (failure["customer_id"], failure["number"], failure["kind"]) == (
        "acme",
        "INV-2026-000001",
        "renderer_changed",
    )
    assert failure["error"].startswith(
        "the document is intact (its sha256 is the one kept at issue) but the re-rendered PDF"
    )
    assert "the renderer, template or fonts changed since it was issued" in failure["error"]
    assert "tamper" not in failure["error"]
    assert _pdfs(tmp_path) == ["globex.pdf", "initech.pdf"]  # nothing written in its place
    assert (
        render_issued(ledger, MONTH, tmp_path, renderer=Renderer())["rendered"] == 1
    )  # the old template
    assert (tmp_path / MONTH / "invoices" / "acme.pdf").read_bytes() == issued_pdf


@pytest.mark.parametrize(
    "witness", ["hash kept at issue", "JSON copy (issued before hashes were kept)"]
)
def test_a_tampered_document_is_named_and_not_rendered(ledger, tmp_path, witness):
    _month(ledger)
    _issue(ledger, tmp_path, Renderer())
    folder = tmp_path / MONTH / "invoices"
    issued_pdf, issued_json = (folder / "acme.pdf").read_bytes(), (folder / "acme.json").read_text()
    forged = json.loads(issued_json)
    forged["total"] = "0.01"
    assignments = "document = :forged, total_micros = 10000"
    if witness.startswith("JSON"):
        assignments += ", document_sha256 = NULL"
    rewrite_issued(ledger, "INV-2026-000001", assignments, {"forged": canonical_json(forged)})
    result = render_issued(ledger, MONTH, tmp_path, renderer=Renderer())
    [failure] = result["failed"]
    assert (failure["customer_id"], failure["number"], failure["kind"]) == (
        "acme",
        "INV-2026-000001",
        "tampered",
    )
    if witness.startswith("hash"):
        assert failure["error"].startswith(
            "the issued document was tampered with: its sha256 in the ledger is "
        )
    else:
        assert failure["error"].startswith("the ledger's document differs from its JSON copy ")
        assert "one of them was tampered with" in failure["error"]
    assert "renderer" not in failure["error"]
    # The forged total reached neither file.
    assert ((folder / "acme.pdf").read_bytes(), (folder / "acme.json").read_text()) == (
        issued_pdf,
        issued_json,
    )
    assert (result["rendered"], result["unchanged"]) == (0, 2)
