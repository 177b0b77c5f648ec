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

from billing_pipeline.runner import InputError, run_month_end  # noqa: E402


def _run(month: str, landing: Path, catalog: Path, out: Path, database_url: str | None) -> None:
    try:
        summary = run_month_end(month, landing, catalog, out, database_url=database_url)
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
def run(month: str, landing: Path, catalog: Path, out: Path, database_url: str | None) -> None:
    """Run month-end for MONTH on the given landing zone and catalog."""
    _run(month, landing, catalog, out, database_url)


if __name__ == "__main__":
    main()
