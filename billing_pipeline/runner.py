"""Month-end on the embedded default: a Dagster instance on SQLite in a local folder, two runs.

Run 1 ingests every day of the month in one single-run backfill; run 2 rates, reconciles and
drafts the month. Both are ordinary Dagster runs, so they show in the UI when ``dagster dev`` is
pointed at the same DAGSTER_HOME.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import dagster as dg

# Dagster has no public way to list a job's steps before it runs (pinned version).
from dagster._core.execution.api import create_execution_plan

from billing_pipeline import progress
from billing_pipeline.catalog import load_catalog
from billing_pipeline.defs import build_definitions
from billing_pipeline.defs.issuing import PER_CUSTOMER_CHECKS, check_rows
from billing_pipeline.defs.jobs import MONTH_TAG
from billing_pipeline.defs.month_end import unexpected_failures
from billing_pipeline.defs.rendering import RENDER_SHARDS, RENDER_WORKERS_TAG
from billing_pipeline.defs.resources import (
    CatalogResource,
    LandingZone,
    LedgerResource,
    OutputFiles,
    PolarsParquetIOManager,
    resources_from_env,
    step_io_manager,
)
from billing_pipeline.ledger.holds import describe, holds
from billing_pipeline.ledger.ledger import Ledger, LedgerError
from billing_pipeline.money import fmt_number, percent
from billing_pipeline.periods import month_of, parse_month

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# The month-end's last step fails on purpose when money is at risk (its blocking check): the
# summary names what is held, so its stack trace stays out of the console. Any other failure is
# raised with its message (``unexpected_failures``).
QUIET_MONTH_END = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class InputError(ValueError):
    """Missing or invalid inputs: the message is one line a user can act on."""


@dataclass
class MonthEndSummary:
    month: str
    out_dir: Path
    invoices: int = 0
    revenue: Decimal = Decimal(0)
    billed_incl_tax: Decimal = Decimal(0)
    provider_cost: Decimal = Decimal(0)
    unattributed_cost: Decimal = Decimal(0)
    quarantined: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    unrated_rows: int = 0
    failed_checks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    held: list = field(default_factory=list)  # ledger.holds.Hold: unwaived money at risk
    quarantined_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def money_at_risk_message(self) -> str | None:
        """What ``run`` prints and exits 1 for: the files and customers money at risk holds."""
        return describe(self.month, self.held) if self.held else None

    @property
    def margin(self) -> Decimal:
        return self.revenue - self.provider_cost

    def table(self) -> str:
        pct = f" ({percent(self.margin, self.revenue)} %)" if self.revenue else ""
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.quarantined_by_reason.items()))
        kinds = ", ".join(
            f"{k.replace('_', ' ')} {n}" for k, n in sorted(self.quarantined_by_kind.items())
        )
        rows = [
            ("month", self.month),
            ("customers invoiced", str(self.invoices)),
            ("total revenue (excl. tax)", fmt_number(self.revenue, 2)),
            ("total billed (incl. tax)", fmt_number(self.billed_incl_tax, 2)),
            ("total provider cost", fmt_number(self.provider_cost, 2)),
            ("  of which unattributed", fmt_number(self.unattributed_cost, 2)),
            ("margin", fmt_number(self.margin, 2) + pct),
            ("quarantined rows", f"{self.quarantined}" + (f" ({reasons})" if reasons else "")),
            ("  by kind", kinds or "none"),
            (
                "money at risk held",
                (
                    f"{len(self.held)} record(s), customers "
                    + (", ".join(sorted({h.customer_id or "ALL (whole month)" for h in self.held})))
                )
                if self.held
                else "none",
            ),
            ("usage without a price", f"{self.unrated_rows} rows (see unrated_usage.csv)"),
            ("invoices", str(self.out_dir / self.month / "invoices")),
            ("reconciliation", str(self.out_dir / self.month / "reconciliation.csv")),
            ("quarantine", str(self.out_dir / self.month / "quarantine.csv")),
        ]
        if self.warnings:
            rows.append(("warnings", ", ".join(sorted(set(self.warnings)))))
        if self.failed_checks:
            rows.append(("FAILED CHECKS", ", ".join(self.failed_checks)))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def validate_inputs(
    month: str, landing: Path, catalog: Path, database_url: str | None = None
) -> None:
    try:
        parse_month(month)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if not landing.is_dir():
        raise InputError(f"{landing}: landing zone folder not found")
    if not any(p.is_file() for p in landing.rglob("*")):
        raise InputError(f"{landing}: landing zone is empty (no export files)")
    try:
        load_catalog(catalog)
    except ValueError as exc:  # every problem, one line each (the catalog names file and path)
        raise InputError(str(exc)) from None
    if database_url is not None:  # before ingestion and rating, not after them
        try:
            Ledger.check_url(database_url)
        except LedgerError as exc:
            raise InputError(str(exc)) from None


def month_end_resources(
    landing: Path, catalog: Path, out: Path, database_url: str | None = None
) -> dict:
    """Resources for a run on given folders: the deployment's resources, with these folders."""
    return {
        **resources_from_env(out),
        "landing": LandingZone(path=str(landing)),
        "catalog": CatalogResource(path=str(catalog)),
        "ledger": LedgerResource(url=database_url or f"sqlite:///{out / 'ledger.db'}"),
        "output": OutputFiles(path=str(out)),
        "io_manager": PolarsParquetIOManager(base_dir=str(out / ".storage")),
        "step_io_manager": step_io_manager(out / ".storage"),
    }


