"""Upgrading the ledger of an earlier release: every row kept, and the ledger works at head.

For each revision before head, on SQLite and PostgreSQL, a ledger is built by Alembic at that
revision and filled with what that release could write (drafts; from 0002 issued, void and
credited invoices and check results; from 0003 alerts and hard caps; from 0004 deliveries; from
0005 held records and waivers). ``Ledger.migrate()`` upgrades it; the same ledger without
``alembic_version`` (made by create_all before migrations existed) is stamped at exactly its
revision, never a guess, then upgraded. A ledger that matches no revision is refused untouched.

PostgreSQL runs in a throwaway schema on 127.0.0.1:5432; it is skipped only when unreachable and
CI is not "true".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import DBAPIError

from billing_pipeline.ledger.holds import holds
from billing_pipeline.ledger.ledger import MIGRATIONS_DIR, Ledger, LedgerError, canonical_json
from billing_pipeline.ledger.numbering import issue_drafts
from billing_pipeline.ledger.revisions import REVISIONS, schema_at
from billing_pipeline.ledger.tables import metadata
from billing_pipeline.money import exact, to_micros
from billing_pipeline_tests.support.postgres import drop_schema, postgres_ledger

AT = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)


def _config(conn=None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


def _chain() -> list[str]:
    """Every revision, oldest first."""
    return [
        s.revision for s in reversed(list(ScriptDirectory.from_config(_config()).walk_revisions()))
    ]


HEAD = _chain()[-1]
EARLIER = _chain()[:-1]  # 0001 .. head-1


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_ledger(request, tmp_path):
    """A ledger with no tables yet, on each engine."""
    if request.param == "sqlite":
        ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
        ledger.connect_args = {}  # what another process needs to open the same ledger
        yield ledger
        ledger.engine.dispose()
        return
    ledger, admin, schema = postgres_ledger()
    ledger.connect_args = {"options": f"-csearch_path={schema}"}
    try:
        yield ledger
    finally:
        drop_schema(ledger, admin, schema)


def _build_at(ledger: Ledger, revision: str) -> None:
    with ledger.engine.begin() as conn:
        command.upgrade(_config(conn), revision)


@pytest.fixture
def stamped(monkeypatch) -> list[str]:
    """The revisions ``Ledger.migrate()`` stamps (it stamps only a ledger without a version)."""
    revisions: list[str] = []
    real = command.stamp

    def stamp(config, revision, *args, **kwargs):
        revisions.append(revision)
        return real(config, revision, *args, **kwargs)

    monkeypatch.setattr(command, "stamp", stamp)
    return revisions


# ---------------------------------------------------------------- what an earlier release wrote


def _document(
    customer_id: str, period: str, usage: str, kind: str = "invoice", references=None
) -> dict:
    """A draft as month-end writes it: a usage line and the plan's base fee, 19% tax."""
    subtotal = exact(usage) + Decimal("500.00")
    tax = (subtotal * Decimal("0.19")).quantize(Decimal("0.01"))
    return {
        "number": None,
        "status": "draft",
        "customer_id": customer_id,
        "period": period,
        "kind": kind,
        "references": references,
        "currency": "USD",
        "lines": [
            {
                "charge_id": "gpt4o-output",
                "description": "GPT-4o output tokens",
                "quantity": 12500000,
                "unit": "tokens",
                "unit_price": None,
                "amount": usage,
            },
            {
                "charge_id": "base_fee",
                "description": "Enterprise subscription",
                "quantity": 1,
                "unit": "month",
                "unit_price": "500.00",
                "amount": "500.00",
            },
        ],
        "subtotal": str(subtotal),
        "tax_rate": "0.19",
        "tax": str(tax),
        "credits_applied": "0.00",
        "total": str(subtotal + tax),
    }


