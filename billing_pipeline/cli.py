"""The billing-pipeline command: demo, run. Exit 0 on success, 2 on bad input, 1 on failed checks."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click
import dagster as dg

# Dagster flags single-run backfill policies as beta at import time; users of the CLI can't act on it.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from billing_pipeline.runner import InputError, run_backfill, run_month_end  # noqa: E402


def _run(month: str, landing: Path, catalog: Path, out: Path, database_url: str | None,
         dagster_home: Path | None = None) -> None:
    try:
        summary = run_month_end(month, landing, catalog, out, database_url=database_url, dagster_home=dagster_home)
    except InputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(summary.table())
    if summary.failed_checks:
        click.echo(f"error: checks failed: {', '.join(summary.failed_checks)}", err=True)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Month-end billing for LLM and GPU usage: usage in, explained invoices out."""


@main.command()
@click.option("--month", required=True, help="Billing month, YYYY-MM.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("out"), show_default=True,
              help="Output folder: <out>/<month>/invoices, reconciliation.csv, quarantine.csv.")
@click.option("--landing", type=click.Path(path_type=Path), default=None,
              help="Landing zone to use (default <out>/landing); sample data is written there if it is empty.")
@click.option("--database-url", envvar="BILLING_DATABASE_URL", default=None,
              help="Ledger URL (default: SQLite file <out>/ledger.db).")
def demo(month: str, out: Path, landing: Path | None, database_url: str | None) -> None:
    """Write a realistic sample month (if the landing zone is empty) and run month-end on it."""
    from billing_pipeline.demo.generator import landing_is_empty, write_demo

    landing = landing or out / "landing"
    catalog = out / "catalog.yaml"
    if landing_is_empty(landing):
        write_demo(landing, catalog, month=month)
        click.echo(f"wrote sample landing zone {landing} and catalog {catalog}")
    elif not catalog.exists():
        click.echo(f"error: {catalog}: no catalog beside an existing landing zone; remove {landing} "
                   "to regenerate the sample", err=True)
        sys.exit(2)
    _run(month, landing, catalog, out, database_url)


@main.command()
@click.option("--month", required=True, help="Billing month, YYYY-MM.")
@click.option("--landing", required=True, type=click.Path(path_type=Path), help="Landing zone folder.")
@click.option("--catalog", required=True, type=click.Path(path_type=Path), help="Catalog YAML file.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--database-url", envvar="BILLING_DATABASE_URL", default=None,
              help="Ledger URL (default: SQLite file <out>/ledger.db).")
@click.option("--dagster-home", type=click.Path(path_type=Path), default=None,
              help="Use the Dagster instance configured there (dagster.yaml, e.g. PostgreSQL) instead of "
              "the embedded SQLite one under <out>/.dagster.")
def run(month: str, landing: Path, catalog: Path, out: Path, database_url: str | None,
        dagster_home: Path | None) -> None:
    """Run month-end for MONTH on the given landing zone and catalog."""
    _run(month, landing, catalog, out, database_url, dagster_home)


