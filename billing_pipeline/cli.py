"""The billing-pipeline command (``billing-pipeline --help`` lists every subcommand).

Exit 0 on success, 2 on bad input, 1 on failed checks or money at risk (records that could carry
money were not billed: named, held until fixed or waived)."""

from __future__ import annotations

import datetime as dt
import sys
import warnings
from pathlib import Path

import click
import dagster as dg

# Dagster flags single-run backfill policies as beta at import time; users of the CLI can't act on it.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from billing_pipeline.alerts.caps_server import CAPS_PATH, caps_server
from billing_pipeline.backfills import BackfillError, submit_backfill
from billing_pipeline.catalog import CatalogError, load_catalog
from billing_pipeline.catalog.litellm import (
    LiteLLMError,
    price_book_from_litellm,
    read_price_book,
    update_price_book,
    write_price_book,
)
from billing_pipeline.delivery import mail as delivery
from billing_pipeline.delivery import smtp
from billing_pipeline.demo.generator import landing_is_empty, write_demo
from billing_pipeline.documents.invoice import document_json
from billing_pipeline.issuing.commands import COMMANDS as INVOICING_COMMANDS
from billing_pipeline.issuing.commands import DATABASE_URL, QUIET, fail, open_ledger
from billing_pipeline.periods import parse_month
from billing_pipeline.progress import shown as shown_progress
from billing_pipeline.quote.calculator import CalculatorError, write_calculator
from billing_pipeline.quote.quote import QuoteError, parse_usage, quote_text
from billing_pipeline.quote.quote import quote as make_quote
from billing_pipeline.rendering.statement_pdf import statements_from_landing
from billing_pipeline.runner import (
    InputError,
    MonthEndFailed,
    run_backfill,
    run_month_end,
    validate_inputs,
)
from billing_pipeline.sources import litellm_proxy_db


