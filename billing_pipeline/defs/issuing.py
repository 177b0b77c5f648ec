"""Issuing as a Dagster job: finance triggers ``issue_invoices_job`` for a reviewed month.

No schedule: issuing is a human decision. The asset only wires resources to
``invoicing.issuing.issue_month``; the ledger (locks, unique indexes, recorded check results)
is what guarantees one set of gapless numbers, however many runs start at once.
"""

import dagster as dg

from billing_pipeline.defs.partitions import monthly_partitions
from billing_pipeline.defs.resources import CatalogResource, LedgerResource, OutputFiles
from billing_pipeline.invoicing.issuing import issue_month

ISSUING_GROUP = "issuing"


def check_rows(results) -> list[dict]:
    """Check evaluations of Dagster run results as ledger ``month_checks`` rows (last one wins)."""
    rows: dict[str, dict] = {}
    for result in results:
        for event in result.get_asset_check_evaluations():
            rows[event.check_name] = {
                "name": event.check_name, "passed": event.passed,
                "blocking": event.severity == dg.AssetCheckSeverity.ERROR,
                "detail": event.asset_key.to_user_string(),
            }
    return list(rows.values())


@dg.asset(partitions_def=monthly_partitions, group_name=ISSUING_GROUP, kinds={"sqlite", "pdf"},
          deps=["invoice_drafts"])
def issued_invoices(context: dg.AssetExecutionContext, catalog: CatalogResource, ledger: LedgerResource,
                    output: OutputFiles) -> dg.MaterializeResult:
    """Number the month's drafts from the issuer's gapless series, set issue and due dates, and
    render the final PDFs (missing ones only). Refuses while a blocking check of the month failed."""
    month = context.partition_key[:7]
    issuer = catalog.load().issuer
    result = issue_month(ledger.open(), month, output.month_dir(month).parent,
                         prefix=issuer.invoice_prefix, payment_terms_days=issuer.payment_terms_days,
                         actor=f"dagster:{context.run_id}")
    numbers = [i["number"] for i in result["issued"]]
    return dg.MaterializeResult(metadata={
        "issued": len(numbers),
        "numbers": ", ".join(numbers) or "none (already issued)",
        "pdfs_rendered": result["rendered"],
        "pdfs_unchanged": result["unchanged"],
    })


issue_invoices_job = dg.define_asset_job(
    "issue_invoices_job",
    selection=dg.AssetSelection.assets(issued_invoices),
    description="Issue a reviewed month: gapless numbers, issue/due dates, final PDFs. Triggered by finance.",
)