def _credit_note(number: str) -> dict:
    """A manual credit of 50.00 (before tax) against issued invoice ``number``."""
    return {
        **_document("globex", "2026-10", "0.00", kind="credit_note", references=number),
        "lines": [
            {
                "charge_id": "credit",
                "description": f"Credit against {number}: SLA breach",
                "quantity": 1,
                "unit": None,
                "unit_price": None,
                "amount": "-50.00",
            }
        ],
        "subtotal": "-50.00",
        "tax": "-9.50",
        "total": "-59.50",
    }


@dataclass
class Seeded:
    """What the earlier release wrote: the period's invoices as list_invoices shows them
    (customer, kind, status, number, total), and the next number of the INV-2026 series."""

    invoices: list[tuple] = field(default_factory=list)
    next_number: str = "INV-2026-000001"
    documents: dict[str, dict] = field(default_factory=dict)


class _Writer:
    """Writes rows as the release at the ledger's revision did, into the columns it has."""

    def __init__(self, conn):
        self.conn = conn
        reflected = sa.MetaData()
        reflected.reflect(conn)
        self.tables = reflected.tables

    def has(self, table: str, column: str | None = None) -> bool:
        return table in self.tables and (column is None or column in self.tables[table].c)

    def insert(self, table: str, **values):
        t = self.tables[table]
        row = {k: v for k, v in values.items() if k in t.c}
        return self.conn.execute(t.insert().values(**row)).inserted_primary_key[0]

    def update_invoice(self, invoice_id: int, **values) -> None:
        t = self.tables["invoices"]
        row = {k: v for k, v in values.items() if k in t.c}
        self.conn.execute(t.update().where(t.c.id == invoice_id).values(**row))

    def audit(self, invoice_id: int, action: str, detail: dict) -> int:
        return self.insert(
            "audit_log",
            invoice_id=invoice_id,
            at=AT,
            actor="month_end" if action.endswith("draft") else "finance",
            action=action,
            detail=json.dumps(detail, sort_keys=True),
        )

    def draft(self, doc: dict) -> int:
        invoice_id = self.insert(
            "invoices",
            customer_id=doc["customer_id"],
            period=doc["period"],
            kind=doc["kind"],
            status="draft",
            currency=doc["currency"],
            subtotal_micros=to_micros(exact(doc["subtotal"])),
            tax_micros=to_micros(exact(doc["tax"])),
            credits_micros=to_micros(exact(doc["credits_applied"])),
            total_micros=to_micros(exact(doc["total"])),
            document=canonical_json(doc),
            references_number=doc["references"],
            created_at=AT,
            updated_at=AT,
        )
        for position, line in enumerate(doc["lines"], start=1):
            self.insert(
                "invoice_lines",
                invoice_id=invoice_id,
                position=position,
                charge_id=line["charge_id"],
                description=line["description"],
                quantity=str(line["quantity"]),
                unit=line["unit"],
                unit_price=line["unit_price"],
                amount_micros=to_micros(exact(line["amount"])),
            )
        self.audit(invoice_id, "insert_draft", {"customer_id": doc["customer_id"]})
        return invoice_id

    def issue(self, invoice_id: int, doc: dict, sequence: int) -> str:
        """Number and freeze a draft: its audit row first (from 0006 the status change must point
        at it), then the status, then the PDF's hash once rendered."""
        number = f"INV-2026-{sequence:06d}"
        document = canonical_json({**doc, "number": number, "status": "issued"})
        audit_id = self.audit(invoice_id, "issue", {"number": number, "total": doc["total"]})
        self.update_invoice(
            invoice_id,
            status="issued",
            number=number,
            series="INV-2026",
            sequence=sequence,
            document=document,
            document_sha256=hashlib.sha256(document.encode()).hexdigest(),
            status_audit_id=audit_id,
            updated_at=AT,
        )
        self.update_invoice(invoice_id, pdf_sha256=f"{sequence:064x}")
        return number

    def void(self, invoice_id: int, reason: str) -> None:
        audit_id = self.audit(invoice_id, "void", {"reason": reason})
        self.update_invoice(invoice_id, status="void", status_audit_id=audit_id, updated_at=AT)


