"""Issuing as a Dagster job: finance triggers ``issue_invoices_job`` for a reviewed month.

No schedule for issuing: it is a human decision. The asset only wires resources to
``issuing.month.issue_month``; the ledger (locks, unique indexes, recorded check results)
is what guarantees one set of gapless numbers, however many runs start at once. Delivery runs
right after issuing, and again every 15 minutes (``invoice_delivery_schedule``) for retries.
"""

from pathlib import Path

import dagster as dg

from billing_pipeline.defs.jobs import MONTH_TAG, month_that_ended
from billing_pipeline.defs.month_end import MONEY_AT_RISK_CHECK, month_end_job, unexpected_failures
from billing_pipeline.defs.partitions import monthly_partitions
from billing_pipeline.defs.resources import (
    CatalogResource,
    LedgerResource,
    OutputFiles,
    SmtpResource,
)
from billing_pipeline.delivery import mail as delivery
from billing_pipeline.delivery.smtp import SmtpConfigError, SmtpTransport, smtp_from_env
from billing_pipeline.issuing.month import issue_month

ISSUING_GROUP = "issuing"


# Money at risk holds only the customers it names (ledger.holds), so its check is recorded as
# non-blocking for the month as a whole; the held_records table does the refusing.
PER_CUSTOMER_CHECKS = frozenset({MONEY_AT_RISK_CHECK})
RUN_COMPLETED_CHECK = "month_end_run_completed"


def evaluation_rows(evaluations) -> list[dict]:
    """Asset check evaluations as ledger ``month_checks`` rows (the last of a name wins)."""
    rows: dict[str, dict] = {}
    for event in evaluations:
        rows[event.check_name] = {
            "name": event.check_name,
            "passed": event.passed,
            "blocking": event.severity == dg.AssetCheckSeverity.ERROR
            and event.check_name not in PER_CUSTOMER_CHECKS,
            "detail": event.asset_key.to_user_string(),
        }
    return list(rows.values())


def check_rows(results) -> list[dict]:
    """Check evaluations of in-process run results as ledger ``month_checks`` rows."""
    return evaluation_rows(e for result in results for e in result.get_asset_check_evaluations())


def _record_run_checks(
    context: dg.RunStatusSensorContext, ledger: LedgerResource, completed: bool
) -> None:
    run = context.dagster_run
    month = run.tags.get(MONTH_TAG) or (run.tags.get("dagster/partition") or "")[:7]
    if not month:
        context.log.warning(f"run {run.run_id} has no month tag or partition: checks not recorded")
        return
    logs = context.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    rows = evaluation_rows(
        entry.dagster_event.asset_check_evaluation_data for entry in logs if entry.dagster_event
    )
    rows.append(
        {"name": RUN_COMPLETED_CHECK, "passed": completed, "blocking": True, "detail": run.run_id}
    )
    ledger.open().record_checks(month, rows)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[month_end_job],
    name="record_month_end_checks",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def record_month_end_checks(context: dg.RunStatusSensorContext, ledger: LedgerResource) -> None:
    """A month-end run from the schedule or the UI records its checks in the ledger as the CLI's
    runner does, so ``issue`` refuses a month whose checks failed or never ran (a month with no
    recorded checks is refused)."""
    _record_run_checks(context, ledger, completed=True)