def _run(
    month: str,
    landing: Path,
    catalog: Path,
    out: Path,
    database_url: str | None,
    dagster_home: Path | None = None,
    quiet: bool = False,
) -> None:
    try:
        with shown_progress(quiet):
            summary = run_month_end(
                month, landing, catalog, out, database_url=database_url, dagster_home=dagster_home
            )
    except InputError as exc:
        for line in str(exc).splitlines():  # a catalog reports every problem, one line each
            click.echo(f"error: {line}", err=True)
        sys.exit(2)
    except (MonthEndFailed, OSError) as exc:  # e.g. a full disk or a folder that cannot be written
        click.echo(
            f"error: {exc}; nothing was issued, re-run when fixed (issued invoices are never touched)",
            err=True,
        )
        sys.exit(1)
    click.echo(summary.table())
    failed = False
    if summary.failed_checks:
        click.echo(f"error: checks failed: {', '.join(summary.failed_checks)}", err=True)
        failed = True
    if summary.held:
        click.echo(f"error: {summary.money_at_risk_message}", err=True)
        failed = True
    if failed:
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Month-end billing for LLM and GPU usage: usage in, explained invoices out."""


@main.command()
@click.option("--month", required=True, help="Billing month, YYYY-MM.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Output folder: <out>/<month>/invoices, reconciliation.csv, quarantine.csv.",
)
@click.option(
    "--landing",
    type=click.Path(path_type=Path),
    default=None,
    help="Landing zone to use (default <out>/landing); sample data is written there if it is empty.",
)
@DATABASE_URL
@QUIET
def demo(
    month: str, out: Path, landing: Path | None, database_url: str | None, quiet: bool
) -> None:
    """Write a realistic sample month (if the landing zone is empty) and run month-end on it."""
    landing = landing or out / "landing"
    catalog = out / "catalog.yaml"
    if landing_is_empty(landing):
        write_demo(landing, catalog, month=month)
        click.echo(f"wrote sample landing zone {landing} and catalog {catalog}")
    elif not catalog.exists():
        click.echo(
            f"error: {catalog}: no catalog beside an existing landing zone; remove {landing} "
            "to regenerate the sample",
            err=True,
        )
        sys.exit(2)
    _run(month, landing, catalog, out, database_url, quiet=quiet)


@main.command()
@click.option("--month", required=True, help="Billing month, YYYY-MM.")
@click.option(
    "--landing", required=True, type=click.Path(path_type=Path), help="Landing zone folder."
)
@click.option(
    "--catalog", required=True, type=click.Path(path_type=Path), help="Catalog YAML file."
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@DATABASE_URL
@click.option(
    "--dagster-home",
    type=click.Path(path_type=Path),
    default=None,
    help="Use the Dagster instance configured there (dagster.yaml, e.g. PostgreSQL) instead of "
    "the embedded SQLite one under <out>/.dagster.",
)
@QUIET
def run(
    month: str,
    landing: Path,
    catalog: Path,
    out: Path,
    database_url: str | None,
    dagster_home: Path | None,
    quiet: bool,
) -> None:
    """Run month-end for MONTH on the given landing zone and catalog."""
    _run(month, landing, catalog, out, database_url, dagster_home, quiet)


@main.command()
@click.option(
    "--from",
    "first",
    required=True,
    type=click.DateTime(["%Y-%m-%d"]),
    help="First day, YYYY-MM-DD.",
)
@click.option(
    "--to", "last", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day (inclusive)."
)
@click.option(
    "--webserver",
    default=None,
    help="Submit to a running deployment (e.g. http://127.0.0.1:3000): a Dagster asset backfill "
    "the daemon executes and the UI shows. Without it, the backfill runs here, in-process.",
)
@click.option(
    "--landing",
    type=click.Path(path_type=Path),
    default=None,
    help="Landing zone (in-process mode).",
)
@click.option(
    "--catalog",
    type=click.Path(path_type=Path),
    default=None,
    help="Catalog YAML (in-process mode).",
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Output folder (in-process mode)."
)
@click.option("--database-url", envvar="BILLING_DATABASE_URL", default=None, help="Ledger URL.")
@click.option(
    "--dagster-home",
    type=click.Path(path_type=Path),
    default=None,
    help="Dagster instance folder (default: the embedded one under <out>/.dagster).",
)
@QUIET
def backfill(
    first, last, webserver, landing, catalog, out, database_url, dagster_home, quiet
) -> None:
    """Re-ingest days FROM..TO (one run) and re-rate the months they touch. Safe to repeat."""
    first, last = first.date(), last.date()
    if webserver:
        try:
            backfill_id = submit_backfill(webserver, first, last)
        except BackfillError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        click.echo(
            f"submitted backfill {backfill_id}: {webserver.rstrip('/')}/runs/b/{backfill_id}"
        )
        return
    missing = [
        name
        for name, value in (("--landing", landing), ("--catalog", catalog), ("--out", out))
        if value is None
    ]
    if missing:
        click.echo(
            f"error: in-process backfill needs {', '.join(missing)} (or --webserver)", err=True
        )
        sys.exit(2)
    try:
        with shown_progress(quiet):
            summary = run_backfill(
                first,
                last,
                landing,
                catalog,
                out,
                database_url=database_url,
                dagster_home=dagster_home,
            )
    except InputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(summary.table())
    if summary.failed_checks:
        sys.exit(1)


@main.command()
@click.option(
    "--catalog", required=True, type=click.Path(path_type=Path), help="Catalog YAML file."
)
@click.option("--plan", required=True, help="Plan id in the catalog.")
@click.option(
    "--usage",
    "usage",
    multiple=True,
    help="METER[:MODEL][{KEY=VALUE,...}]=QUANTITY in base units; repeatable.",
)
@click.option(
    "--month", default=None, help="Month to price in, YYYY-MM (default: the current UTC month)."
)
@click.option(
    "--tax-rate", default="0", show_default=True, help="Tax rate as a decimal string, e.g. 0.19."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the invoice JSON structure instead of text."
)
def quote(
    catalog: Path,
    plan: str,
    usage: tuple[str, ...],
    month: str | None,
    tax_rate: str,
    as_json: bool,
) -> None:
    """What PLAN would charge for hypothetical usage: the same engine as month-end."""
    month = month or dt.datetime.now(dt.UTC).strftime("%Y-%m")
    try:
        document = make_quote(
            load_catalog(catalog), plan, [parse_usage(u) for u in usage], month, tax_rate
        )
    except (CatalogError, QuoteError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(document_json(document) if as_json else quote_text(document), nl=not as_json)


@main.command()
@click.option(
    "--catalog", required=True, type=click.Path(path_type=Path), help="Catalog YAML file."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for <plan_id>.html per plan and index.html.",
)
@click.option(
    "--month",
    default=None,
    help="Price at the prices in effect on this month's first day, YYYY-MM (default: the current UTC month).",
)
@click.option(
    "--plan", "plans", multiple=True, help="Only this plan id; repeatable (default: every plan)."
)
def calculator(catalog: Path, out: Path, month: str | None, plans: tuple[str, ...]) -> None:
    """Static cost calculator pages, one per plan: the same totals as `quote`, in the browser."""
    month = month or dt.datetime.now(dt.UTC).strftime("%Y-%m")
    try:
        written = write_calculator(load_catalog(catalog), out, month, list(plans) or None)
    except (CatalogError, CalculatorError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for path in written:
        click.echo(f"wrote {path}")


@main.command("import-prices")
@click.option(
    "--litellm",
    "source",
    required=True,
    type=click.Path(path_type=Path),
    help="LiteLLM model_prices_and_context_window.json.",
)
@click.option(
    "--providers", required=True, help="Comma-separated LiteLLM providers, e.g. openai,anthropic."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="YAML file to write (price_book: [...]).",
)
@click.option(
    "--from",
    "effective",
    default=None,
    type=click.DateTime(["%Y-%m-%d"]),
    help="First day the prices apply (default: today, UTC).",
)
@click.option(
    "--previous",
    default=None,
    type=click.Path(path_type=Path),
    help="The price book (or catalog) to keep current: unchanged prices keep their dates, a "
    "changed one ends the day before --from.",
)
def import_prices(
    source: Path, providers: str, out: Path, effective, previous: Path | None
) -> None:
    """Build the provider price book (what we pay) from LiteLLM's price list."""
    day = effective.date() if effective else dt.datetime.now(dt.UTC).date()
    skipped: list[tuple[str, str, str]] = []
    try:
        entries, sha256 = price_book_from_litellm(
            source, [p.strip() for p in providers.split(",") if p.strip()], day, skipped=skipped
        )
        counts = None
        if previous is not None:
            entries, counts = update_price_book(read_price_book(previous), entries, day)
    except LiteLLMError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    write_price_book(entries, sha256, source, out, previous)
    click.echo(f"wrote {len(entries)} price book entries to {out} (source sha256 {sha256})")
    if counts is not None:
        click.echo(
            f"from {previous}: {counts['changed']} price(s) changed on {day}, {counts['added']} "
            f"added, {counts['unchanged']} unchanged, {counts['kept']} kept (not in the list)"
        )
    for (
        model,
        price_field,
        why,
    ) in skipped:  # a price no reader can match is named, not silently dropped
        click.echo(f"skipped {model} {price_field}: {why}")


