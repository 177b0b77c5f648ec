"""Draft PDFs that are already up to date are not rendered again.

A draft's PDF is a function of its document (the JSON copy) and of the renderer (template,
stylesheet, fonts, formatting code, WeasyPrint). Month-end re-runs (late usage for a few
customers, a re-execution after a failed step, a backfill) would otherwise render every draft of
the month again: ~15 minutes for 10,000 customers (benchmarks/RESULTS.md). After each draft PDF
the renderer records a receipt, ``<invoices>/.rendered/<customer>.json``: the render key (sha256
of the renderer's fingerprint and the document JSON) and the sha256 of the PDF it wrote. A draft
is skipped only when its receipt has the key it would get now and the PDF on disk is still the
one the receipt names; anything else (no receipt, a changed document or renderer, a PDF replaced
or deleted since) renders again. The PDF is written before its receipt, so a crash between the
two costs one render, never a stale PDF. Issued invoices do not use receipts: issuing.py
compares their PDFs with the sha256 stored in the ledger.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from billing_pipeline.atomic import write_text
from billing_pipeline.documents.invoice import document_json
from billing_pipeline.paths import inside

RECEIPTS = ".rendered"


def render_key(document_text: str, fingerprint: str) -> str:
    """``document_text``: the document's JSON copy (``document_json``), as written beside the PDF."""
    return hashlib.sha256(f"{fingerprint}\n{document_text}".encode()).hexdigest()


def _receipt_path(folder: Path, customer_id: str) -> Path:
    return inside(folder, RECEIPTS, f"{customer_id}.json")


def record_render(
    folder: str | os.PathLike,
    doc: dict,
    fingerprint: str,
    pdf_sha256: str,
    document_text: str | None = None,
) -> None:
    """Called after the PDF is written (atomically): what it was rendered from.
    ``document_text``: the JSON copy the document was read from, when it was (not made again)."""
    path = _receipt_path(Path(folder), doc["customer_id"])
    text = document_json(doc) if document_text is None else document_text
    receipt = {"key": render_key(text, fingerprint), "pdf_sha256": pdf_sha256}
    write_text(path, json.dumps(receipt))


def up_to_date(
    folder: str | os.PathLike, documents: Mapping[str, str], fingerprint: str
) -> set[str]:
    """Customers whose draft PDF in ``folder`` was rendered from this very document by this very
    renderer and has not been touched since. ``documents``: customer -> the draft's JSON copy text
    (already made for the JSON file, not made twice)."""
    folder = Path(folder)
    fresh = set()
    for customer_id, document_text in documents.items():
        try:
            receipt = json.loads(_receipt_path(folder, customer_id).read_text(encoding="utf-8"))
            if receipt.get("key") != render_key(document_text, fingerprint):
                continue  # a changed document or renderer: no need to read the PDF
            pdf = inside(folder, f"{customer_id}.pdf").read_bytes()
        except (OSError, ValueError):  # no receipt or PDF, or a receipt that is not JSON
            continue
        if receipt.get("pdf_sha256") == hashlib.sha256(pdf).hexdigest():
            fresh.add(customer_id)
    return fresh


def prune(folder: str | os.PathLike, keep: Iterable[str]) -> None:
    """Drop the receipts of every customer not in ``keep`` (drafts that no longer exist)."""
    keep = set(keep)
    for path in (Path(folder) / RECEIPTS).glob("*.json"):
        if path.stem not in keep:
            path.unlink(missing_ok=True)