def _seed(conn) -> Seeded:
    """Fill every table the ledger has at its revision with what its release wrote."""
    w, seeded = _Writer(conn), Seeded()
    acme = _document("acme", "2026-10", "120.00")
    w.draft(acme)
    seeded.invoices.append(("acme", "invoice", "draft", None, "737.80"))
    seeded.documents["acme"] = acme
    if w.has("invoices", "series"):  # issuing arrived with 0002: a 0001 ledger holds drafts only
        globex = _document("globex", "2026-10", "1000.00")
        globex_id = w.draft(globex)
        number = w.issue(globex_id, globex, 1)
        initech_id = w.draft(_document("initech", "2026-10", "80.25"))
        w.issue(initech_id, _document("initech", "2026-10", "80.25"), 2)
        w.void(initech_id, "billed to the wrong entity")
        credit = _credit_note(number)
        credit_id = w.draft(credit)
        w.issue(credit_id, credit, 3)
        seeded.invoices += [
            ("globex", "credit_note", "issued", "INV-2026-000003", "-59.50"),
            ("globex", "invoice", "issued", "INV-2026-000001", "1785.00"),
            ("initech", "invoice", "void", "INV-2026-000002", "690.50"),
        ]
        seeded.next_number = "INV-2026-000004"
        for name, passed, blocking in (
            ("reconciliation_within_tolerance", True, True),
            ("usage_without_price", False, False),
        ):
            w.insert(
                "month_checks",
                period="2026-10",
                check_name=name,
                passed=passed,
                blocking=blocking,
                detail="" if passed else "3 records of model gpt-4o-mini-2026 have no price",
                recorded_at=AT,
            )
    if w.has("alert_outbox"):
        for alert_id, status, attempts, delivered_at, error in (
            ("limit:acme:2026-10:75", "delivered", 1, AT, None),
            ("spike:globex:2026-10-30", "pending", 3, None, "HTTP 503 from receiver"),
        ):
            w.insert(
                "alert_outbox",
                alert_id=alert_id,
                customer_id=alert_id.split(":")[1],
                kind="limit_threshold" if alert_id.startswith("limit") else "daily_spike",
                period="2026-10",
                payload=json.dumps({"alert_id": alert_id, "threshold": "75"}),
                url="https://hooks.example.com/billing",
                secret_env="ACME_WEBHOOK_SECRET",
                status=status,
                attempts=attempts,
                next_attempt_at=AT + dt.timedelta(minutes=5),
                lease_until=None,
                delivered_at=delivered_at,
                last_error=error,
                created_at=AT,
            )
        w.insert(
            "hard_caps",
            customer_id="acme",
            period="2026-10",
            as_of="2026-10-30",
            currency="USD",
            spend_micros=to_micros(Decimal("1512.40")),
            cap_micros=to_micros(Decimal("1500.00")),
            updated_at=AT,
        )
    if w.has("invoice_deliveries"):
        for invoice_id, number, purpose, status, response in (
            (globex_id, "INV-2026-000001", "invoice", "sent", "250 2.0.0 OK queued as 4F1"),
            (credit_id, "INV-2026-000003", "credit_note", "failed", None),
        ):
            w.insert(
                "invoice_deliveries",
                invoice_id=invoice_id,
                number=number,
                customer_id="globex",
                period="2026-10",
                purpose=purpose,
                recipient="ap@globex.example",
                status=status,
                attempts=1 if status == "sent" else 5,
                next_attempt_at=AT,
                message_id=f"<{number}.{purpose}@billing.example>",
                last_error=None if status == "sent" else "550 mailbox unavailable",
                server_response=response,
                sent_at=AT if status == "sent" else None,
                created_at=AT,
                updated_at=AT,
            )
    if w.has("held_records"):
        for origin, customer_id in (
            ("openai/usage_2026-10-03.jsonl:17", "initech"),
            ("aws/cur_2026-10.csv.gz", None),
        ):
            w.insert(
                "held_records",
                period="2026-10",
                origin=origin,
                source=origin.split("/")[0],
                reason="unknown_customer" if customer_id else "unreadable_file",
                customer_id=customer_id,
                message="record could carry money",
                recorded_at=AT,
            )
        w.insert(
            "waivers",
            period="2026-10",
            origin="aws/cur_2026-10.csv.gz",
            reason="AWS re-delivered the export; reconciled by hand",
            actor="finance",
            waived_at=AT,
        )
    return seeded


