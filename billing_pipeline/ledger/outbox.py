"""The one outbox mechanism: how alert webhooks and invoice emails are claimed, retried and settled.

Each outbox is a ledger table whose rows carry ``status``, ``attempts``, ``next_attempt_at`` and
``last_error``; what else a row carries and how it is sent stay with its sender (``alerts/``,
``delivery/``). The rules, the same for both:

- A row is due when it is pending and its ``next_attempt_at`` has come, or when a sender's lease
  on it has run out.
- A sender claims a due row with one conditional UPDATE, committed before anything is sent: the
  attempt is counted and ``next_attempt_at`` becomes the lease's end. A second sender's UPDATE
  finds the row no longer due (PostgreSQL makes it wait for the first one's row lock and then
  re-checks the condition; SQLite has one writer at a time), so two senders never send the same
  row; a sender that dies mid-send leaves a row that comes due again when its lease ends
  (at-least-once).
- After a failed attempt the row waits ``Backoff.after(attempts)``: the first wait, doubling, up
  to a cap (no jitter). A permanent refusal, or a failure of the last allowed attempt, fails it
  for good; a row whose last allowed attempt never finished is given up (``give_up``), never
  claimed again, so attempts never pass the limit.

The timings of both outboxes are defined here (``ALERT_WEBHOOKS``, ``INVOICE_EMAILS``) and
nowhere else, so one place says how hard each receiver is retried.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from billing_pipeline.ledger.tables import alert_outbox, invoice_deliveries

ERROR_LENGTH = 2000  # last_error keeps the start of a long message


@dataclass(frozen=True)
class Backoff:
    """The wait after a failed attempt: ``first``, then doubling, never more than ``cap``."""

    first: dt.timedelta
    cap: dt.timedelta

    def after(self, failures: int) -> dt.timedelta:
        """The wait after the ``failures``-th failed attempt. Doubles step by step and stops at
        the cap, so a row that has failed for weeks still gets the cap (2 ** n would overflow)."""
        wait = self.first
        for _ in range(max(failures - 1, 0)):
            if wait >= self.cap:
                break
            wait *= 2
        return min(wait, self.cap)


@dataclass(frozen=True)
class Outbox:
    """One outbox table: its key column, the statuses it uses and its timings."""

    table: Table
    key: str  # the primary key column
    lease: dt.timedelta  # longer than one attempt may take
    backoff: Backoff
    max_attempts: int | None  # None: retried until sent or refused for good
    sending: str  # status while a sender holds the row
    sent: str
    failed: str  # sent never: the limit was reached or the refusal is permanent
    sent_at: str  # column stamped when the row is sent
    updated_at: str | None = None  # column stamped at every change, when the table has one
    pending: str = "pending"

    def due_clause(self, now: dt.datetime) -> ColumnElement[bool]:
        c = self.table.c
        waiting = and_(c.status == self.pending, c.next_attempt_at <= now)
        if self.sending == self.pending:  # a held row differs from a waiting one by its time only
            return waiting
        return or_(waiting, and_(c.status == self.sending, c.next_attempt_at < now))

    def due(
        self,
        conn: Connection,
        now: dt.datetime,
        *where: ColumnElement[bool],
        order_by: tuple = (),
        limit: int | None = None,
    ) -> list[dict]:
        """Rows a sender may take now (``where`` narrows them), in ``order_by`` (default: key)."""
        query = (
            select(self.table)
            .where(self.due_clause(now), *where)
            .order_by(*(order_by or (self.table.c[self.key],)))
        )
        if limit is not None:
            query = query.limit(limit)
        return [dict(r) for r in conn.execute(query).mappings()]

    def exhausted(self, row: dict) -> bool:
        """The row has had every attempt it may have: it is given up, not claimed."""
        return self.max_attempts is not None and row["attempts"] >= self.max_attempts

    def claim(self, conn: Connection, key: Any, now: dt.datetime) -> bool:
        """Take a due row for one attempt (counted now, leased until ``now + lease``); commit
        before sending. False when another sender has it, it is settled, or it is exhausted."""
        c = self.table.c
        limit = [] if self.max_attempts is None else [c.attempts < self.max_attempts]
        result = conn.execute(
            update(self.table)
            .where(c[self.key] == key, self.due_clause(now), *limit)
            .values(
                status=self.sending,
                attempts=c.attempts + 1,
                next_attempt_at=now + self.lease,
                **self._stamp(now),
            )
        )
        return result.rowcount == 1

    def give_up(self, conn: Connection, key: Any, now: dt.datetime, error: str) -> bool:
        """Fail a due row whose last allowed attempt never finished (its sender died); False if
        another sender got to it first."""
        if self.max_attempts is None:
            return False
        c = self.table.c
        result = conn.execute(
            update(self.table)
            .where(c[self.key] == key, self.due_clause(now), c.attempts >= self.max_attempts)
            .values(
                status=self.failed,
                next_attempt_at=now,
                last_error=error[:ERROR_LENGTH],
                **self._stamp(now),
            )
        )
        return result.rowcount == 1

    def after_failure(self, attempts: int, now: dt.datetime, permanent: bool = False) -> dict:
        """Status and next try after failed attempt number ``attempts``."""
        if permanent or (self.max_attempts is not None and attempts >= self.max_attempts):
            return {"status": self.failed, "next_attempt_at": now}
        return {"status": self.pending, "next_attempt_at": now + self.backoff.after(attempts)}

    def record_failure(
        self,
        conn: Connection,
        key: Any,
        attempts: int,
        error: str,
        now: dt.datetime,
        permanent: bool = False,
    ) -> dict:
        """Settle claimed attempt number ``attempts`` as failed: retried after the backoff, or
        failed for good. Returns the new status and next try (``after_failure``)."""
        state = self.after_failure(attempts, now, permanent)
        self.finish(conn, key, now, **state, last_error=error[:ERROR_LENGTH])
        return state

    def record_sent(self, conn: Connection, key: Any, now: dt.datetime, **values: Any) -> None:
        """The receiver accepted the row: it is never sent again. ``values``: the sender's own
        columns (e.g. the server's reply)."""
        self.finish(
            conn, key, now, status=self.sent, **{self.sent_at: now}, last_error=None, **values
        )

    def finish(self, conn: Connection, key: Any, now: dt.datetime, **values: Any) -> None:
        """Write a claimed row's outcome (``values``), e.g. a status of the sender's own."""
        conn.execute(
            update(self.table)
            .where(self.table.c[self.key] == key)
            .values(**values, **self._stamp(now))
        )

    def _stamp(self, now: dt.datetime) -> dict:
        return {self.updated_at: now} if self.updated_at else {}


# Alert webhooks: retried until acknowledged (a receiver may be down for days). The table has no
# 'sending' status, so a held row stays 'pending' and is simply not due before its lease ends;
# 'no_endpoint' is the outcome of a URL refused for good. (``lease_until``, the lease's column
# before this module, is no longer written: the lease is ``next_attempt_at``, as for emails.)
ALERT_WEBHOOKS = Outbox(
    table=alert_outbox,
    key="alert_id",
    lease=dt.timedelta(minutes=5),  # longer than one delivery attempt (timeout 10 s)
    backoff=Backoff(first=dt.timedelta(seconds=30), cap=dt.timedelta(hours=6)),
    max_attempts=None,
    sending="pending",
    sent="delivered",
    failed="no_endpoint",
    sent_at="delivered_at",
)

# Invoice emails: at most 8 attempts, then 'failed'.
INVOICE_EMAILS = Outbox(
    table=invoice_deliveries,
    key="id",
    lease=dt.timedelta(minutes=10),  # longer than one SMTP conversation (timeout 60 s per command)
    backoff=Backoff(first=dt.timedelta(minutes=1), cap=dt.timedelta(hours=6)),
    max_attempts=8,
    sending="sending",
    sent="sent",
    failed="failed",
    sent_at="sent_at",
    updated_at="updated_at",
)

__all__ = ["ALERT_WEBHOOKS", "INVOICE_EMAILS", "Backoff", "Outbox"]
