"""``billing-pipeline issue | void | credit-note | waive | migrate``: finance's ledger commands.

Exit codes as elsewhere: 0 done, 2 bad input (unknown number, missing catalog, bad amount),
1 refused: a blocking check of the month failed or was never recorded, or money at risk holds
customers (named, with the records that hold them) until fixed or waived; also 1 when an issued
invoice's PDF could not be rendered (each named with the reason; the others are rendered).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from billing_pipeline import progress
from billing_pipeline.catalog import load_catalog
from billing_pipeline.issuing.month import PdfsNotRendered, file_stem, issue_month
from billing_pipeline.ledger import holds
from billing_pipeline.ledger.ledger import Ledger, LedgerError
from billing_pipeline.ledger.numbering import ChecksFailed
from billing_pipeline.money import exact, fmt_money
from billing_pipeline.periods import parse_month

_OUT = click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Output folder (invoices under <out>/<month>/invoices).",
)
DATABASE_URL = click.option(
    "--database-url",
    envvar="BILLING_DATABASE_URL",
    default=None,
    help="Ledger URL (default: SQLite file <out>/ledger.db).",
)


QUIET = click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="No progress, only the result (progress goes to stderr: bars on a terminal, "
    "else one line per step).",
)


def fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def open_ledger(out: Path, database_url: str | None, *, create: bool = False) -> Ledger:
    if database_url is None and not create and not (out / "ledger.db").is_file():
        fail(f"{out / 'ledger.db'}: no ledger; run month-end first or pass --database-url")
    if database_url is not None:
        try:
            Ledger.check_url(database_url)
        except LedgerError as exc:
            fail(str(exc))
    ledger = Ledger(database_url or f"sqlite:///{out.resolve() / 'ledger.db'}")
    try:
        ledger.migrate()
    except LedgerError as exc:  # a ledger whose schema matches no revision: not touched
        fail(str(exc))
    return ledger


@click.command()
@click.option("--month", required=True, help="Billing month, YYYY-MM.")
@click.option("--customer", default=None, help="Issue only this customer's drafts.")
@click.option(
    "--catalog",
    type=click.Path(path_type=Path),
    default=None,
    help="Catalog YAML (issuer prefix and payment terms); default <out>/catalog.yaml.",
)
@click.option(
    "--issue-date",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Issue date (default: today, UTC).",
)
@_OUT
@DATABASE_URL
@QUIET
def issue(
    month: str,
    customer: str | None,
    catalog: Path | None,
    issue_date,
    out: Path,
    database_url: str | None,
    quiet: bool,
) -> None:
    """Number the month's drafts (gapless per prefix and year), set issue and due dates, render
    the final PDFs. Safe to re-run: issued invoices are untouched, missing PDFs are rendered."""
    try:
        parse_month(month)
        issuer = load_catalog(catalog or out / "catalog.yaml").issuer
    except (ValueError, OSError) as exc:
        fail(str(exc).splitlines()[0])
    ledger = open_ledger(out, database_url)
    try:
        with progress.shown(quiet):
            result = issue_month(
                ledger,
                month,
                out,
                prefix=issuer.invoice_prefix,
                payment_terms_days=issuer.payment_terms_days,
                issue_date=issue_date.date() if issue_date else None,
                customer_id=customer,
                actor="cli",
            )
    except (ChecksFailed, holds.MoneyAtRisk) as exc:
        fail(f"{exc}; nothing issued", 1)
    except PdfsNotRendered as exc:  # the numbers stand; these customers wait for their PDF
        result = exc.result
    folder = out / month / "invoices"
    for item in result["issued"]:
        amount = fmt_money(exact(item["total"]), item["currency"])
        stem = file_stem(item)
        click.echo(
            f"{item['number']}  {item['kind']:<11}  {item['customer_id']:<16}  {amount:>14}  "
            f"{folder / (stem + '.pdf')}"
        )
    not_rendered = f", not rendered {len(result['failed'])}" if result["failed"] else ""
    click.echo(
        f"issued {len(result['issued'])}, PDFs rendered {result['rendered']}, "
        f"unchanged {result['unchanged']}{not_rendered}"
    )
    for failed in result["failed"]:
        click.echo(
            f"error: {failed['customer_id']}: {failed['number']} is issued but its PDF was not "
            f"rendered: {failed['error']}",
            err=True,
        )
    if result["failed"]:
        click.echo(
            f"error: {len(result['failed'])} PDF(s) not rendered (recorded in the audit log); the "
            f"other customers are done. Fix the cause, then re-run `billing-pipeline issue --month "
            f"{month}`: it renders only what is missing",
            err=True,
        )
    if result["held"]:
        fail(f"{holds.describe(month, result['held'])}; their drafts were not issued", 1)
    if result["failed"]:
        sys.exit(1)


@click.command()
@click.option("--month", required=True, help="Billing month, YYYY-MM.")
@click.option(
    "--origin",
    required=True,
    help="The held record's origin, as `run` and quarantine.csv print it.",
)
@click.option(
    "--reason", required=True, help="Why it may be issued anyway (kept in the audit log)."
)
@_OUT
@DATABASE_URL
def waive(month: str, origin: str, reason: str, out: Path, database_url: str | None) -> None:
    """Let a month be issued despite a money-at-risk record (e.g. a file the provider confirmed
    empty): the waiver and its reason are kept in the ledger's audit log and the finance summary."""
    ledger = open_ledger(out, database_url)
    try:
        parse_month(month)
        done = holds.waive(ledger, month, origin, reason)
    except (LedgerError, ValueError) as exc:
        fail(str(exc))
    who = sorted({h.customer_id or "the whole month" for h in done})
    click.echo(f"waived {len(done)} held record(s) of {origin} ({', '.join(who)}): {reason}")
    left = holds.holds(ledger, month)
    click.echo(
        f"{len(left)} held record(s) left in {month}"
        if left
        else f"nothing held in {month} any more"
    )


