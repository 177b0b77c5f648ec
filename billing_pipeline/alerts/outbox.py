"""The alert outbox and the hard-cap table in the ledger database.

An alert is recorded once: its id is the primary key and inserts of a known id do nothing
(``ON CONFLICT DO NOTHING`` on both dialects), so a re-run or a backfill of any day never fires
it again. Delivery is the ledger's one outbox mechanism (``ledger/outbox.py``, ``ALERT_WEBHOOKS``):
a row is claimed with a lease (one conditional UPDATE), so two deliverers running at once never
send the same row, and a failed attempt is retried after a backoff; an acknowledged row is
``delivered`` and never sent again. A row whose URL can never be used (a scheme other than
https/http, recorded before the catalog refused it) is ``refuse``d: ``no_endpoint`` with the
reason in ``last_error``, never retried.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from billing_pipeline.alerts.rules import Alert
from billing_pipeline.ledger.outbox import ALERT_WEBHOOKS
from billing_pipeline.ledger.tables import alert_outbox, hard_caps
from billing_pipeline.money import exact, to_micros

I64_MAX = 2**63 - 1  # hard_caps.spend_micros of a customer beyond any limit (BigInteger)


def _insert(engine: Engine):
    return (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(
        alert_outbox
    )


def record(
    engine: Engine,
    alerts: list[Alert],
    endpoints: dict[str, tuple[str, str] | None],
    now: dt.datetime,
    send: bool = True,
) -> list[str]:
    """Add alerts not seen before; returns the ids that are new. ``endpoints``: customer ->
    (url, secret_env) or None (recorded as ``no_endpoint``, never sent). ``send=False`` records
    them as ``stale``: a backfill of an old day marks its alerts as fired without sending news
    that is weeks old."""
    new = []
    with engine.begin() as conn:
        for alert in alerts:
            endpoint = endpoints.get(alert.customer_id)
            statement = (
                _insert(engine)
                .values(
                    alert_id=alert.alert_id,
                    customer_id=alert.customer_id,
                    kind=alert.kind,
                    period=alert.period,
                    payload=alert.body().decode("utf-8"),
                    url=endpoint[0] if endpoint else None,
                    secret_env=endpoint[1] if endpoint else None,
                    status=("pending" if send else "stale") if endpoint else "no_endpoint",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["alert_id"])
            )
            if conn.execute(statement).rowcount:
                new.append(alert.alert_id)
    return new


def due(engine: Engine, now: dt.datetime, limit: int = 100) -> list[dict]:
    """Pending rows whose next attempt is due, oldest first (a held row is due when its lease ends)."""
    with engine.connect() as conn:
        return ALERT_WEBHOOKS.due(
            conn,
            now,
            order_by=(alert_outbox.c.created_at, alert_outbox.c.alert_id),
            limit=limit,
        )


def claim(engine: Engine, alert_id: str, now: dt.datetime) -> bool:
    """Take the row for one attempt; False if another deliverer has it or it was delivered."""
    with engine.begin() as conn:
        return ALERT_WEBHOOKS.claim(conn, alert_id, now)


backoff = ALERT_WEBHOOKS.backoff.after  # 30 s, 1 min, 2 min, ... up to 6 h (ledger/outbox.py)


def acknowledge(engine: Engine, alert_id: str, now: dt.datetime) -> None:
    with engine.begin() as conn:
        ALERT_WEBHOOKS.record_sent(conn, alert_id, now)


def failed(
    engine: Engine, alert_id: str, attempt: int, error: str, now: dt.datetime
) -> dt.datetime:
    """Record that claimed attempt number ``attempt`` failed; returns when the next one is due."""
    with engine.begin() as conn:
        return ALERT_WEBHOOKS.record_failure(conn, alert_id, attempt, error, now)["next_attempt_at"]


def refuse(engine: Engine, alert_id: str, attempt: int, reason: str, now: dt.datetime) -> None:
    """The row's URL can never be used (e.g. an unsupported scheme): it becomes ``no_endpoint``
    with the reason and is never retried (``due`` only returns pending rows)."""
    with engine.begin() as conn:
        ALERT_WEBHOOKS.record_failure(conn, alert_id, attempt, reason, now, permanent=True)


def outbox_rows(engine: Engine, period: str | None = None) -> list[dict]:
    query = select(alert_outbox).order_by(alert_outbox.c.alert_id)
    if period:
        query = query.where(alert_outbox.c.period == period)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def write_hard_caps(
    engine: Engine, period: str, as_of: dt.date, rows: list[dict], now: dt.datetime
) -> bool:
    """Replace the month's list, unless a later day was already evaluated (a backfill of an
    earlier day must not resurrect or drop blocks). Returns whether the table was written."""
    with engine.begin() as conn:
        latest = conn.execute(
            select(hard_caps.c.as_of)
            .where(hard_caps.c.period == period)
            .order_by(hard_caps.c.as_of.desc())
            .limit(1)
        ).scalar()
        if latest is not None and latest > as_of.isoformat():
            return False
        conn.execute(delete(hard_caps).where(hard_caps.c.period == period))
        for row in rows:
            conn.execute(
                hard_caps.insert().values(
                    customer_id=row["customer_id"],
                    period=period,
                    as_of=as_of.isoformat(),
                    currency=row["currency"],
                    spend_micros=_spend_micros(row),
                    cap_micros=to_micros(exact(row["hard_cap"])),
                    updated_at=now,
                )
            )
    return True


def _spend_micros(row: dict) -> int:
    """A capped row's spend for the table: its spend to date; a held customer's figure
    (``held.spend_bound``); one beyond any limit (no figure) the largest the column holds."""
    text = row["spend_to_date"] or (row.get("held") or {}).get("spend_bound")
    return I64_MAX if text is None else to_micros(exact(text))


def hard_caps_json(
    period: str, as_of: str, rows: list[dict], held: list[dict] | None = None
) -> str:
    """The file a gateway polls (``<out>/hard_caps.json``): who to block, and why. ``as_of``: the
    instant the month to date was counted up to (``periods.utc_text``). ``held``: every customer
    whose rating holds (rules.held_list), blocked or not, so ops see who is not counted as $0."""
    return (
        json.dumps(
            {"period": period, "as_of": as_of, "customers": rows, "held": held or []},
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )


__all__ = [
    "acknowledge",
    "backoff",
    "claim",
    "due",
    "failed",
    "hard_caps_json",
    "outbox_rows",
    "record",
    "refuse",
    "write_hard_caps",
]
