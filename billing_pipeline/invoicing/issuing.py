"""Issuing a month: number the drafts (``numbering.issue_drafts``), then render the final PDFs.

Two steps on purpose. The ledger transaction is the legal act; rendering comes after and is
repeatable: a crash between them leaves numbered invoices without PDFs, and the next run renders
only what is missing (no new numbers). A PDF is rendered from the stored document, so re-rendering
gives the same bytes; its sha256 is stored once, and a later render that differs is an error.
Files: ``<out>/<month>/invoices/<customer>.pdf|.json`` for invoices, and
``<customer>.<number>.pdf|.json`` for credit notes and adjustments.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

from billing_pipeline.invoicing.document import document_json
from billing_pipeline.invoicing.ledger import Ledger
from billing_pipeline.invoicing.numbering import issue_drafts
from billing_pipeline.invoicing.pdf import InvoiceRenderer, write_atomically
from billing_pipeline.invoicing.schema import KIND_INVOICE
from billing_pipeline.paths import inside


class PdfMismatch(RuntimeError):
    """A re-rendered issued PDF differs from the stored sha256 (template or fonts changed)."""


def file_stem(doc: dict) -> str:
    """The document's file name without suffix, from ids the catalog validated (customer id,
    number made of the invoice prefix); written only through ``paths.inside``."""
    if doc.get("kind", KIND_INVOICE) == KIND_INVOICE:
        return doc["customer_id"]
    return f"{doc['customer_id']}.{doc['number']}"


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _write_text(path: Path, content: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, path)


def render_issued(ledger: Ledger, period: str, out_dir: Path, customer_id: str | None = None,
                  renderer: InvoiceRenderer | None = None) -> dict:
    """Write the PDF + JSON of every issued invoice of the period whose PDF is missing or not the
    stored one; store the sha256 of first renders. Returns counts: rendered, unchanged."""
    folder = inside(out_dir, period, "invoices")
    folder.mkdir(parents=True, exist_ok=True)
    counts = {"rendered": 0, "unchanged": 0}
    for invoice_id, stored, doc in ledger.documents(period, ("issued",), customer_id):
        pdf, json_path = inside(folder, f"{file_stem(doc)}.pdf"), inside(folder, f"{file_stem(doc)}.json")
        if json_path.is_file() and json_path.read_text(encoding="utf-8") == document_json(doc) \
                and stored is not None and _sha256(pdf) == stored:
            counts["unchanged"] += 1
            continue
        renderer = renderer or InvoiceRenderer()
        data = renderer.render_pdf(doc)
        sha = hashlib.sha256(data).hexdigest()
        if stored is not None and sha != stored:
            raise PdfMismatch(f"{doc['number']}: re-rendered PDF sha256 {sha} != stored {stored}; "
                              "the template or fonts changed since it was issued")
        write_atomically(data, pdf)
        _write_text(json_path, document_json(doc))
        if stored is None:
            ledger.store_pdf_sha256(invoice_id, sha)
        counts["rendered"] += 1
    return counts


def issued_file_stems(ledger: Ledger, period: str) -> set[str]:
    """Stems of issued documents' files: month-end must not overwrite or delete them (a void
    invoice's files make room for its successor's draft; the ledger keeps its document)."""
    return {file_stem(doc) for _, _, doc in ledger.documents(period, ("issued",))}


def issue_month(ledger: Ledger, period: str, out_dir: Path, *, prefix: str, payment_terms_days: int,
                issue_date: dt.date | None = None, customer_id: str | None = None,
                renderer: InvoiceRenderer | None = None, actor: str = "issuing") -> dict:
    """Issue the period's drafts (all, or one customer's) and render every missing final PDF.
    ``held``: the money-at-risk records that kept some customers' drafts from being issued."""
    issued = issue_drafts(ledger, period, prefix=prefix, payment_terms_days=payment_terms_days,
                          issue_date=issue_date or dt.datetime.now(dt.UTC).date(),
                          customer_id=customer_id, actor=actor)
    rendered = render_issued(ledger, period, out_dir, customer_id, renderer)
    return {"issued": issued, "held": issued.held, **rendered}