@main.command("fetch-litellm")
@click.option("--landing", required=True, type=click.Path(path_type=Path), help="Landing zone.")
@click.option(
    "--since",
    default=None,
    type=click.DateTime(["%Y-%m-%d"]),
    help="First UTC day to fetch (default: where the last fetch ended, minus the overlap).",
)
@click.option(
    "--overlap-minutes",
    default=60,
    show_default=True,
    type=click.IntRange(min=0),
    help="Re-read this much before the newest request already fetched (late commits).",
)
def fetch_litellm(landing: Path, since, overlap_minutes: int) -> None:
    """Copy new LiteLLM_SpendLogs rows from the proxy's PostgreSQL (BILLING_LITELLM_DATABASE_URL)
    into the landing zone, one file per UTC day, read-only."""
    try:
        written = litellm_proxy_db.fetch(
            landing,
            litellm_proxy_db.database_url(),
            since=since.date() if since else None,
            overlap=dt.timedelta(minutes=overlap_minutes),
        )
    except litellm_proxy_db.FetchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"{len(written)} day file(s) changed")


for _command in INVOICING_COMMANDS:  # issue, void, credit-note, waive, migrate
    main.add_command(_command)


@main.command()
@click.option("--month", default=None, help="Send the issued invoices of this month, YYYY-MM.")
@click.option(
    "--invoice", "number", default=None, help="Send one issued invoice, e.g. INV-2026-000042."
)
@click.option(
    "--resend", is_flag=True, help="With --invoice: send it again (a new, audit-logged delivery)."
)
@click.option(
    "--dry-run",
    "dry_run",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Write the .eml files that would be sent to DIR; send nothing, change nothing.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Output folder (issued PDFs under <out>/<month>/invoices).",
)
@click.option(
    "--catalog",
    type=click.Path(path_type=Path),
    default=None,
    help="Catalog YAML (billing emails, issuer); default <out>/catalog.yaml.",
)
@DATABASE_URL
@QUIET
def send(
    month: str | None,
    number: str | None,
    resend: bool,
    dry_run: Path | None,
    out: Path,
    catalog: Path | None,
    database_url: str | None,
    quiet: bool,
) -> None:
    """Email issued invoices (PDF + JSON copy) to each customer's billing email over SMTP
    (BILLING_SMTP_HOST, _PORT, _SECURITY, _USER, _PASSWORD, _FROM). Each invoice is sent once
    however often this runs; failed attempts are retried with backoff by the next run."""
    if (month is None) == (number is None):
        fail("pass exactly one of --month YYYY-MM or --invoice NUMBER")
    if resend and number is None:
        fail("--resend needs --invoice NUMBER")
    try:
        if month is not None:
            parse_month(month)
        loaded = load_catalog(catalog or out / "catalog.yaml")
        sender = delivery.sender_from_env(loaded.issuer.name, loaded.issuer.email)
        settings = None if dry_run else smtp.smtp_from_env()
    except (ValueError, OSError) as exc:
        fail(str(exc).splitlines()[0])
    ledger = open_ledger(out, database_url)
    recipients = delivery.recipients_from_catalog(loaded)
    try:
        with shown_progress(quiet):
            if dry_run:
                report = delivery.preview(
                    ledger,
                    recipients,
                    out,
                    dry_run,
                    sender=sender,
                    period=month,
                    number=number,
                    resend=resend,
                )
            else:
                with smtp.SmtpTransport(settings) as transport:
                    report = delivery.deliver(
                        ledger,
                        recipients,
                        out,
                        transport,
                        sender=sender,
                        period=month,
                        number=number,
                        resend=resend,
                        actor="cli",
                    )
    except delivery.DeliveryError as exc:
        fail(str(exc))
    for path in report.written:
        click.echo(f"wrote {path}")
    for item in report.sent:
        click.echo(
            f"sent {item['number']} ({item['purpose']}) to {item['recipient']}: {item['response']}"
        )
    for item in report.retrying:
        click.echo(
            f"retry {item['number']} after {item['next_attempt_at']:%Y-%m-%d %H:%M:%S} UTC "
            f"(attempt {item['attempts']} failed: {item['error']})",
            err=True,
        )
    for item in report.failed:
        click.echo(
            f"failed {item['number']} after {item['attempts']} attempt(s): {item['error']}; "
            f"send it again with --invoice {item['number']} --resend",
            err=True,
        )
    for item in report.no_recipient:
        click.echo(
            f"not sent {item['number']}: customer {item['customer_id']} has no billing email",
            err=True,
        )
    if number is not None and not dry_run:
        for row in delivery.deliveries(ledger, number=number):
            click.echo(
                f"{number} {row['purpose']}: {row['status']}, {row['attempts']} attempt(s)"
                + (
                    f", sent {row['sent_at']:%Y-%m-%d %H:%M} UTC to {row['recipient']}"
                    if row["sent_at"]
                    else ""
                )
            )
    counts = {"eml files": len(report.written)} if dry_run else {}
    counts.update(report.counts())
    click.echo(", ".join(f"{key.replace('_', ' ')} {value}" for key, value in counts.items()))
    if report.retrying or report.failed:
        sys.exit(1)


