"""Operations: PostgreSQL instance storage, backfills, and recovery from a killed run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from billing_pipeline.runner import run_backfill, run_month_end
from billing_pipeline_tests.support.demo import MONTH
from billing_pipeline_tests.support.postgres import PG

ROOT = Path(__file__).resolve().parents[1]


def invoice_json(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / MONTH / "invoices").glob("*.json"))}


def usage_partitions(out: Path, days: list[str]) -> dict[str, pl.DataFrame]:
    return {d: pl.read_parquet(out / ".storage" / "usage_events" / f"{d}.parquet") for d in days}


def test_month_end_on_the_production_dagster_yaml_records_runs_and_partitions_in_postgres(
    demo_month, tmp_path, postgres_database, monkeypatch
):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(
        ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml"
    )  # the file we ship, unchanged
    for key, value in {
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_PORT": PG["port"],
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": postgres_database,
    }.items():
        monkeypatch.setenv(key, value)

    summary = run_month_end(
        MONTH, demo_month.landing, demo_month.catalog, tmp_path / "out", dagster_home=home
    )

    assert summary.failed_checks == []
    assert invoice_json(tmp_path / "out") == invoice_json(demo_month.out)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_runs()
        assert {r.job_name for r in runs} == {"daily_ingestion_job", "month_end_job"}
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        days = instance.get_materialized_partitions(dg.AssetKey("usage_events"))
        assert len([d for d in days if d.startswith(MONTH)]) == 31
        invoices = instance.fetch_materializations(dg.AssetKey("invoice_drafts"), limit=10).records
        assert [r.partition_key for r in invoices] == [f"{MONTH}-01"]
        checks = instance.get_latest_materialization_event(dg.AssetKey("invoice_drafts"))
        assert checks is not None


def test_backfilling_ten_days_twice_gives_identical_usage_and_invoices(demo_month, tmp_path):
    month = demo_month.copy_to(tmp_path)
    days = [f"{MONTH}-{d:02d}" for d in range(5, 15)]
    before = usage_partitions(month.out, days)
    import datetime as dt

    first = run_backfill(
        dt.date(2026, 10, 5), dt.date(2026, 10, 14), month.landing, month.catalog, month.out
    )
    after_first = (usage_partitions(month.out, days), invoice_json(month.out))
    second = run_backfill(
        dt.date(2026, 10, 5), dt.date(2026, 10, 14), month.landing, month.catalog, month.out
    )
    after_second = (usage_partitions(month.out, days), invoice_json(month.out))

    assert first.rerated == second.rerated == [MONTH] and not first.failed_checks
    for day in days:
        assert after_first[0][day].equals(before[day])
        assert after_second[0][day].equals(after_first[0][day])
    assert after_second[1] == after_first[1] == invoice_json(demo_month.out)


def test_a_backfill_does_not_rerate_a_month_whose_days_were_never_ingested(demo_month, tmp_path):
    import datetime as dt

    summary = run_backfill(
        dt.date(2026, 10, 30),
        dt.date(2026, 11, 2),
        demo_month.landing,
        demo_month.catalog,
        tmp_path / "fresh",
    )
    assert summary.rerated == []
    assert set(summary.not_rerated) == {"2026-10", "2026-11"}
    assert "never ingested" in summary.not_rerated["2026-10"]


def _materialized(instance: dg.DagsterInstance, asset: str) -> bool:
    return bool(instance.fetch_materializations(dg.AssetKey(asset), limit=1).records)


def test_a_run_killed_midway_and_reexecuted_from_failure_equals_a_clean_run(
    demo_month, tmp_path, monkeypatch
):
    month = demo_month.copy_to(tmp_path)
    shutil.rmtree(month.out / MONTH)  # outputs of the clean run must be produced again
    shutil.rmtree(month.out / ".dagster")
    home = month.out / ".dagster"
    cli = [
        sys.executable,
        "-m",
        "billing_pipeline.cli",
        "run",
        "--month",
        MONTH,
        "--landing",
        str(month.landing),
        "--catalog",
        str(month.catalog),
        "--out",
        str(month.out),
    ]
    process = subprocess.Popen(
        cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    invoices = month.out / MONTH / "invoices"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if invoices.is_dir() and any(invoices.glob("*.pdf")):  # invoice_drafts is mid-way
                os.killpg(process.pid, signal.SIGKILL)
                break
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
        killed_run = [r for r in instance.get_runs() if r.job_name == "month_end_job"][0]
        assert _materialized(instance, "rated_charges") and not _materialized(
            instance, "invoice_drafts"
        )

    for key, value in {
        "BILLING_LANDING_DIR": month.landing,
        "BILLING_CATALOG": month.catalog,
        "BILLING_OUT_DIR": month.out,
        "BILLING_DATABASE_URL": f"sqlite:///{month.out / 'ledger.db'}",
        "BILLING_STORAGE_DIR": month.out / ".storage",
    }.items():
        monkeypatch.setenv(key, str(value))
    from billing_pipeline.defs import month_end_job_from_env

    with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
        run = instance.get_run_by_id(killed_run.run_id)
        assert run.status == dg.DagsterRunStatus.STARTED  # what a SIGKILL leaves behind
        instance.report_run_failed(run)  # what run monitoring does in production
        options = dg.ReexecutionOptions.from_failure(run.run_id, instance)
        with dg.execute_job(
            dg.reconstructable(month_end_job_from_env),
            instance=instance,
            reexecution_options=options,
            tags=run.tags,
        ) as result:
            assert result.success
            executed = {
                e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"
            }
    assert (
        any(k.startswith("invoice_drafts.") for k in executed) and "rated_charges" not in executed
    )
    assert invoice_json(month.out) == invoice_json(demo_month.out)


def test_runner_runs_keep_no_step_output_in_memory():
    """The CLI's in-process runs read what they need from files and the instance; holding every
    step's output (the month's usage frames) until the run ends cost ~16 GB at 10 M events."""
    import dagster as dg

    from billing_pipeline.runner import outputs_not_kept_in_memory

    @dg.asset
    def month_of_usage():
        return list(range(1000))

    with outputs_not_kept_in_memory():
        kept_nothing = dg.materialize([month_of_usage])
    assert kept_nothing.success
    with pytest.raises(dg.DagsterInvariantViolationError, match="No outputs found"):
        kept_nothing.output_for_node("month_of_usage")
    assert dg.materialize([month_of_usage]).output_for_node("month_of_usage") == list(
        range(1000)
    )  # Dagster's default


# ---------------------------------------------------------------- progress on the command line

TINY_CATALOG = (
    "issuer: {name: Example AI GmbH}\n"
    "plans:\n  payg: {name: Pay as you go, charges: [\n"
    '    {id: out, meter: output_tokens, unit_size: 1000, unit_price: "0.010"},\n'
    '    {id: in, meter: input_tokens, unit_size: 1000, unit_price: "0.005"}]}\n'
    'customers:\n  acme: {name: Acme, subscriptions: [{plan: payg, from: "2026-01-01"}], '
    'keys: ["gateway:acme"]}\n'
)


@pytest.fixture
def tiny_month(tmp_path) -> Path:
    """One gateway request of acme's in October (landing/, catalog.yaml): a month-end with one
    invoice, quickly."""
    import json

    (tmp_path / "landing" / "gateway").mkdir(parents=True)
    request = {
        "request_id": "req-1",
        "timestamp": "2026-10-05T13:02:11Z",
        "customer_key": "acme",
        "provider": "openai",
        "model": "gpt-4o",
        "usage": {"prompt_tokens": 2000, "completion_tokens": 2000, "total_tokens": 4000},
    }
    (tmp_path / "landing" / "gateway" / "2026-10-05.jsonl").write_text(json.dumps(request) + "\n")
    (tmp_path / "catalog.yaml").write_text(TINY_CATALOG)
    return tmp_path


def test_progress_is_one_line_per_step_on_stderr_and_nothing_extra_when_quiet(tiny_month):
    """Not a terminal (a log, a pipe): each finished step is one line, n/N, the invoice PDFs
    counted on it; the summary alone goes to stdout. --quiet: no progress at all."""
    from click.testing import CliRunner

    from billing_pipeline.cli import main

    catalog, out = (
        ["--catalog", str(tiny_month / "catalog.yaml")],
        ["--out", str(tiny_month / "out")],
    )
    run = ["run", "--month", MONTH, "--landing", str(tiny_month / "landing"), *catalog, *out]
    result = CliRunner().invoke(main, run)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    total = len(lines)
    assert total > 10
    assert [line.split(":")[0] for line in lines] == [
        f"month-end steps {n}/{total}" for n in range(1, total + 1)
    ]
    assert any(line.endswith(": rated_charges") for line in lines)
    assert lines[-1].endswith("(invoice PDFs 1/1)")
    assert "month-end steps" not in result.stdout and "customers invoiced" in result.stdout

    quiet = CliRunner().invoke(main, [*run, "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    assert quiet.stdout == result.stdout  # the same summary: the month is unchanged

    issue = ["issue", "--month", MONTH, "--issue-date", "2026-11-02", *catalog, *out]
    issued = CliRunner().invoke(main, [*issue, "--quiet"])
    assert issued.exit_code == 0, issued.output
    assert issued.stderr == "" and "issued 1, PDFs rendered 1" in issued.stdout
    again = CliRunner().invoke(main, issue)
    assert again.stderr.splitlines() == ["invoice PDFs 1/1: acme"]
    assert "issued 0, PDFs rendered 0, unchanged 1" in again.stdout


def test_a_terminal_sees_bars_that_count_steps_and_pdfs():
    """On a terminal the counts are rich bars, n/N, redrawn in place and cleared at the end."""
    import io

    from billing_pipeline import progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    view = progress.RichView(screen)
    with view, progress.watching(view):
        progress.expect(progress.MONTH_END_STEPS, 3, steps=True)
        progress.expect(progress.INVOICE_PDFS, 21)
        for step in ("usage_tables", "rated_charges"):
            progress.advance(progress.MONTH_END_STEPS, 1, step)
        progress.advance(progress.INVOICE_PDFS, 7, "acme")
        view.progress.refresh()
        shown = screen.getvalue()
    assert "2/3" in shown and "rated_charges" in shown and "7/21" in shown
    progress.advance(progress.INVOICE_PDFS, 1)  # nobody watching any more: nothing happens