@contextmanager
def open_instance(out: Path, dagster_home: Path | None = None) -> Iterator[dg.DagsterInstance]:
    """The embedded default (SQLite under <out>/.dagster), or the instance configured by the
    dagster.yaml in ``dagster_home`` (e.g. PostgreSQL storage in production)."""
    if dagster_home is not None:
        with dg.DagsterInstance.from_config(str(Path(dagster_home).resolve())) as instance:
            yield instance
        return
    home = (out / ".dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    with dg.DagsterInstance.local_temp(
        tempdir=str(home), overrides={"telemetry": {"enabled": False}}
    ) as instance:
        yield instance


@contextmanager
def outputs_not_kept_in_memory() -> Iterator[None]:
    """``execute_in_process`` keeps every step's output in memory for ``output_for_node`` until
    its result object goes. The runner's callers read outputs from the IO managers' files and
    events from the instance, never from the result, so its runs do not keep them: a 10 M-event
    month plus a late re-run peaked at 7.8 GB instead of 19.7 GB (benchmarks/RESULTS.md). Dagster
    has no public switch; this sets the flag of the function ``execute_in_process`` calls, and if
    that function moves, runs exactly as before."""
    module = importlib.import_module("dagster._core.execution.execute_in_process")
    original = getattr(module, "core_execute_in_process", None)
    if original is None:  # pragma: no cover - a Dagster that moved it: keep its default
        yield
        return

    def without_output_capture(*args, **kwargs):
        if "output_capturing_enabled" in kwargs:
            kwargs["output_capturing_enabled"] = False
        return original(*args, **kwargs)

    module.core_execute_in_process = without_output_capture
    try:
        yield
    finally:
        module.core_execute_in_process = original


def planned_steps(defs: dg.Definitions, job_name: str) -> int:
    """How many steps a run of the job executes: its execution plan, with the step mapped over
    the invoice render shards counted once per shard (the drafts step yields every shard, empty
    ones too, so the count does not depend on who was billed)."""
    keys = create_execution_plan(defs.resolve_job_def(job_name)).step_keys_to_execute
    return sum(RENDER_SHARDS if key.endswith("[?]") else 1 for key in keys)


INVOICE_DRAFTS_STEP = "invoice_drafts.save_invoice_drafts"


def _count_steps(event) -> None:
    """A run's events as progress: each finished step (succeeded, failed or skipped) is one
    month-end step; the drafts step's ``to_render`` is how many invoice PDFs are coming."""
    dagster_event = event.dagster_event
    if dagster_event is None:
        return
    if dagster_event.is_step_start:
        progress.advance(progress.MONTH_END_STEPS, 0, event.step_key)
    elif (
        dagster_event.is_step_success
        or dagster_event.is_step_failure
        or dagster_event.is_step_skipped
    ):
        progress.advance(progress.MONTH_END_STEPS, 1, event.step_key)
    elif dagster_event.is_successful_output and event.step_key == INVOICE_DRAFTS_STEP:
        to_render = dagster_event.step_output_data.metadata.get("to_render")
        if to_render is not None and to_render.value:  # none to render: no count to show
            progress.expect(progress.INVOICE_PDFS, int(to_render.value))


