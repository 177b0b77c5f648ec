"""Gapless invoice numbers: one sequence per issuer prefix and year, e.g. ``INV-2026-000042``.

Numbers are assigned only when drafts are issued, all in one transaction that also freezes them
(VAT Directive art. 226(2)): a crash rolls every assignment back, so the series never has a gap.
Lago's recipe: take a lock, then MAX(sequence)+1 inside the transaction, and let a UNIQUE index on
(series, sequence) catch anything that slips past the lock. PostgreSQL: advisory transaction locks
on the period and on the series. SQLite: the ledger starts every transaction with BEGIN IMMEDIATE.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable

from sqlalchemy import func, select, text

from billing_pipeline.documents.kinds import KIND_INVOICE
from billing_pipeline.ledger.holds import Hold, MoneyAtRisk, unwaived_holds
from billing_pipeline.ledger.ledger import (
    Ledger,
    audit,
    canonical_json,
    load_document,
    lock_period,
)
from billing_pipeline.ledger.tables import invoices, month_checks


class ChecksFailed(RuntimeError):
    """The month has failed blocking checks, or none were recorded after its latest drafts:
    nothing may be issued until a month-end run records passing checks."""

    def __init__(self, period: str, checks: list[str], message: str | None = None):
        super().__init__(message or f"{period}: blocking checks failed: {', '.join(checks)}")
        self.checks = checks


class IssuedDrafts(list):
    """What ``issue_drafts`` numbered, plus ``held``: the customers whose drafts money at risk held."""

    held: list[Hold]

    def __init__(self, items=(), held: list[Hold] | None = None):
        super().__init__(items)
        self.held = held or []


def refuse_unchecked(conn, period: str) -> None:
    """Refuse a month whose checks were never recorded (a month-end killed before its checks,
    or one run outside the runner and the sensor), or were recorded before its latest drafts
    were written (the run that wrote them never finished)."""
    failed = Ledger.failed_blocking_checks(conn, period)
    if failed:
        raise ChecksFailed(period, failed)
    recorded = conn.execute(
        select(func.max(month_checks.c.recorded_at)).where(month_checks.c.period == period)
    ).scalar_one()
    if recorded is None:
        raise ChecksFailed(
            period,
            [],
            f"{period}: no month-end checks were recorded for this month; "
            "run month-end (billing-pipeline run) to completion first",
        )
    drafted = conn.execute(
        select(func.max(invoices.c.updated_at)).where(
            invoices.c.period == period, invoices.c.status == "draft"
        )
    ).scalar_one()
    if drafted is not None and _aware(drafted) > _aware(recorded):
        raise ChecksFailed(
            period,
            [],
            f"{period}: the drafts were written after the last recorded checks "
            f"({_aware(recorded):%Y-%m-%d %H:%M:%S} UTC): the run that wrote them did not finish; "
            "re-run month-end",
        )


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def series_name(prefix: str, year: int) -> str:
    return f"{prefix}-{year}"


def format_number(series: str, sequence: int) -> str:
    return f"{series}-{sequence:06d}"


def _lock_series(conn, series: str) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"billing_pipeline.numbering:{series}"},
        )


def issue_drafts(
    ledger: Ledger,
    period: str,
    *,
    prefix: str,
    issue_date: dt.date,
    payment_terms_days: int,
    customer_id: str | None = None,
    actor: str = "issuing",
    before_each: Callable[[str], None] | None = None,
) -> list[dict]:
    """Number and freeze the period's drafts (invoices first, then corrections, by customer).

    Refuses (``ChecksFailed``) while a blocking check of the period has failed or its checks are
    missing or older than its drafts, and (``MoneyAtRisk``) while an unwaived held record names
    nobody. Drafts of customers an unwaived held record names are left as drafts and reported in
    ``held``. Returns what was issued now; drafts already issued by someone else are simply not
    there any more.
    ``before_each`` is a test hook called with each number before its row is written.
    """
    series = series_name(prefix, issue_date.year)
    due = issue_date + dt.timedelta(days=payment_terms_days)
    issued = IssuedDrafts()
    with ledger.engine.begin() as conn:
        lock_period(conn, period)
        _lock_series(conn, series)
        refuse_unchecked(conn, period)
        held = unwaived_holds(conn, period)
        if any(h.customer_id is None for h in held):
            raise MoneyAtRisk(period, held)
        held_customers = {h.customer_id for h in held}
        issued.held = [h for h in held if customer_id is None or h.customer_id == customer_id]
        query = select(invoices.c.id, invoices.c.kind, invoices.c.document).where(
            invoices.c.period == period, invoices.c.status == "draft"
        )
        if customer_id is not None:
            query = query.where(invoices.c.customer_id == customer_id)
        if held_customers:
            query = query.where(invoices.c.customer_id.not_in(held_customers))
        drafts = conn.execute(query.with_for_update()).all()
        drafts.sort(
            key=lambda r: (r.kind != KIND_INVOICE, load_document(r.document)["customer_id"], r.id)
        )
        last = (
            conn.execute(
                select(func.max(invoices.c.sequence)).where(invoices.c.series == series)
            ).scalar_one()
            or 0
        )
        for row in drafts:
            last += 1
            number = format_number(series, last)
            if before_each is not None:
                before_each(number)
            doc = {
                **load_document(row.document),
                "number": number,
                "status": "issued",
                "issue_date": issue_date.isoformat(),
                "due_date": due.isoformat(),
            }
            document = canonical_json(doc)
            document_sha256 = hashlib.sha256(document.encode("utf-8")).hexdigest()
            # The audit row first: the database refuses a status change that does not point at it.
            audit_id = audit(
                conn,
                row.id,
                actor,
                "issue",
                {
                    "number": number,
                    "issue_date": doc["issue_date"],
                    "due_date": doc["due_date"],
                    "total": doc["total"],
                    "document_sha256": document_sha256,
                },
            )
            conn.execute(
                invoices.update()
                .where(invoices.c.id == row.id, invoices.c.status == "draft")
                .values(
                    status="issued",
                    number=number,
                    series=series,
                    sequence=last,
                    document=document,
                    document_sha256=document_sha256,
                    status_audit_id=audit_id,
                    updated_at=dt.datetime.now(dt.UTC),
                )
            )
            issued.append(
                {
                    "id": row.id,
                    "number": number,
                    "customer_id": doc["customer_id"],
                    "kind": row.kind,
                    "total": doc["total"],
                    "currency": doc["currency"],
                }
            )
    return issued
