"""A month-end re-run brings the invoice folder in line with the month's drafts: drafts that no
longer exist lose their files, issued invoices keep theirs untouched, every draft's JSON copy is
written again, and only PDFs that could show something else are rendered again. And the invoices
must add up to the rated lines (rendering/invoice_files.py)."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_pipeline.documents.invoice import document_json
from billing_pipeline.rendering.invoice_files import (
    document_totals,
    draft_summary,
    invoice_folder,
    invoice_totals_check,
    prepare_draft_files,
)
from billing_pipeline.rendering.receipts import RECEIPTS, record_render

FINGERPRINT = "renderer v1"


def invoice(customer_id: str, *amounts: str, tax: str = "0.00", credits: str = "0.00") -> dict:
    subtotal = sum((Decimal(a) for a in amounts), Decimal("0.00"))
    return {
        "customer_id": customer_id,
        "currency": "USD",
        "lines": [{"amount": a} for a in amounts],
        "subtotal": str(subtotal),
        "tax": tax,
        "credits_applied": credits,
        "total": str(subtotal + Decimal(tax) - Decimal(credits)),
    }


def rendered(folder, doc: dict, pdf: bytes = b"%PDF rendered") -> None:
    """A draft's PDF as the renderer leaves it: the file, then its receipt."""
    (folder / f"{doc['customer_id']}.pdf").write_bytes(pdf)
    record_render(folder, doc, FINGERPRINT, hashlib.sha256(pdf).hexdigest())


def rated(*amounts: str) -> pl.DataFrame:
    """Rated lines as rating writes them: amounts as text, rounded to the currency."""
    return pl.DataFrame({"amount": list(amounts)}, schema={"amount": pl.String})


def test_a_draft_that_no_longer_exists_loses_its_files_and_an_issued_invoice_keeps_them(tmp_path):
    folder = invoice_folder(tmp_path)
    gone, acme = invoice("gone", "5.00"), invoice("acme", "10.00")
    for doc in (gone, acme):
        (folder / f"{doc['customer_id']}.json").write_text(document_json(doc))
        rendered(folder, doc)
    (folder / "issued.json").write_text("final")
    (folder / "issued.pdf").write_bytes(b"%PDF final")

    prepare_draft_files(folder, [acme], issued={"issued"}, fingerprint=FINGERPRINT)

    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [
        "acme.json",
        "acme.pdf",
        "issued.json",
        "issued.pdf",
    ]
    assert [p.stem for p in (folder / RECEIPTS).iterdir()] == ["acme"]
    assert (folder / "issued.pdf").read_bytes() == b"%PDF final"


def test_late_usage_on_an_issued_invoice_never_rewrites_its_files(tmp_path):
    folder = invoice_folder(tmp_path)
    (folder / "acme.json").write_text("issued copy")
    files = prepare_draft_files(
        folder, [invoice("acme", "12.00"), invoice("globex", "3.00")], {"acme"}, FINGERPRINT
    )
    assert (folder / "acme.json").read_text() == "issued copy"
    assert (folder / "globex.json").read_text() == document_json(invoice("globex", "3.00"))
    assert [draft.customer_id for draft in files.to_render] == ["globex"]


def test_only_drafts_whose_pdf_could_differ_are_rendered_again(tmp_path):
    folder = invoice_folder(tmp_path)
    same, changed, replaced = invoice("a", "1.00"), invoice("b", "2.00"), invoice("c", "3.00")
    for doc in (same, changed, replaced):
        rendered(folder, doc)
    (folder / "c.pdf").write_bytes(b"%PDF edited by hand")
    late = invoice("b", "2.00", "0.50")  # late usage for b
    new = invoice("d", "4.00")  # a customer billed for the first time

    files = prepare_draft_files(folder, [same, late, replaced, new], set(), FINGERPRINT)

    assert [draft.customer_id for draft in files.to_render] == ["b", "c", "d"]
    assert files.up_to_date == 1
    again = prepare_draft_files(folder, [same, late, replaced, new], set(), "renderer v2")
    assert len(again.to_render) == 4 and again.up_to_date == 0  # a new renderer: all again


def test_the_summary_names_each_invoice_its_files_and_its_pdf_checksum(tmp_path):
    folder = invoice_folder(tmp_path)
    acme, globex = invoice("acme", "10.00", tax="2.00"), invoice("globex", "3.00")
    rendered(folder, acme, b"%PDF acme")
    summary = draft_summary(folder, document_totals([acme, globex]))
    assert summary.select("customer_id", "subtotal", "tax", "total", "lines").rows() == [
        ("acme", "10.00", "2.00", "12.00", 1),
        ("globex", "3.00", "0.00", "3.00", 1),
    ]
    assert summary["pdf_sha256"].to_list() == [hashlib.sha256(b"%PDF acme").hexdigest(), None]
    assert summary["json"][1] == str(folder / "globex.json")


def test_invoices_that_add_up_to_the_rated_lines_pass():
    docs = [invoice("acme", "10.00", "0.25", tax="2.05", credits="1.00"), invoice("globex", "3.00")]
    outcome = invoice_totals_check(docs, rated("10.00", "0.25", "3.00"))
    assert outcome.passed and outcome.severity == "error"
    assert outcome.metadata == {"problems": "none", "subtotals": "13.25", "rated_lines": "13.25"}


def test_an_invoice_whose_lines_or_total_do_not_add_up_fails_naming_the_customer():
    wrong_subtotal = {**invoice("acme", "10.00"), "subtotal": "9.00", "total": "9.00"}
    wrong_total = {**invoice("globex", "3.00", tax="0.30"), "total": "3.00"}
    outcome = invoice_totals_check([wrong_subtotal, wrong_total], rated("9.00", "3.00"))
    assert not outcome.passed
    assert outcome.metadata["problems"].splitlines() == [
        "acme: lines 10.00 != subtotal 9.00",
        "globex: subtotal + tax - credits != total 3.00",
    ]


def test_invoices_that_lose_a_rated_line_fail():
    outcome = invoice_totals_check([invoice("acme", "10.00")], rated("10.00", "0.01"))
    assert not outcome.passed
    assert outcome.metadata["problems"] == "sum of subtotals 10.00 != rated lines 10.01"


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)  # past 64 bits too: json.dumps writes them
    | st.text(),  # any character: controls, U+2028, astral, quotes and backslashes
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(0, 9), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_the_json_copy_is_json_dumps_indent_2_byte_for_byte(value):
    """The JSON copy's bytes are the render key of its PDF and what a customer's tools read: they
    are exactly Python's ``json.dumps(indent=2, ensure_ascii=False)`` for any document (documents
    carry no float: amounts are decimal text), whichever encoder wrote them."""
    document = {"customer_id": "acme", "value": value}
    assert document_json(document) == json.dumps(document, indent=2, ensure_ascii=False) + "\n"