@main.command()
@click.option(
    "--date",
    "day",
    required=True,
    type=click.DateTime(["%Y-%m-%d"]),
    help="Statement day, YYYY-MM-DD: usage of its month up to and including it.",
)
@click.option(
    "--landing", required=True, type=click.Path(path_type=Path), help="Landing zone folder."
)
@click.option(
    "--catalog", required=True, type=click.Path(path_type=Path), help="Catalog YAML file."
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option(
    "--database-url",
    envvar="BILLING_DATABASE_URL",
    default=None,
    help="Ledger with earlier months' invoices, for prepaid credits already drawn "
    "(default: <out>/ledger.db when it exists).",
)
def statement(day, landing: Path, catalog: Path, out: Path, database_url: str | None) -> None:
    """Month-to-date statements as of DATE, one per customer: JSON, HTML and PDF under
    <out>/<YYYY-MM>/statements/<DATE>/ (the totals are the draft invoice of the days so far)."""
    day = day.date()
    try:
        validate_inputs(day.strftime("%Y-%m"), landing, catalog)
    except InputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    table = statements_from_landing(landing, catalog, out, day, database_url)
    for row in table.iter_rows(named=True):
        if row["held"]:  # money at risk: the statement says so and states no amount
            click.echo(f"{row['customer_id']}: held ({row['held']}): no amounts until resolved")
            continue
        click.echo(
            f"{row['customer_id']}: {row['total']} {row['currency']} so far, projected "
            f"{row['projected_total'] or '-'}, limit used {row['limit_used_pct'] or '-'} %"
        )
    click.echo(
        f"wrote {table.height} statement(s) to {out / day.strftime('%Y-%m') / 'statements' / day.isoformat()}"
    )


@main.command("serve-caps")
@click.option(
    "--out",
    default="out",
    envvar="BILLING_OUT_DIR",
    type=click.Path(path_type=Path),
    help="Output folder holding hard_caps.json (default: ./out, or BILLING_OUT_DIR).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, type=int, help="Port to listen on.")
def serve_caps(out: Path, host: str, port: int) -> None:
    """Serve <out>/hard_caps.json read-only over HTTP for gateways to poll: GET /hard_caps.json
    (ETag / If-None-Match), 503 until the first evaluation wrote it. Stops on Ctrl-C."""
    try:
        server = caps_server(out, host, port)
    except OSError as exc:
        click.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    click.echo(f"serving hard caps at http://{host}:{server.server_port}{CAPS_PATH} from {out}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
