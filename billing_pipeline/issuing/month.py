"""Issuing a month: number the drafts (``numbering.issue_drafts``), then render the final PDFs.

Two steps on purpose. The ledger transaction is the legal act; rendering comes after and is
repeatable: a crash between them leaves numbered invoices without PDFs, and the next run renders
only what is missing (no new numbers). Each invoice renders on its own: one customer's document
the renderer cannot handle leaves that customer without a PDF (recorded, reported by name), not
the whole month. A PDF is rendered from the stored document, so re-rendering gives the same bytes;
its sha256 is stored once, and a later render that differs is an error that says why: the
document's sha256 kept at issue tells a tampered document from a changed renderer.
Files: ``<out>/<month>/invoices/<customer>.pdf|.json`` for invoices, and
``<customer>.<number>.pdf|.json`` for credit notes and adjustments.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

from billing_pipeline import progress
from billing_pipeline.documents.invoice import document_json
from billing_pipeline.documents.kinds import KIND_INVOICE
from billing_pipeline.ledger.ledger import Ledger, load_document
from billing_pipeline.ledger.numbering import issue_drafts
from billing_pipeline.paths import inside
from billing_pipeline.rendering.pdf import InvoiceRenderer, write_atomically


class PdfMismatch(RuntimeError):
    """A re-render of an issued invoice differs from what was issued; the subclass says why."""

    kind = "pdf_mismatch"


class DocumentTampered(PdfMismatch):
    """The issued document itself changed since issue: its sha256 is not the one kept at issue
    (or, issued before hashes were kept, it differs from the JSON copy written at first render)."""

    kind = "tampered"


class RendererChanged(PdfMismatch):
    """The document is intact but the PDF re-renders differently: template, fonts or renderer."""

    kind = "renderer_changed"


class PdfsNotRendered(RuntimeError):
    """Issued invoices left without their final PDF. Each was tried on its own (one customer's
    bad document holds that customer, not the month); ``result`` is what ``issue_month`` would
    have returned, ``failed`` names each invoice (customer_id, number, kind, error)."""

    def __init__(self, period: str, result: dict):
        self.result, self.failed = result, result["failed"]
        super().__init__(
            f"{period}: {len(self.failed)} issued invoice(s) without a final PDF: "
            + "; ".join(f"{f['customer_id']} ({f['number']}): {f['error']}" for f in self.failed)
        )


def file_stem(doc: dict) -> str:
    """The document's file name without suffix, from ids the catalog validated (customer id,
    number made of the invoice prefix); written only through ``paths.inside``."""
    if doc.get("kind", KIND_INVOICE) == KIND_INVOICE:
        return doc["customer_id"]
    return f"{doc['customer_id']}.{doc['number']}"


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _write_text(path: Path, content: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, path)


def check_document(row, refused: str = "rendered") -> None:
    """Refuse to render (or re-render, or send: ``refused`` names what is not done) an issued
    document that is not the one issued: its hash kept at issue (revision 0006) is the witness."""
    actual = _text_sha256(row.document)
    if row.document_sha256 is not None and actual != row.document_sha256:
        raise DocumentTampered(
            f"{row.number} ({row.customer_id}): the issued document was tampered with: its sha256 in the "
            f"ledger is {actual}, at issue it was {row.document_sha256}; not {refused}"
        )


def _mismatch(row, doc: dict, json_path: Path, sha: str) -> PdfMismatch:
    """Why a re-render differs from the issued PDF. ``check_document`` passed, so with a hash
    kept at issue the document is intact: the renderer changed. Without one (issued before
    revision 0006) the JSON copy written at the first render is the only other witness."""
    if (
        row.document_sha256 is None
        and json_path.is_file()
        and json_path.read_text(encoding="utf-8") != document_json(doc)
    ):
        return DocumentTampered(
            f"{row.number} ({row.customer_id}): the ledger's document differs from its JSON copy {json_path} "
            "written when the PDF was first rendered: one of them was tampered with (issued before "
            "document hashes were kept, so the ledger cannot tell which); not rendered"
        )
    intact = (
        "the document is intact (its sha256 is the one kept at issue)"
        if row.document_sha256
        else "the document matches its JSON copy"
    )
    return RendererChanged(
        f"{row.number} ({row.customer_id}): {intact} but the re-rendered PDF (sha256 {sha}) differs from the "
        f"issued one ({row.pdf_sha256}): the renderer, template or fonts changed since it was issued; "
        "render it with the version it was issued with"
    )


def _render_one(ledger: Ledger, row, folder: Path, renderer) -> str:
    """One issued invoice's PDF + JSON: 'unchanged' or 'rendered'; raises on any failure."""
    doc = load_document(row.document)
    stem = file_stem(doc)
    pdf, json_path = inside(folder, f"{stem}.pdf"), inside(folder, f"{stem}.json")
    check_document(row)
    if (
        json_path.is_file()
        and json_path.read_text(encoding="utf-8") == document_json(doc)
        and row.pdf_sha256 is not None
        and _sha256(pdf) == row.pdf_sha256
    ):
        return "unchanged"
    data = renderer().render_pdf(doc)
    sha = hashlib.sha256(data).hexdigest()
    if row.pdf_sha256 is not None and sha != row.pdf_sha256:
        raise _mismatch(row, doc, json_path, sha)
    write_atomically(data, pdf)
    _write_text(json_path, document_json(doc))
    if row.pdf_sha256 is None:
        ledger.store_pdf_sha256(row.id, sha)
    return "rendered"


