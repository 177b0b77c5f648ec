"""The ledger's one outbox mechanism (alert webhooks and invoice emails): a claimed row is held by
its sender until the lease ends, a failed one waits a doubling backoff up to the cap, attempts
stop at the limit, and two senders never take the same row. On SQLite and PostgreSQL.

The outboxes' own tests (test_webhooks, test_delivery and their hardening) show the same rules
through the senders; these pin the mechanism itself, and that there is only one copy of it.
"""

from __future__ import annotations

import ast
import datetime as dt
import itertools
import queue
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import billing_pipeline
from billing_pipeline.ledger.ledger import Ledger
from billing_pipeline.ledger.outbox import ALERT_WEBHOOKS, INVOICE_EMAILS, Outbox
from billing_pipeline.ledger.tables import alert_outbox, invoice_deliveries, invoices

T0 = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)
OUTBOXES = pytest.mark.parametrize(
    "outbox", [ALERT_WEBHOOKS, INVOICE_EMAILS], ids=["alert_webhooks", "invoice_emails"]
)


ON_POSTGRESQL = pytest.mark.parametrize("ledger", ["postgresql"], indirect=True)  # row locks


def add_rows(ledger: Ledger, outbox: Outbox, count: int, now: dt.datetime = T0) -> list:
    """``count`` pending rows, due at ``now``; returns their keys in order."""
    with ledger.engine.begin() as conn:
        if outbox.table is alert_outbox:
            keys = [f"limit:acme:2026-10:{n}" for n in range(count)]
            for key in keys:
                conn.execute(
                    alert_outbox.insert().values(
                        alert_id=key,
                        customer_id="acme",
                        kind="limit_threshold",
                        period="2026-10",
                        payload="{}",
                        url="https://hooks.acme.example/billing",
                        secret_env="BILLING_WEBHOOK_SECRET_ACME",
                        status="pending",
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
            return keys
        invoice_id = conn.execute(
            invoices.insert().values(
                customer_id="acme",
                period="2026-10",
                currency="USD",
                subtotal_micros=0,
                tax_micros=0,
                credits_micros=0,
                total_micros=0,
                document="{}",
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]
        return [
            conn.execute(
                invoice_deliveries.insert().values(
                    invoice_id=invoice_id,
                    number="INV-2026-000001",
                    customer_id="acme",
                    period="2026-10",
                    purpose=f"resend-{n}",
                    recipient="billing@acme.example",
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    message_id=f"<INV-2026-000001.resend-{n}@example.ai>",
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
            for n in range(count)
        ]


def due_keys(ledger: Ledger, outbox: Outbox, now: dt.datetime) -> list:
    with ledger.engine.connect() as conn:
        return [row[outbox.key] for row in outbox.due(conn, now)]


def claim(ledger: Ledger, outbox: Outbox, key, now: dt.datetime) -> bool:
    with ledger.engine.begin() as conn:
        return outbox.claim(conn, key, now)


def stored(ledger: Ledger, outbox: Outbox, key) -> dict:
    with ledger.engine.connect() as conn:
        row = conn.execute(sa.select(outbox.table).where(outbox.table.c[outbox.key] == key)).one()
    return dict(row._mapping)


# ---------------------------------------------------------------- backoff (pure)


@OUTBOXES
def test_the_wait_after_each_failure_doubles_from_the_first_up_to_the_cap(outbox):
    waits = [outbox.backoff.after(n) for n in range(1, 40)]
    assert waits[0] == outbox.backoff.first
    assert all(
        later == 2 * earlier or later == outbox.backoff.cap
        for earlier, later in itertools.pairwise(waits)
    )
    assert waits[-1] == outbox.backoff.cap == dt.timedelta(hours=6)
    assert outbox.backoff.after(10**6) == outbox.backoff.cap  # failing for years: still the cap


def test_alerts_retry_after_30_seconds_and_emails_after_a_minute():
    assert [ALERT_WEBHOOKS.backoff.after(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]
    assert [INVOICE_EMAILS.backoff.after(n).total_seconds() for n in (1, 2, 3)] == [60, 120, 240]


# ---------------------------------------------------------------- leases


@OUTBOXES
def test_a_claimed_row_is_held_until_its_lease_expires_then_claimed_again(ledger, outbox):
    """A sender that died mid-send: nobody takes its row during the lease, anyone after it."""
    (key,) = add_rows(ledger, outbox, 1)
    assert claim(ledger, outbox, key, T0)  # ...and then the sender died
    during = T0 + outbox.lease - SECOND
    assert due_keys(ledger, outbox, during) == [] and not claim(ledger, outbox, key, during)
    after = T0 + outbox.lease + SECOND
    assert due_keys(ledger, outbox, after) == [key]
    assert claim(ledger, outbox, key, after)
    assert stored(ledger, outbox, key)["attempts"] == 2  # the lost attempt counts too


@OUTBOXES
def test_a_failed_attempt_is_due_again_after_its_backoff_and_a_sent_row_never(ledger, outbox):
    (key,) = add_rows(ledger, outbox, 1)
    assert claim(ledger, outbox, key, T0)
    with ledger.engine.begin() as conn:
        state = outbox.record_failure(conn, key, 1, "rejected: HTTP 5xx", T0)
    assert state == {"status": "pending", "next_attempt_at": T0 + outbox.backoff.first}
    retry_at = state["next_attempt_at"]
    assert due_keys(ledger, outbox, retry_at - SECOND) == []
    assert due_keys(ledger, outbox, retry_at) == [key]
    assert claim(ledger, outbox, key, retry_at)
    with ledger.engine.begin() as conn:
        outbox.record_sent(conn, key, retry_at)
    row = stored(ledger, outbox, key)
    assert (row["status"], row["attempts"], row["last_error"]) == (outbox.sent, 2, None)
    a_year_later = T0 + dt.timedelta(days=365)
    assert due_keys(ledger, outbox, a_year_later) == []
    assert not claim(ledger, outbox, key, a_year_later)


@OUTBOXES
def test_a_permanent_refusal_fails_the_row_for_good(ledger, outbox):
    (key,) = add_rows(ledger, outbox, 1)
    assert claim(ledger, outbox, key, T0)
    with ledger.engine.begin() as conn:
        outbox.record_failure(conn, key, 1, "refused: scheme 'file'", T0, permanent=True)
    assert stored(ledger, outbox, key)["status"] == outbox.failed
    assert due_keys(ledger, outbox, T0 + dt.timedelta(days=30)) == []


# ---------------------------------------------------------------- the attempt limit


def test_attempts_stop_at_the_limit_when_every_attempt_fails(ledger):
    (key,) = add_rows(ledger, INVOICE_EMAILS, 1)
    now = T0
    for attempt in range(1, INVOICE_EMAILS.max_attempts + 1):
        assert claim(ledger, INVOICE_EMAILS, key, now)
        with ledger.engine.begin() as conn:
            state = INVOICE_EMAILS.record_failure(conn, key, attempt, "451 try again later", now)
        last = attempt == INVOICE_EMAILS.max_attempts
        assert state["status"] == ("failed" if last else "pending")
        now = state["next_attempt_at"]
    row = stored(ledger, INVOICE_EMAILS, key)
    assert (row["status"], row["attempts"]) == ("failed", INVOICE_EMAILS.max_attempts)
    later = now + dt.timedelta(days=30)
    assert due_keys(ledger, INVOICE_EMAILS, later) == []
    assert not claim(ledger, INVOICE_EMAILS, key, later)


def test_attempts_stop_at_the_limit_when_every_sender_dies_mid_send(ledger):
    """Each claim counts; after the last allowed one the row is given up, never claimed again."""
    (key,) = add_rows(ledger, INVOICE_EMAILS, 1)
    now = T0
    for _ in range(INVOICE_EMAILS.max_attempts):
        assert claim(ledger, INVOICE_EMAILS, key, now)  # ...and then the sender died
        now += INVOICE_EMAILS.lease + SECOND
    assert not claim(ledger, INVOICE_EMAILS, key, now)
    with ledger.engine.connect() as conn:
        (row,) = INVOICE_EMAILS.due(conn, now)
    assert INVOICE_EMAILS.exhausted(row) and row["attempts"] == INVOICE_EMAILS.max_attempts
    with ledger.engine.begin() as conn:
        assert INVOICE_EMAILS.give_up(conn, key, now, "gave up: the last attempt never finished")
        assert not INVOICE_EMAILS.give_up(conn, key, now, "a second sender")  # once
    row = stored(ledger, INVOICE_EMAILS, key)
    assert (row["status"], row["attempts"]) == ("failed", INVOICE_EMAILS.max_attempts)
    assert row["last_error"] == "gave up: the last attempt never finished"


def test_alerts_have_no_attempt_limit_and_wait_the_cap_after_many_failures(ledger):
    """A receiver down for weeks: its alert stays pending, retried every 6 hours."""
    (key,) = add_rows(ledger, ALERT_WEBHOOKS, 1)
    retry_at = T0
    for attempt in range(1, 61):
        failed_at = retry_at
        assert claim(ledger, ALERT_WEBHOOKS, key, failed_at)
        with ledger.engine.begin() as conn:
            state = ALERT_WEBHOOKS.record_failure(conn, key, attempt, "unreachable", failed_at)
        assert state["status"] == "pending"
        retry_at = state["next_attempt_at"]
    assert retry_at - failed_at == dt.timedelta(hours=6)
    assert stored(ledger, ALERT_WEBHOOKS, key)["attempts"] == 60


# ---------------------------------------------------------------- concurrent senders (PostgreSQL)


def _backend_pid(conn) -> int:
    return conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()


def _wait_until_blocked(engine, pid: int) -> None:
    """Until backend ``pid`` waits for a lock (the second claimer queued behind the first)."""
    deadline = time.monotonic() + 60
    with engine.connect() as watcher:
        while time.monotonic() < deadline:
            waiting = watcher.execute(
                sa.text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid},
            ).scalar()
            if waiting == "Lock":
                return
            watcher.rollback()
            time.sleep(0.05)
    raise AssertionError(f"backend {pid} never waited for the first claimer's row lock")


@ON_POSTGRESQL
@OUTBOXES
@pytest.mark.parametrize("first_commits", [True, False], ids=["first_commits", "first_rolls_back"])
def test_a_second_claimer_waits_for_the_first_and_takes_the_row_only_if_it_let_go(
    ledger, outbox, first_commits
):
    """The second UPDATE queues behind the first one's row lock and re-checks the row: after a
    commit it finds the row held; after a rollback the row is still due and it takes it."""
    (key,) = add_rows(ledger, outbox, 1)
    results: queue.Queue = queue.Queue()
    pids: queue.Queue = queue.Queue()

    def second_claimer():
        with ledger.engine.begin() as conn:
            pids.put(_backend_pid(conn))
            results.put(outbox.claim(conn, key, T0 + SECOND))

    first = ledger.engine.connect()
    transaction = first.begin()
    try:
        assert outbox.claim(first, key, T0)
        thread = threading.Thread(target=second_claimer)
        thread.start()
        _wait_until_blocked(ledger.engine, pids.get(timeout=60))
        (transaction.commit if first_commits else transaction.rollback)()
    finally:
        first.close()
    thread.join(timeout=60)
    assert results.get(timeout=1) is not first_commits
    assert stored(ledger, outbox, key)["attempts"] == 1


@ON_POSTGRESQL
@OUTBOXES
def test_two_senders_claiming_at_once_never_take_the_same_row(ledger, outbox):
    keys = add_rows(ledger, outbox, 60)
    start = threading.Barrier(2)
    taken: dict[str, list] = {}

    def sender(name: str, order: list) -> None:
        mine = taken.setdefault(name, [])
        start.wait(timeout=60)
        for key in order:
            with ledger.engine.begin() as conn:
                if outbox.claim(conn, key, T0):
                    mine.append(key)

    # One walks the rows forwards, the other backwards: they meet in the middle.
    senders = [
        threading.Thread(target=sender, args=("a", keys)),
        threading.Thread(target=sender, args=("b", keys[::-1])),
    ]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(timeout=120)
    assert set(taken["a"]).isdisjoint(taken["b"])
    assert sorted(taken["a"] + taken["b"]) == sorted(keys)
    with ledger.engine.connect() as conn:
        attempts = conn.execute(sa.select(outbox.table.c.attempts)).scalars().all()
    assert attempts == [1] * len(keys)


# ---------------------------------------------------------------- one copy


PACKAGE = Path(billing_pipeline.__file__).parent
SHARED = PACKAGE / "ledger" / "outbox.py"
SCHEMA = (PACKAGE / "ledger" / "tables.py", PACKAGE / "ledger" / "migrations")
STATE_COLUMNS = {"attempts", "next_attempt_at", "lease_until"}


def outbox_rules(source: str) -> list[str]:
    """What in ``source`` makes outbox rules: a ``Backoff`` or ``Outbox``, a backoff function, a
    BACKOFF or LEASE constant computed (not an alias), or SQL on the state columns
    (``table.c.attempts``, ``table.c["next_attempt_at"]``, ...)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in {"Backoff", "Outbox"}:
                found.append(f"line {node.lineno}: {name}(...)")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if "backoff" in node.name.lower():
                found.append(f"line {node.lineno}: def {node.name}")
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            computed = not isinstance(node.value, ast.Name | ast.Attribute)
            for name in names:
                if computed and ("BACKOFF" in name.upper() or "LEASE" in name.upper()):
                    found.append(f"line {node.lineno}: {name} = ...")
        elif isinstance(node, ast.Attribute) and node.attr in STATE_COLUMNS:
            if isinstance(node.value, ast.Attribute) and node.value.attr == "c":
                found.append(f"line {node.lineno}: .c.{node.attr}")
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
            column = getattr(node.slice, "value", None)
            if node.value.attr == "c" and column in STATE_COLUMNS:
                found.append(f'line {node.lineno}: .c["{column}"]')
    return found


def test_only_the_ledger_outbox_makes_outbox_rules():
    """A second claim, lease or backoff (the two outboxes each had their own) fails here."""
    found = {
        str(path.relative_to(PACKAGE)): rules
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != SHARED and not any(path == s or s in path.parents for s in SCHEMA)
        if (rules := outbox_rules(path.read_text()))
    }
    assert found == {}, "claims, leases, attempts and backoff belong in ledger/outbox.py"


def test_the_rule_sees_each_kind_of_copy():
    copy = """
LEASE = dt.timedelta(minutes=5)
BACKOFF_BASE = dt.timedelta(seconds=30)
MAX_LEASE = OUTBOX.lease
def backoff(attempts): ...
policy = outbox.Backoff(first=a, cap=b)
update(t).values(attempts=t.c.attempts + 1).where(t.c["next_attempt_at"] <= now)
"""
    assert sorted(outbox_rules(copy)) == [
        "line 2: LEASE = ...",
        "line 3: BACKOFF_BASE = ...",
        "line 5: def backoff",
        "line 6: Backoff(...)",
        "line 7: .c.attempts",
        'line 7: .c["next_attempt_at"]',
    ]
    assert outbox_rules(SHARED.read_text())  # the one copy is seen
