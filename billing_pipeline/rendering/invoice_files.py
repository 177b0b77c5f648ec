"""The files of a month's invoice drafts: ``<out>/<month>/invoices/<customer>.json`` and ``.pdf``.

A month-end re-run replaces drafts, so their files follow: a draft that no longer exists loses
its JSON, PDF and render receipt; every current draft gets its JSON copy written again; and only
the drafts whose PDF is missing or out of date are handed on to be rendered (receipts.py).
Issued invoices are final: their files are never removed or rewritten here (issuing owns them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import polars as pl

from billing_pipeline.atomic import write_many
from billing_pipeline.checks import CheckOutcome
from billing_pipeline.documents.invoice import document_json
from billing_pipeline.money import decimal_sum
from billing_pipeline.paths import inside
from billing_pipeline.rendering.pdf import renderer_fingerprint
from billing_pipeline.rendering.receipts import prune, up_to_date

INVOICES = "invoices"
SUMMARY_SCHEMA = {
    "customer_id": pl.String,
    "currency": pl.String,
    "subtotal": pl.String,
    "tax": pl.String,
    "credits_applied": pl.String,
    "total": pl.String,
    "lines": pl.Int64,
    "json": pl.String,
    "pdf": pl.String,
    "pdf_sha256": pl.String,
}
TOTALS_COLUMNS = ["customer_id", "currency", "subtotal", "tax", "credits_applied", "total", "lines"]


def invoice_folder(month_dir: Path) -> Path:
    """The month's invoice folder, made when missing."""
    folder = Path(month_dir) / INVOICES
    folder.mkdir(exist_ok=True)
    return folder


def remove_stale(folder: Path, current: Collection[str], issued: Collection[str]) -> list[Path]:
    """Delete the JSON and PDF of every draft not in ``current`` (a customer no longer billed this
    month) unless issued, and the render receipts of everyone not in ``current``. Returns what was
    deleted."""
    removed = []
    for stale in [*folder.glob("*.json"), *folder.glob("*.pdf")]:
        if stale.stem not in current and stale.stem not in issued:
            stale.unlink()
            removed.append(stale)
    prune(folder, keep=current)
    return removed


def write_json_copies(folder: Path, drafts: list[dict]) -> dict[str, str]:
    """``<customer>.json`` for each draft; returns customer -> the text written (the render key
    of its PDF is made from that same text). Written as one batch (atomic.write_many: each file
    flushed before it replaces the old one, but the flushes overlap)."""
    texts = {doc["customer_id"]: document_json(doc) for doc in drafts}
    write_many({inside(folder, f"{cid}.json"): text.encode("utf-8") for cid, text in texts.items()})
    return texts


@dataclass(frozen=True)
class DraftCopy:
    """A draft to render, named by its JSON copy: the customer and the sha256 of the copy's bytes
    as written. The render steps read the copy (the PDF's only input) instead of receiving the
    document through Dagster's step storage, and refuse a copy that changed since (copy_text)."""

    customer_id: str
    sha256: str


@dataclass(frozen=True)
class DraftFiles:
    to_render: list[DraftCopy]  # drafts whose PDF is missing or out of date, in the month's order
    up_to_date: int  # drafts whose PDF is kept as it is


def prepare_draft_files(
    folder: Path,
    documents: list[dict],
    issued: Collection[str],
    fingerprint: str | None = None,
) -> DraftFiles:
    """Bring ``folder`` in line with the month's ``documents`` before any PDF is rendered: stale
    files removed, JSON copies written for the drafts that are not issued (late usage on an issued
    invoice is a correction, not a new draft file), and which PDFs still need rendering.
    ``fingerprint``: the renderer's (default: this installation's, ``renderer_fingerprint``)."""
    remove_stale(folder, {doc["customer_id"] for doc in documents}, issued)
    drafts = [doc for doc in documents if doc["customer_id"] not in issued]
    texts = write_json_copies(folder, drafts)
    fresh = up_to_date(folder, texts, fingerprint or renderer_fingerprint())
    return DraftFiles(
        to_render=[
            DraftCopy(cid, hashlib.sha256(texts[cid].encode("utf-8")).hexdigest())
            for cid in texts
            if cid not in fresh
        ],
        up_to_date=len(fresh),
    )