def _snapshot(conn) -> dict[str, list[dict]]:
    """Every row of every ledger table, by primary key."""
    reflected = sa.MetaData()
    reflected.reflect(conn, only=lambda name, _: name != "alembic_version")
    return {
        name: [
            dict(row)
            for row in conn.execute(sa.select(t).order_by(*t.primary_key.columns)).mappings()
        ]
        for name, t in reflected.tables.items()
    }


def _works_at_head(ledger: Ledger, seeded: Seeded) -> None:
    """The next month is drafted and issued, continuing the series; invoices issued before the
    upgrade stay frozen and can still be voided."""
    assert ledger.save_drafts("2026-11", [_document("acme", "2026-11", "95.10")])["inserted"] == 1
    ledger.record_checks("2026-11", [{"name": "reconciliation_within_tolerance", "passed": True}])
    issued = issue_drafts(
        ledger, "2026-11", prefix="INV", issue_date=dt.date(2026, 12, 1), payment_terms_days=14
    )
    assert [(i["customer_id"], i["number"]) for i in issued] == [("acme", seeded.next_number)]
    if seeded.next_number == "INV-2026-000001":
        return
    with pytest.raises(DBAPIError, match="immutable"), ledger.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE invoices SET total_micros = 1 WHERE number = 'INV-2026-000001'")
        )
    ledger.void("INV-2026-000001", "customer merged into globex-holdings")
    assert [
        r["status"] for r in ledger.list_invoices("2026-10") if r["number"] == "INV-2026-000001"
    ] == ["void"]


# ---------------------------------------------------------------- the upgrades


@pytest.mark.parametrize("version_table", ["with_alembic_version", "made_before_migrations"])
@pytest.mark.parametrize("revision", EARLIER)
def test_a_ledger_of_an_earlier_release_upgrades_to_head_with_nothing_lost(
    empty_ledger, revision, version_table, stamped
):
    ledger = empty_ledger
    _build_at(ledger, revision)
    with ledger.engine.begin() as conn:
        seeded = _seed(conn)
        before = _snapshot(conn)
        if version_table == "made_before_migrations":
            conn.execute(sa.text("DROP TABLE alembic_version"))
    assert set(before) == set(schema_at(revision))
    assert all(before.values()), "every table of the revision holds rows"

    ledger.migrate()

    assert stamped == ([revision] if version_table == "made_before_migrations" else [])
    with ledger.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        after = _snapshot(conn)
    for table, rows in before.items():
        kept = [{column: row[column] for column in rows[0]} for row in after[table]]
        assert kept == rows, f"{table}: rows changed by the upgrade"
        added = after[table][0].keys() - rows[0].keys()
        assert all(row[c] is None for row in after[table] for c in added), table
    summary = [
        (r["customer_id"], r["kind"], r["status"], r["number"], r["total"])
        for r in ledger.list_invoices("2026-10")
    ]
    assert summary == seeded.invoices
    assert ledger.get_document("acme", "2026-10") == seeded.documents["acme"]
    if "held_records" in before:  # the waived file stays waived; initech stays held
        assert [(h.origin, h.customer_id) for h in holds(ledger, "2026-10")] == [
            ("openai/usage_2026-10-03.jsonl:17", "initech")
        ]
    _works_at_head(ledger, seeded)


def test_a_ledger_made_at_head_without_a_version_is_stamped_at_head(empty_ledger, stamped):
    empty_ledger.create_all()
    empty_ledger.migrate()
    assert stamped == [HEAD]


def test_a_new_ledger_is_built_by_the_migrations_without_stamping(empty_ledger, stamped):
    empty_ledger.migrate()
    assert stamped == []
    with empty_ledger.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