def _error_text(exc: Exception) -> str:
    if isinstance(exc, PdfMismatch):
        return str(exc).split(": ", 1)[-1]  # the message starts with the number and customer
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def render_issued(
    ledger: Ledger,
    period: str,
    out_dir: Path,
    customer_id: str | None = None,
    renderer: InvoiceRenderer | None = None,
) -> dict:
    """Write the PDF + JSON of every issued invoice of the period whose PDF is missing or not the
    stored one; store the sha256 of first renders. Each invoice on its own: a failure (renderer
    error, tampered document, changed renderer) is recorded in the audit log and listed in
    ``failed``, and the others still render. Returns counts rendered, unchanged, and failed."""
    folder = inside(out_dir, period, "invoices")
    folder.mkdir(parents=True, exist_ok=True)
    built: list = [renderer]

    def get_renderer():  # built once, on the first PDF that needs it
        if built[0] is None:
            built[0] = InvoiceRenderer()
        return built[0]

    counts: dict = {"rendered": 0, "unchanged": 0, "failed": []}
    rows = ledger.issued_for_rendering(period, customer_id)
    for row in progress.counted(progress.INVOICE_PDFS, rows, lambda r: r.customer_id):
        try:
            counts[_render_one(ledger, row, folder, get_renderer)] += 1
        except Exception as exc:  # noqa: BLE001 - one invoice's failure must not stop the others
            failure = {
                "customer_id": row.customer_id,
                "number": row.number,
                "kind": getattr(exc, "kind", "render_failed"),
                "error": _error_text(exc),
            }
            ledger.record_render_failure(row.id, failure)
            counts["failed"].append(failure)
    return counts


def issued_file_stems(ledger: Ledger, period: str) -> set[str]:
    """Stems of issued documents' files: month-end must not overwrite or delete them (a void
    invoice's files make room for its successor's draft; the ledger keeps its document)."""
    return {file_stem(doc) for _, _, doc in ledger.documents(period, ("issued",))}


def issue_month(
    ledger: Ledger,
    period: str,
    out_dir: Path,
    *,
    prefix: str,
    payment_terms_days: int,
    issue_date: dt.date | None = None,
    customer_id: str | None = None,
    renderer: InvoiceRenderer | None = None,
    actor: str = "issuing",
) -> dict:
    """Issue the period's drafts (all, or one customer's) and render every missing final PDF.
    ``held``: the money-at-risk records that kept some customers' drafts from being issued.
    Raises ``PdfsNotRendered`` (with the whole result) after rendering all it could when some
    issued invoices are left without a PDF: the numbers stand, a later run renders the rest."""
    issued = issue_drafts(
        ledger,
        period,
        prefix=prefix,
        payment_terms_days=payment_terms_days,
        issue_date=issue_date or dt.datetime.now(dt.UTC).date(),
        customer_id=customer_id,
        actor=actor,
    )
    rendered = render_issued(ledger, period, out_dir, customer_id, renderer)
    result = {"issued": issued, "held": issued.held, **rendered}
    if result["failed"]:
        raise PdfsNotRendered(period, result)
    return result