@click.command()
@click.option("--number", required=True, help="The issued invoice to void, e.g. INV-2026-000042.")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@_OUT
@DATABASE_URL
def void(number: str, reason: str, out: Path, database_url: str | None) -> None:
    """Void an issued invoice: kept as a paper trail, and the next month-end run drafts a successor."""
    try:
        done = open_ledger(out, database_url).void(number, reason)
    except LedgerError as exc:
        fail(str(exc))
    click.echo(
        f"voided {number} ({done['customer_id']}, {done['period']}); re-run month-end to "
        "draft its replacement, then issue it"
    )


@click.command("credit-note")
@click.option("--number", required=True, help="The issued invoice to credit, e.g. INV-2026-000042.")
@click.option("--amount", required=True, help="Credit before tax, a decimal string, e.g. 50.00.")
@click.option("--reason", required=True, help="Printed on the credit note.")
@_OUT
@DATABASE_URL
def credit_note(number: str, amount: str, reason: str, out: Path, database_url: str | None) -> None:
    """Draft a credit note against an issued invoice (tax at the invoice's rate); issue it with
    ``billing-pipeline issue --month <its month>``."""
    try:
        draft = open_ledger(out, database_url).add_credit_note(number, amount, reason)
    except (LedgerError, ValueError, ArithmeticError) as exc:
        fail(str(exc))
    click.echo(
        f"draft credit note for {number}: {draft['customer_id']}, total {draft['total']}; "
        f"issue it with: billing-pipeline issue --month {draft['period']} "
        f"--customer {draft['customer_id']}"
    )


@click.command()
@_OUT
@DATABASE_URL
def migrate(out: Path, database_url: str | None) -> None:
    """Create the ledger's tables or upgrade them to this release. Every command does it when it
    opens the ledger; a deployment runs it once before starting its workers."""
    open_ledger(out, database_url, create=True)
    click.echo("ledger is at the latest revision")


COMMANDS = (issue, void, credit_note, waive, migrate)