def copy_text(folder: str | Path, copy: DraftCopy) -> str:
    """The JSON copy of ``copy``'s draft, as written by prepare_draft_files; an error naming the
    file when it is gone or its bytes changed since (a later run rewrote it, or a hand did):
    rendering it would put a PDF beside a document it was not made from."""
    path = inside(folder, f"{copy.customer_id}.json")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RuntimeError(f"{path}: the draft's JSON copy cannot be read ({exc})") from exc
    if hashlib.sha256(data).hexdigest() != copy.sha256:
        raise RuntimeError(
            f"{path}: the draft's JSON copy changed after month-end wrote it (sha256 "
            f"{copy.sha256[:12]}...): not rendered; run month-end for the month again"
        )
    return data.decode("utf-8")


def document_totals(documents: list[dict]) -> pl.DataFrame:
    """One row per invoice with its totals and number of lines (SUMMARY_SCHEMA's first columns):
    what the month's summary shows of each document, without carrying the documents along."""
    return pl.DataFrame(
        [
            {
                "customer_id": doc["customer_id"],
                "currency": doc["currency"],
                "subtotal": doc["subtotal"],
                "tax": doc["tax"],
                "credits_applied": doc["credits_applied"],
                "total": doc["total"],
                "lines": len(doc["lines"]),
            }
            for doc in documents
        ],
        schema={k: SUMMARY_SCHEMA[k] for k in TOTALS_COLUMNS},
    )


def draft_summary(folder: Path, totals: pl.DataFrame) -> pl.DataFrame:
    """``document_totals`` with each invoice's files and the sha256 of its PDF (null when none)."""
    files = []
    for customer_id in totals["customer_id"]:
        pdf_path = inside(folder, f"{customer_id}.pdf")
        files.append(
            {
                "json": str(inside(folder, f"{customer_id}.json")),
                "pdf": str(pdf_path),
                "pdf_sha256": hashlib.sha256(pdf_path.read_bytes()).hexdigest()
                if pdf_path.exists()
                else None,
            }
        )
    paths = pl.DataFrame(
        files, schema={k: SUMMARY_SCHEMA[k] for k in ("json", "pdf", "pdf_sha256")}
    )
    return totals.hstack(paths).select(list(SUMMARY_SCHEMA))


def invoice_totals_check(documents: list[dict], rated_charges: pl.DataFrame) -> CheckOutcome:
    """Each invoice's lines sum to its subtotal, subtotal + tax - credits = total, and all
    subtotals sum to the rated lines: no amount is lost or made between rating and the invoice."""
    problems = []
    for doc in documents:
        lines_sum = decimal_sum(line["amount"] for line in doc["lines"])
        if lines_sum != Decimal(doc["subtotal"]):
            problems.append(
                f"{doc['customer_id']}: lines {lines_sum} != subtotal {doc['subtotal']}"
            )
        if Decimal(doc["subtotal"]) + Decimal(doc["tax"]) - Decimal(
            doc["credits_applied"]
        ) != Decimal(doc["total"]):
            problems.append(
                f"{doc['customer_id']}: subtotal + tax - credits != total {doc['total']}"
            )
    subtotals = decimal_sum(doc["subtotal"] for doc in documents)
    rated = decimal_sum(rated_charges["amount"])
    if subtotals != rated:
        problems.append(f"sum of subtotals {subtotals} != rated lines {rated}")
    return CheckOutcome(
        passed=not problems,
        metadata={
            "problems": "\n".join(problems) or "none",
            "subtotals": str(subtotals),
            "rated_lines": str(rated),
        },
    )