# ---------------------------------------------------------------- refused, never stamped at a guess


@pytest.mark.parametrize(
    ("revision", "alteration", "message"),
    [
        (
            "0005_holds",
            "DROP TABLE waivers",
            "nearest is 0005_holds: missing table waivers; extra nothing",
        ),
        (
            "0004_delivery",
            "ALTER TABLE invoices ADD COLUMN po_number VARCHAR(40)",
            "nearest is 0004_delivery: missing nothing; extra invoices.po_number",
        ),
        (
            "0003_alerts",
            "ALTER TABLE alert_outbox DROP COLUMN lease_until",
            "nearest is 0003_alerts: missing alert_outbox.lease_until; extra nothing",
        ),
    ],
    ids=["partial", "column-added-by-hand", "column-dropped-by-hand"],
)
def test_a_ledger_matching_no_revision_is_refused_untouched(
    empty_ledger, stamped, revision, alteration, message
):
    _build_at(empty_ledger, revision)
    with empty_ledger.engine.begin() as conn:
        _seed(conn)
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(sa.text(alteration))
        before = _snapshot(conn)
    with pytest.raises(LedgerError, match="match no migration revision") as refused:
        empty_ledger.migrate()
    assert message in str(refused.value)
    assert stamped == []
    with empty_ledger.engine.connect() as conn:
        assert "alembic_version" not in sa.inspect(conn).get_table_names()
        assert _snapshot(conn) == before


def test_the_revision_table_follows_the_migration_chain_to_the_schema_in_code():
    assert [name for name, _ in REVISIONS] == _chain()
    assert schema_at(HEAD) == {t.name: frozenset(t.c.keys()) for t in metadata.sorted_tables}


def test_the_cli_names_what_a_refused_ledger_lacks_and_leaves_it_alone(tmp_path):
    from click.testing import CliRunner

    from billing_pipeline.cli import main

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    _build_at(ledger, "0005_holds")
    with ledger.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(sa.text("DROP TABLE waivers"))
    ledger.engine.dispose()
    result = CliRunner().invoke(
        main,
        [
            "waive",
            "--month",
            "2026-10",
            "--origin",
            "aws/cur_2026-10.csv.gz",
            "--reason",
            "re-delivered",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert "missing table waivers" in result.stderr
    with ledger.engine.connect() as conn:
        assert "alembic_version" not in sa.inspect(conn).get_table_names()


def _migrate_when_released(url: str, connect_args: dict, start, errors) -> None:
    """One worker process: wait for the others, then open (migrate) the ledger."""
    start.wait()
    try:
        Ledger(url, connect_args=connect_args).migrate()
    except Exception as exc:  # noqa: BLE001 - sent back to the test, whatever it is
        errors.put(repr(exc))


def test_workers_that_open_a_new_ledger_at_once_all_migrate_it(empty_ledger):
    """Steps on several worker processes open the ledger together; on a new PostgreSQL ledger each
    one's migration must wait for the first, not race it to create the version table and fail."""
    engine = empty_ledger.engine
    url = engine.url.render_as_string(hide_password=False)
    connect_args = empty_ledger.connect_args
    spawn = multiprocessing.get_context("spawn")
    workers = 4
    start, errors = spawn.Barrier(workers), spawn.Queue()
    processes = [
        spawn.Process(target=_migrate_when_released, args=(url, connect_args, start, errors))
        for _ in range(workers)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * workers
    assert [errors.get() for _ in range(errors.qsize())] == []
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == HEAD


def test_the_migrate_command_creates_a_new_ledger_and_is_a_no_op_the_second_time(tmp_path):
    from click.testing import CliRunner

    from billing_pipeline.cli import main

    for _ in range(2):
        done = CliRunner().invoke(main, ["migrate", "--out", str(tmp_path)])
        assert done.exit_code == 0, done.output
        assert "latest revision" in done.output
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == HEAD
    engine.dispose()
