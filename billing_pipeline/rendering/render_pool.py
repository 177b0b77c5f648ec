"""Invoice PDFs for many documents, over a pool of worker processes.

WeasyPrint is pure Python under the GIL, so threads do not help: a month-end's PDFs scale with
processes. Each worker builds its ``InvoiceRenderer`` once (initializer) and renders chunks of
documents, writing each PDF atomically itself, so only the documents (or, for month-end drafts,
the names of their JSON copies) and the sha256 digests cross process boundaries, never PDF
bytes. A PDF does not depend on which worker rendered it (same template, stylesheet and fonts
everywhere: reproducible bytes).

Workers are started with ``spawn``: forking a process that already runs threads (Dagster's
step process, a Celery worker) can copy a held lock into the child.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from billing_pipeline import progress
from billing_pipeline.paths import inside
from billing_pipeline.rendering.invoice_files import DraftCopy, copy_text
from billing_pipeline.rendering.pdf import InvoiceRenderer
from billing_pipeline.rendering.receipts import record_render

MAX_CHUNK = 16  # documents per task: large enough to amortize IPC, small enough to balance the tail

_renderer: InvoiceRenderer | None = None  # the worker's own, built once by _init_worker


def _init_worker() -> None:
    global _renderer
    _renderer = InvoiceRenderer()


def _render_chunk(
    items: list[dict] | list[DraftCopy],
    folder: str,
    record: bool = False,
    renderer: InvoiceRenderer | None = None,
) -> list[tuple[str, str]]:
    """Render documents, or drafts read from their JSON copies in ``folder`` (DraftCopy)."""
    renderer = renderer or _renderer
    assert renderer is not None, "worker not initialized"
    out = []
    for item in items:
        text = copy_text(folder, item) if isinstance(item, DraftCopy) else None
        doc = json.loads(text) if text is not None else item
        try:
            sha = renderer.write_pdf(doc, inside(folder, f"{doc['customer_id']}.pdf"))
        except Exception as exc:
            raise RuntimeError(
                f"invoice PDF for customer {doc.get('customer_id')!r} failed: {exc}"
            ) from exc
        if record:
            record_render(folder, doc, renderer.fingerprint, sha, text)
        out.append((doc["customer_id"], sha))
    return out


def _chunks(items: Sequence, size: int) -> list[list]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def default_workers() -> int:
    """The CPUs this process may use (cgroup/affinity aware where the OS says so)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def render_many(
    docs: Sequence[dict],
    folder: str | os.PathLike,
    workers: int | None = None,
    renderer: InvoiceRenderer | None = None,
    record_renders: bool = False,
) -> list[tuple[str, str]]:
    """Write ``<folder>/<customer_id>.pdf`` for every document; returns (customer_id, sha256) in
    document order. ``workers`` None = one per CPU; 1 (or too few documents to share) renders in
    this process, with ``renderer`` if given. A failure names the customer and stops the batch
    (PDFs already written stay: each is complete, written atomically). ``record_renders``: leave a
    receipt per PDF, so an unchanged draft is not rendered again (receipts.py)."""
    return _render_all(docs, folder, workers, renderer, record_renders)


def render_drafts(
    copies: Sequence[DraftCopy],
    folder: str | os.PathLike,
    workers: int | None = None,
    renderer: InvoiceRenderer | None = None,
) -> list[tuple[str, str]]:
    """``render_many`` for month-end drafts named by their JSON copies in ``folder``: each worker
    reads its drafts' copies itself (only names and checksums cross processes, never documents:
    a month's are ~135 MB pickled), refuses a copy changed since it was written
    (invoice_files.copy_text), and leaves a receipt keyed by the very text it rendered."""
    return _render_all(copies, folder, workers, renderer, True)


def _render_all(
    items: Sequence[dict] | Sequence[DraftCopy],
    folder: str | os.PathLike,
    workers: int | None,
    renderer: InvoiceRenderer | None,
    record_renders: bool,
) -> list[tuple[str, str]]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    workers = default_workers() if workers is None else max(1, int(workers))
    size = max(1, min(MAX_CHUNK, -(-len(items) // (workers * 4))))  # >= 4 chunks per worker
    chunks = _chunks(items, size)
    if workers == 1 or len(chunks) < 2:
        renderer = renderer or InvoiceRenderer()
        out = []
        for item in items:
            out += _render_chunk([item], str(folder), record_renders, renderer)
            progress.advance(progress.INVOICE_PDFS, 1, out[-1][0])
        return out
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(chunks)),
        initializer=_init_worker,
        mp_context=multiprocessing.get_context("spawn"),
    )
    try:
        futures = {
            pool.submit(_render_chunk, chunk, str(folder), record_renders): index
            for index, chunk in enumerate(chunks)
        }
        done: list[list[tuple[str, str]]] = [[] for _ in chunks]
        for future in as_completed(futures):  # counted as they finish, returned in order
            pairs = done[futures[future]] = future.result()
            progress.advance(progress.INVOICE_PDFS, len(pairs), pairs[-1][0])
        return [pair for chunk in done for pair in chunk]
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # a failed batch does not render on
        raise
    finally:
        pool.shutdown(wait=True)