def _watched_run_id(instance: dg.DagsterInstance) -> str:
    """A run id whose events report progress (``progress``; nothing when nobody watches)."""
    run_id = str(uuid.uuid4())

    def listen(event) -> None:
        with suppress(Exception):  # showing progress must never fail a month-end
            _count_steps(event)

    instance.add_event_listener(run_id, listen)
    return run_id


def ingest_days(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    first: dt.date,
    last: dt.date,
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """One run for a range of daily partitions (the assets' single-run backfill policy)."""
    with outputs_not_kept_in_memory():
        return defs.resolve_job_def("daily_ingestion_job").execute_in_process(
            instance=instance,
            run_config=QUIET,
            raise_on_error=True,
            run_id=_watched_run_id(instance),
            tags={
                RANGE_START: first.isoformat(),
                RANGE_END: last.isoformat(),
                MONTH_TAG: month_of(first),
                **(tags or {}),
            },
        )


def rate_month_run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    month: str,
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """The month-end run, in this process: its steps run one after another, so each PDF shard
    renders over every CPU (defs/rendering.py RENDER_WORKERS_TAG)."""
    start, _ = parse_month(month)
    with outputs_not_kept_in_memory():
        result = defs.resolve_job_def("month_end_job").execute_in_process(
            instance=instance,
            run_config=QUIET_MONTH_END,
            partition_key=start.isoformat(),
            raise_on_error=False,
            run_id=_watched_run_id(instance),
            tags={
                MONTH_TAG: month,
                RENDER_WORKERS_TAG: os.getenv("BILLING_RENDER_WORKERS", "auto"),
                **(tags or {}),
            },
        )
    unexpected = unexpected_failures(result.get_step_failure_events())
    if unexpected:
        raise MonthEndFailed(unexpected[0], result.run_id)
    return result


class MonthEndFailed(RuntimeError):
    """A month-end step failed for a reason of its own (a disk that is full, a folder that cannot be
    written, a bug): one line for a person, the whole error kept for ``details`` and in the run."""

    def __init__(self, failure, run_id: str):
        error = failure.step_failure_data.error if failure.step_failure_data else None
        while (
            error is not None and error.cause is not None and error.cls_name.startswith("Dagster")
        ):
            error = (
                error.cause
            )  # Dagster's wrappers say "error occurred while executing"; the cause says what
        reason = (
            f"{error.cls_name}: {error.message.strip().splitlines()[0]}"
            if error
            else "no error recorded"
        )
        super().__init__(
            f"month-end step {failure.step_key} failed: {reason} (Dagster run {run_id})"
        )
        self.step, self.run_id = failure.step_key, run_id
        self.details = failure.step_failure_data.error.to_string() if error else ""


def record_month_checks(defs: dg.Definitions, month: str, results) -> None:
    """Store the month's check results in the ledger: issuing refuses a month whose blocking
    checks failed, even in a later process (see ledger.numbering)."""
    defs.resources["ledger"].open().record_checks(month, check_rows(results))


def _collect_checks(summary, results) -> None:
    for result in results:
        for event in result.get_asset_check_evaluations():
            if event.check_name in PER_CUSTOMER_CHECKS:
                continue  # reported as the money-at-risk holds, by customer
            if not event.passed and event.severity == dg.AssetCheckSeverity.ERROR:
                summary.failed_checks.append(event.check_name)
            elif not event.passed:
                summary.warnings.append(event.check_name)


def run_month_end(
    month: str,
    landing: Path,
    catalog: Path,
    out: Path,
    database_url: str | None = None,
    dagster_home: Path | None = None,
) -> MonthEndSummary:
    """Materialize every asset for ``month`` in-process and summarize what was produced."""
    landing, catalog, out = landing.resolve(), catalog.resolve(), out.resolve()
    validate_inputs(month, landing, catalog, database_url)
    out.mkdir(parents=True, exist_ok=True)
    defs = build_definitions(month_end_resources(landing, catalog, out, database_url))
    start, end = parse_month(month)
    summary = MonthEndSummary(month=month, out_dir=out)
    progress.expect(
        progress.MONTH_END_STEPS,
        planned_steps(defs, "daily_ingestion_job") + planned_steps(defs, "month_end_job"),
        steps=True,
    )
    with open_instance(out, dagster_home) as instance:
        daily = ingest_days(defs, instance, start, end - dt.timedelta(days=1))
        monthly = rate_month_run(defs, instance, month)
        _collect_checks(summary, (daily, monthly))
        record_month_checks(defs, month, (daily, monthly))
    summary.held = month_holds(defs, month)
    return _summarize(summary)


def month_holds(defs: dg.Definitions, month: str) -> list:
    """The month's unwaived money-at-risk records, as issuing will see them."""
    return holds(defs.resources["ledger"].open(), month)


@dataclass
class BackfillSummary:
    first: dt.date
    last: dt.date
    rerated: list[str] = field(default_factory=list)
    not_rerated: dict[str, str] = field(default_factory=dict)  # month -> why
    failed_checks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def table(self) -> str:
        rows = [
            f"re-ingested days  {self.first} .. {self.last} ({(self.last - self.first).days + 1} days, one run)",
            f"re-rated months   {', '.join(self.rerated) or 'none'}",
        ]
        rows += [f"not re-rated      {m}: {why}" for m, why in self.not_rerated.items()]
        if self.failed_checks:
            rows.append(f"FAILED CHECKS     {', '.join(self.failed_checks)}")
        return "\n".join(rows)


def run_backfill(
    first: dt.date,
    last: dt.date,
    landing: Path,
    catalog: Path,
    out: Path,
    database_url: str | None = None,
    dagster_home: Path | None = None,
) -> BackfillSummary:
    """Re-ingest a range of days in one run, then re-rate every month the range touches whose
    days are all ingested. Re-running is safe: partitions are replaced, drafts replaced, issued
    invoices never touched."""
    if last < first:
        raise InputError(f"--to {last} is before --from {first}")
    landing, catalog, out = landing.resolve(), catalog.resolve(), out.resolve()
    validate_inputs(month_of(first), landing, catalog, database_url)
    out.mkdir(parents=True, exist_ok=True)
    defs = build_definitions(month_end_resources(landing, catalog, out, database_url))
    summary = BackfillSummary(first, last)
    tag = {"billing/backfill": f"{first}..{last}"}
    months = sorted(
        {month_of(first + dt.timedelta(days=i)) for i in range((last - first).days + 1)}
    )
    per_month = planned_steps(defs, "month_end_job")
    progress.expect(
        progress.MONTH_END_STEPS,
        planned_steps(defs, "daily_ingestion_job") + per_month * len(months),
        steps=True,
    )
    with open_instance(out, dagster_home) as instance:
        results = [ingest_days(defs, instance, first, last, tag)]
        done = instance.get_materialized_partitions(dg.AssetKey("usage_events"))
        for month in months:
            start, end = parse_month(month)
            missing = [d for d in _days(start, end) if d.isoformat() not in done]
            if missing:
                summary.not_rerated[month] = (
                    f"{len(missing)} day(s) never ingested, first {missing[0]}"
                )
                progress.expect(progress.MONTH_END_STEPS, -per_month)  # not run after all
                continue
            results.append(rate_month_run(defs, instance, month, tag))
            record_month_checks(defs, month, (results[0], results[-1]))
            summary.rerated.append(month)
        _collect_checks(summary, results)
    return summary


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def _summarize(summary: MonthEndSummary) -> MonthEndSummary:
    folder = summary.out_dir / summary.month
    for path in sorted((folder / "invoices").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
        summary.invoices += 1
        summary.revenue += Decimal(doc["subtotal"])
        summary.billed_incl_tax += Decimal(doc["total"])
    with open(folder / "reconciliation.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            cost = Decimal(row["cost_exact"] or "0")  # "cost" is rounded to the cent
            summary.provider_cost += cost
            if not row["customer_id"]:
                summary.unattributed_cost += cost
    with open(folder / "unrated_usage.csv", newline="", encoding="utf-8") as fh:
        summary.unrated_rows = sum(1 for _ in csv.DictReader(fh))
    with open(folder / "quarantine.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            summary.quarantined += 1
            summary.quarantined_by_reason[row["reason"]] = (
                summary.quarantined_by_reason.get(row["reason"], 0) + 1
            )
            summary.quarantined_by_kind[row["kind"]] = (
                summary.quarantined_by_kind.get(row["kind"], 0) + 1
            )
    return summary
