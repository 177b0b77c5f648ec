"""Invoice drafts as three kinds of steps, so PDF rendering scales with the number of workers.

``invoice_drafts`` (graph-backed, in month_end.py) runs ``save_invoice_drafts`` once (ledger
drafts + JSON files), then ``render_invoice_shard`` once per customer shard (one PDF renderer per
shard: it is expensive to build), then ``summarize_invoice_drafts`` (the asset's value and its
blocking check). With the multiprocess or celery executor the shards render in parallel; the
files are the same whichever worker renders them.

A customer's shard is a hash of its id, never its position in the month, so adding a customer
does not move the others and a re-execution renders the same customers in the same step.
"""

import hashlib
import os
from pathlib import Path

import dagster as dg
import polars as pl

from billing_pipeline.defs.check_results import check_result
from billing_pipeline.defs.resources import CatalogResource, LedgerResource, OutputFiles
from billing_pipeline.documents.invoice import build_documents
from billing_pipeline.issuing.month import issued_file_stems
from billing_pipeline.money import decimal_sum
from billing_pipeline.rendering.invoice_files import (
    DraftCopy,
    document_totals,
    draft_summary,
    invoice_folder,
    invoice_totals_check,
    prepare_draft_files,
)
from billing_pipeline.rendering.render_pool import default_workers, render_drafts

INVOICE_TOTALS_CHECK = "invoice_totals_equal_rated_lines"
STEP_IO_MANAGER = "step_io_manager"  # pickles between the steps; on shared disk for celery workers
RENDER_SHARDS = int(os.getenv("BILLING_RENDER_SHARDS", "4"))
# Worker processes per shard step. A run that executes its steps one after another (in-process,
# as the CLI's runner does) tags itself so each shard uses every CPU; under the multiprocess or
# celery executor shards already run side by side, so one process each (BILLING_RENDER_WORKERS).
RENDER_WORKERS_TAG = "billing/render_workers"


def shard_of(customer_id: str, shards: int = RENDER_SHARDS) -> int:
    """The render shard of a customer: stable across runs, processes and Python versions
    (``hash()`` is salted per process, sha256 is not)."""
    return int.from_bytes(hashlib.sha256(customer_id.encode("utf-8")).digest()[:8], "big") % shards


def split_into_shards(
    drafts: list[DraftCopy], shards: int = RENDER_SHARDS
) -> list[list[DraftCopy]]:
    """Every shard, in shard order, with its drafts in their original order (empty ones too, so
    the step keys of a month never depend on who was billed)."""
    out: list[list[DraftCopy]] = [[] for _ in range(shards)]
    for draft in drafts:
        out[shard_of(draft.customer_id, shards)].append(draft)
    return out


def _invoice_folder(output: OutputFiles, month: str) -> Path:
    return invoice_folder(output.month_dir(month))


@dg.op(
    out={
        "drafts": dg.Out(io_manager_key=STEP_IO_MANAGER),
        "shards": dg.DynamicOut(io_manager_key=STEP_IO_MANAGER),
    }
)
def save_invoice_drafts(
    context: dg.OpExecutionContext,
    rated_charges: pl.DataFrame,
    catalog: CatalogResource,
    ledger: LedgerResource,
    output: OutputFiles,
):
    """Draft invoices in the ledger (re-running replaces drafts, never touches issued invoices) and
    their JSON copies; hands the drafts whose PDF is missing or out of date to the shards (a re-run
    renders only what changed: rendering/receipts.py), by the names of their JSON copies.

    What goes on is small: the shards read the copies themselves, and the summary step gets each
    invoice's totals and the totals check, made here from the documents. Handing the documents
    themselves on pickled them twice (10,000 drafts: ~135 MB, ~9 s) and unpickled them again in
    every step after."""
    month = context.partition_key[:7]
    the_ledger = ledger.open()
    # Prepaid credits carry over: grants already drawn by earlier months' invoices are not drawn again.
    documents = build_documents(
        rated_charges, catalog.load(), month, credits_used=the_ledger.credits_used(month)
    )
    saved = the_ledger.save_drafts(month, documents)
    # issued invoices' files are final: prepare_draft_files leaves them as they are
    files = prepare_draft_files(
        _invoice_folder(output, month), documents, issued_file_stems(the_ledger, month)
    )
    yield dg.Output(
        {
            "totals": document_totals(documents),
            "check": invoice_totals_check(documents, rated_charges),
            "saved": saved,
            "pdfs_up_to_date": files.up_to_date,
        },
        output_name="drafts",
        metadata={
            "drafts": len(documents),
            "to_render": len(files.to_render),
            "pdfs_up_to_date": files.up_to_date,
        },
    )
    for index, shard in enumerate(split_into_shards(files.to_render)):
        yield dg.DynamicOutput(shard, output_name="shards", mapping_key=f"shard_{index}")


@dg.op(out=dg.Out(io_manager_key=STEP_IO_MANAGER))
def render_invoice_shard(
    context: dg.OpExecutionContext, shard: list[DraftCopy], output: OutputFiles
) -> list[str]:
    """The PDFs of one shard's customers, from their JSON copies, over ``render_workers``
    processes (one renderer each)."""
    if not shard:
        return []
    folder = _invoice_folder(output, context.partition_key[:7])
    workers = render_workers(context.run.tags)
    render_drafts(shard, folder, workers=workers)
    context.log.info(f"rendered {len(shard)} invoice PDF(s) with {workers} process(es)")
    return [copy.customer_id for copy in shard]


def render_workers(tags: dict[str, str]) -> int:
    """The run's tag ("auto": this machine's CPUs), else BILLING_RENDER_WORKERS, else 1."""
    wanted = tags.get(RENDER_WORKERS_TAG) or os.getenv("BILLING_RENDER_WORKERS") or "1"
    return default_workers() if wanted == "auto" else max(1, int(wanted))


def check_output_name(asset: str) -> str:
    return dg.AssetCheckSpec(INVOICE_TOTALS_CHECK, asset=asset).get_python_identifier()


@dg.op(
    out={
        "result": dg.Out(),
        check_output_name("invoice_drafts"): dg.Out(dagster_type=dg.Nothing, is_required=False),
    }
)
def summarize_invoice_drafts(
    context: dg.OpExecutionContext,
    drafts: dict,
    rendered: list[list[str]],
    output: OutputFiles,
):
    """One row per invoice (with the PDF's sha256), and the check that the invoices add up
    (made from the documents by save_invoice_drafts)."""
    month = context.partition_key[:7]
    folder = _invoice_folder(output, month)
    summary = draft_summary(folder, drafts["totals"])
    yield dg.Output(
        summary,
        output_name="result",
        metadata={
            "invoices": summary.height,
            "total_revenue": str(decimal_sum(summary["subtotal"])),
            "total_billed_incl_tax": str(decimal_sum(summary["total"])),
            "pdfs_rendered": sum(len(r) for r in rendered),
            "pdfs_up_to_date": drafts.get("pdfs_up_to_date", 0),
            "render_shards": len(rendered),
            "ledger": dg.MetadataValue.json(drafts["saved"]),
            "folder": dg.MetadataValue.path(str(folder)),
        },
    )
    yield check_result(INVOICE_TOTALS_CHECK, drafts["check"], asset_key="invoice_drafts")
