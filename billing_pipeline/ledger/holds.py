"""Money at risk holds issuing: what the month-end could not bill, by whom.

Every month-end run replaces the period's ``held_records`` with its money-at-risk quarantine rows
(unreadable or truncated files, missing next pages, bad or negative quantities, unresolved
conflicts, quantities that overflow). Issuing refuses the customers they name, and the whole
month when a row names nobody (an unreadable file belongs to nobody yet), until the landing zone
is fixed and month-end re-run, or a person waives the row with a reason. A waiver is kept for good
and written to the audit log (``invoice_id`` 0: a month-level entry, not one invoice's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from billing_pipeline.checks import CheckOutcome, Markdown
from billing_pipeline.ledger.ledger import Ledger, LedgerError, audit, lock_period
from billing_pipeline.ledger.tables import held_records, waivers

MONTH_LEVEL_AUDIT_ID = 0  # audit_log.invoice_id of entries about a month, not one invoice


@dataclass(frozen=True)
class Hold:
    origin: str
    source: str
    reason: str
    customer_id: str | None  # None: holds the whole month
    message: str


class MoneyAtRisk(RuntimeError):
    """Issuing refused: records that could carry money were not billed and are not waived."""

    def __init__(self, period: str, holds: list[Hold]):
        super().__init__(describe(period, holds))
        self.period, self.holds = period, holds


def describe(period: str, holds: list[Hold], limit: int = 10) -> str:
    """One message for ``run``, ``issue`` and the Dagster check alike: files and customers held."""
    whole = [h for h in holds if h.customer_id is None]
    customers = sorted({h.customer_id for h in holds if h.customer_id is not None})
    files = sorted({h.origin for h in holds})
    who = (
        "the whole month (a record nobody can be named for)"
        if whole
        else f"customers {', '.join(customers)}"
    )
    shown = "; ".join(
        f"{h.origin} ({h.reason})" for h in sorted(holds, key=lambda h: h.origin)[:limit]
    )
    more = f"; and {len(holds) - limit} more" if len(holds) > limit else ""
    return (
        f"{period}: money at risk holds {who}: {len(holds)} record(s) in {len(files)} place(s) not billed: "
        f"{shown}{more}. Fix the landing zone and re-run month-end, or waive each with "
        f"`billing-pipeline waive --month {period} --origin ORIGIN --reason TEXT`"
    )


def record_holds(ledger: Ledger, period: str, rows: list[dict]) -> None:
    """Replace the period's held records with ``rows`` (origin, source, reason, customer_id, message)."""
    now = datetime.now(UTC)
    with ledger.engine.begin() as conn:
        lock_period(conn, period)
        conn.execute(delete(held_records).where(held_records.c.period == period))
        if rows:
            conn.execute(
                held_records.insert(),
                [
                    {
                        "period": period,
                        "origin": r["origin"],
                        "source": r.get("source") or "",
                        "reason": r["reason"],
                        "customer_id": r.get("customer_id"),
                        "message": (r.get("message") or "")[:2000],
                        "recorded_at": now,
                    }
                    for r in rows
                ],
            )


def unwaived_holds(conn: Connection, period: str) -> list[Hold]:
    """The period's held records that no waiver covers, in a stable order."""
    waived = select(waivers.c.origin).where(waivers.c.period == period)
    rows = conn.execute(
        select(held_records)
        .where(held_records.c.period == period, held_records.c.origin.not_in(waived))
        .order_by(held_records.c.origin, held_records.c.reason, held_records.c.id)
    ).all()
    return [Hold(r.origin, r.source, r.reason, r.customer_id, r.message) for r in rows]


def holds(ledger: Ledger, period: str) -> list[Hold]:
    with ledger.engine.connect() as conn:
        return unwaived_holds(conn, period)


def waive(ledger: Ledger, period: str, origin: str, reason: str, actor: str = "cli") -> list[Hold]:
    """Waive every held record of ``origin`` in ``period``; returns what was waived.

    Refused without a reason, or when nothing of that origin is held (a typo must not silently
    waive nothing, nor pre-waive a file that has not failed yet)."""
    if not reason.strip():
        raise LedgerError("a waiver needs a reason (it goes into the audit log)")
    with ledger.engine.begin() as conn:
        lock_period(conn, period)
        held = [h for h in unwaived_holds(conn, period) if h.origin == origin]
        if not held:
            raise LedgerError(
                f"{period}: nothing held with origin {origin!r}; "
                "held origins are listed by `billing-pipeline run` and in quarantine.csv"
            )
        now = datetime.now(UTC)
        conn.execute(
            waivers.insert().values(
                period=period, origin=origin, reason=reason.strip(), actor=actor, waived_at=now
            )
        )
        audit(
            conn,
            MONTH_LEVEL_AUDIT_ID,
            actor,
            "waive",
            {
                "period": period,
                "origin": origin,
                "reason": reason.strip(),
                "records": [
                    {"reason": h.reason, "customer_id": h.customer_id, "source": h.source}
                    for h in held
                ],
            },
        )
    return held


def waived(ledger: Ledger, period: str) -> list[dict]:
    """The period's waivers (origin, reason, actor, waived_at), for the finance summary."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(waivers).where(waivers.c.period == period).order_by(waivers.c.origin)
        ).all()
    return [
        {"origin": r.origin, "reason": r.reason, "actor": r.actor, "waived_at": r.waived_at}
        for r in rows
    ]


def money_at_risk_check(period: str, unwaived: list[Hold], waived: list[dict]) -> CheckOutcome:
    """Fails while any held record is not waived; the description is the message ``issue``
    refuses with. Issuing holds the customers named (or the whole month when a record names
    nobody), so the check's failure is the holds, not a verdict on the month as a whole."""
    return CheckOutcome(
        passed=not unwaived,
        description=describe(period, unwaived) if unwaived else None,
        metadata={
            "held_records": len(unwaived),
            "held_customers": ", ".join(sorted({h.customer_id for h in unwaived if h.customer_id}))
            or "none",
            "holds_whole_month": any(h.customer_id is None for h in unwaived),
            "held_origins": Markdown(
                "\n".join(
                    f"- `{h.origin}` ({h.reason}, {h.customer_id or 'whole month'})"
                    for h in unwaived[:50]
                )
                or "none"
            ),
            "waived": len(waived),
        },
    )