@main.command()
@click.option("--from", "first", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day, YYYY-MM-DD.")
@click.option("--to", "last", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day (inclusive).")
@click.option("--webserver", default=None,
              help="Submit to a running deployment (e.g. http://127.0.0.1:3000): a Dagster asset backfill "
              "the daemon executes and the UI shows. Without it, the backfill runs here, in-process.")
@click.option("--landing", type=click.Path(path_type=Path), default=None, help="Landing zone (in-process mode).")
@click.option("--catalog", type=click.Path(path_type=Path), default=None, help="Catalog YAML (in-process mode).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder (in-process mode).")
@click.option("--database-url", envvar="BILLING_DATABASE_URL", default=None, help="Ledger URL.")
@click.option("--dagster-home", type=click.Path(path_type=Path), default=None,
              help="Dagster instance folder (default: the embedded one under <out>/.dagster).")
def backfill(first, last, webserver, landing, catalog, out, database_url, dagster_home) -> None:
    """Re-ingest days FROM..TO (one run) and re-rate the months they touch. Safe to repeat."""
    first, last = first.date(), last.date()
    if webserver:
        from billing_pipeline.backfills import BackfillError, submit_backfill

        try:
            backfill_id = submit_backfill(webserver, first, last)
        except BackfillError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        click.echo(f"submitted backfill {backfill_id}: {webserver.rstrip('/')}/runs/b/{backfill_id}")
        return
    missing = [name for name, value in (("--landing", landing), ("--catalog", catalog), ("--out", out)) if value is None]
    if missing:
        click.echo(f"error: in-process backfill needs {', '.join(missing)} (or --webserver)", err=True)
        sys.exit(2)
    try:
        summary = run_backfill(first, last, landing, catalog, out, database_url=database_url, dagster_home=dagster_home)
    except InputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(summary.table())
    if summary.failed_checks:
        sys.exit(1)


@main.command()
@click.option("--catalog", required=True, type=click.Path(path_type=Path), help="Catalog YAML file.")
@click.option("--plan", required=True, help="Plan id in the catalog.")
@click.option("--usage", "usage", multiple=True, help="METER[:MODEL][{KEY=VALUE,...}]=QUANTITY in base units; repeatable.")
@click.option("--month", default=None, help="Month to price in, YYYY-MM (default: the current UTC month).")
@click.option("--tax-rate", default="0", show_default=True, help="Tax rate as a decimal string, e.g. 0.19.")
@click.option("--json", "as_json", is_flag=True, help="Print the invoice JSON structure instead of text.")
def quote(catalog: Path, plan: str, usage: tuple[str, ...], month: str | None, tax_rate: str, as_json: bool) -> None:
    """What PLAN would charge for hypothetical usage: the same engine as month-end."""
    import datetime as dt

    from billing_pipeline.catalog import CatalogError, load_catalog
    from billing_pipeline.invoicing.document import document_json
    from billing_pipeline.rating.quote import QuoteError, parse_usage, quote_text
    from billing_pipeline.rating.quote import quote as make_quote

    month = month or dt.datetime.now(dt.UTC).strftime("%Y-%m")
    try:
        document = make_quote(load_catalog(catalog), plan, [parse_usage(u) for u in usage], month, tax_rate)
    except (CatalogError, QuoteError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(document_json(document) if as_json else quote_text(document), nl=not as_json)


@main.command("import-prices")
@click.option("--litellm", "source", required=True, type=click.Path(path_type=Path),
              help="LiteLLM model_prices_and_context_window.json.")
@click.option("--providers", required=True, help="Comma-separated LiteLLM providers, e.g. openai,anthropic.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="YAML file to write (price_book: [...]).")
@click.option("--from", "effective", default=None, type=click.DateTime(["%Y-%m-%d"]),
              help="First day the prices apply (default: today, UTC).")
def import_prices(source: Path, providers: str, out: Path, effective) -> None:
    """Build the provider price book (what we pay) from LiteLLM's price list."""
    import datetime as dt

    from billing_pipeline.catalog.litellm import LiteLLMError, price_book_from_litellm, write_price_book

    day = effective.date() if effective else dt.datetime.now(dt.UTC).date()
    try:
        entries, sha256 = price_book_from_litellm(source, [p.strip() for p in providers.split(",") if p.strip()], day)
    except LiteLLMError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    write_price_book(entries, sha256, source, out)
    click.echo(f"wrote {len(entries)} price book entries to {out} (source sha256 {sha256})")


from billing_pipeline.invoicing.cli_commands import COMMANDS as _INVOICING_COMMANDS  # noqa: E402

for _command in _INVOICING_COMMANDS:  # issue, void, credit-note
    main.add_command(_command)


if __name__ == "__main__":
    main()