@dg.run_failure_sensor(
    monitored_jobs=[month_end_job],
    name="record_failed_month_end_checks",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def record_failed_month_end_checks(
    context: dg.RunFailureSensorContext, ledger: LedgerResource
) -> None:
    """A failed month-end leaves a failed blocking ``month_end_run_completed``: issuing waits for
    a run that finishes, whatever drafts the failed one left. The money-at-risk check failing its
    own (last) step on purpose is not such a failure: its holds do the refusing, per customer."""
    failures = [
        entry.dagster_event
        for entry in context.instance.all_logs(
            context.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
        )
        if entry.dagster_event
    ]
    _record_run_checks(context, ledger, completed=not unexpected_failures(failures))


@dg.asset(
    partitions_def=monthly_partitions,
    group_name=ISSUING_GROUP,
    kinds={"sqlite", "pdf"},
    deps=["invoice_drafts"],
)
def issued_invoices(
    context: dg.AssetExecutionContext,
    catalog: CatalogResource,
    ledger: LedgerResource,
    output: OutputFiles,
) -> dg.MaterializeResult:
    """Number the month's drafts from the issuer's gapless series, set issue and due dates, and
    render the final PDFs (missing ones only). Refuses while a blocking check of the month failed."""
    month = context.partition_key[:7]
    issuer = catalog.load().issuer
    result = issue_month(
        ledger.open(),
        month,
        output.month_dir(month).parent,
        prefix=issuer.invoice_prefix,
        payment_terms_days=issuer.payment_terms_days,
        actor=f"dagster:{context.run_id}",
    )
    numbers = [i["number"] for i in result["issued"]]
    return dg.MaterializeResult(
        metadata={
            "issued": len(numbers),
            "numbers": ", ".join(numbers) or "none (already issued)",
            "pdfs_rendered": result["rendered"],
            "pdfs_unchanged": result["unchanged"],
        }
    )


@dg.asset(
    partitions_def=monthly_partitions,
    group_name=ISSUING_GROUP,
    kinds={"email"},
    deps=[issued_invoices],
    retry_policy=dg.RetryPolicy(max_retries=3, delay=60, backoff=dg.Backoff.EXPONENTIAL),
)
def delivered_invoices(
    context: dg.AssetExecutionContext,
    catalog: CatalogResource,
    ledger: LedgerResource,
    output: OutputFiles,
    smtp: SmtpResource,
) -> dg.MaterializeResult:
    """The month's issued invoices emailed to each customer's billing email (PDF + JSON copy),
    each once: the ledger's delivery outbox remembers what was sent, so re-materializing sends
    only what is still due. Fails while a delivery is waiting for a retry or has failed (the step
    retries after the outbox's backoff) and when SMTP is not configured."""
    month = context.partition_key[:7]
    loaded = catalog.load()
    env = smtp.environ()
    try:
        sender = delivery.sender_from_env(loaded.issuer.name, loaded.issuer.email, env)
        settings = None if env.get("BILLING_SMTP_DRY_RUN_DIR") else smtp_from_env(env)
    except (delivery.DeliveryError, SmtpConfigError) as exc:
        raise dg.Failure(f"invoices of {month} not sent: {exc}", allow_retries=False) from None
    opened, recipients, out = (
        ledger.open(),
        delivery.recipients_from_catalog(loaded),
        Path(output.path),
    )
    if settings is None:
        report = delivery.preview(
            opened,
            recipients,
            out,
            Path(env["BILLING_SMTP_DRY_RUN_DIR"]),
            sender=sender,
            period=month,
        )
    else:
        with SmtpTransport(settings) as transport:
            report = delivery.deliver(
                opened,
                recipients,
                out,
                transport,
                sender=sender,
                period=month,
                actor=f"dagster:{context.run.run_id}",
            )
    counts = report.counts()
    metadata = {
        "sent": counts["sent"],
        "failed": counts["failed"] + counts["retrying"],
        "skipped": counts["no_recipient"] + counts["cancelled"],
        **counts,
        "sent_numbers": ", ".join(i["number"] for i in report.sent) or "none",
        "no_recipient": ", ".join(
            f"{i['number']} ({i['customer_id']})" for i in report.no_recipient
        )
        or "none",
        "eml_files": len(report.written),
    }
    for item in report.no_recipient:
        context.log.warning(
            f"{item['number']} not sent: customer {item['customer_id']} has no billing email"
        )
    problems = [f"{i['number']}: {i['error']}" for i in report.retrying + report.failed]
    if problems:
        raise dg.Failure(
            f"{len(problems)} invoice email(s) not delivered: " + "; ".join(problems),
            metadata=metadata,
            allow_retries=bool(report.retrying) and not report.failed,
        )
    return dg.MaterializeResult(metadata=metadata)


issue_invoices_job = dg.define_asset_job(
    "issue_invoices_job",
    selection=dg.AssetSelection.assets(issued_invoices, delivered_invoices),
    description="Issue a reviewed month: gapless numbers, issue/due dates, final PDFs, emailed to "
    "customers. Triggered by finance.",
)


invoice_delivery_job = dg.define_asset_job(
    "invoice_delivery_job",
    selection=dg.AssetSelection.assets(delivered_invoices),
    description="Send what the delivery outbox has due (retries after backoff); sends nothing twice.",
)


@dg.schedule(job=invoice_delivery_job, cron_schedule="*/15 * * * *", execution_timezone="UTC")
def invoice_delivery_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Every 15 minutes, the previous month's outbox: retries come due on the outbox's backoff
    (1 min doubling to 6 h), so a refused email is retried without anyone re-running issuing."""
    return month_that_ended(context, run_key=context.scheduled_execution_time.isoformat())


defs = dg.Definitions(
    assets=[issued_invoices, delivered_invoices],
    jobs=[issue_invoices_job, invoice_delivery_job],
    schedules=[invoice_delivery_schedule],
    sensors=[record_month_end_checks, record_failed_month_end_checks],
)
