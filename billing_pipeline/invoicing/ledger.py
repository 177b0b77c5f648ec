"""The invoice ledger: drafts, issued (immutable) and void invoices, their lines and an audit log.

SQLAlchemy 2.x Core on SQLite (default) or PostgreSQL, the same URL-driven code. Money is stored as
BigInteger micro-units (``money.to_micros``): no Numeric columns, so no float or decimal-SAWarning
path exists. ``metadata`` is the schema for Alembic; the guard triggers are attached to it as DDL
events (``create_all`` creates them; a migration must create them with ``TRIGGER_DDL``).

Rules kept by the database, not only by this module:
- one live (not void) invoice per (customer, period, kind): a partial UNIQUE index;
- an issued or void invoice's money, document, identity and lines never change, and it is never
  deleted; issued may only become void (triggers on both dialects);
- ``audit_log`` is append-only (triggers).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    DDL,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    select,
    text,
    true,
)
from sqlalchemy.engine import Connection, Engine

from billing_pipeline.money import exact, from_micros, round_money, to_micros

DEFAULT_URL = "sqlite:///billing_ledger.sqlite3"
KIND_INVOICE = "invoice"
STATUSES = ("draft", "issued", "void")

metadata = MetaData()

invoices = Table(
    "invoices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_id", String(100), nullable=False),
    Column("period", String(7), nullable=False),  # 'YYYY-MM'
    Column("kind", String(20), nullable=False, server_default=KIND_INVOICE),
    Column("status", String(10), nullable=False, server_default="draft"),
    Column("number", String(50), nullable=True, unique=True),  # assigned at issue only
    Column("currency", String(3), nullable=False),
    Column("subtotal_micros", BigInteger, nullable=False),
    Column("tax_micros", BigInteger, nullable=False),
    Column("credits_micros", BigInteger, nullable=False),
    Column("total_micros", BigInteger, nullable=False),
    Column("document", Text, nullable=False),  # canonical JSON (sorted keys): the JSON copy
    Column("pdf_sha256", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("status IN ('draft', 'issued', 'void')", name="ck_invoices_status"),
    CheckConstraint("period ~ '^[0-9]{4}-[0-9]{2}$'", name="ck_invoices_period").ddl_if(
        dialect="postgresql"
    ),
    CheckConstraint("period GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]'", name="ck_invoices_period").ddl_if(
        dialect="sqlite"
    ),
    CheckConstraint("status = 'draft' OR number IS NOT NULL", name="ck_invoices_issued_numbered"),
)
# "One period is billed once": unique among live invoices; a void one leaves room for its successor.
Index(
    "uq_invoices_live",
    invoices.c.customer_id,
    invoices.c.period,
    invoices.c.kind,
    unique=True,
    sqlite_where=invoices.c.status != "void",
    postgresql_where=invoices.c.status != "void",
)

invoice_lines = Table(
    "invoice_lines",
    metadata,
    Column("invoice_id", Integer, ForeignKey("invoices.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("charge_id", String(100), nullable=False),
    Column("description", Text, nullable=False),
    Column("quantity", String(40), nullable=False),  # decimal string, as in the document
    Column("unit", String(40), nullable=True),
    Column("unit_price", String(40), nullable=True),  # null for tiered lines
    Column("amount_micros", BigInteger, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("invoice_id", Integer, nullable=False),  # no FK: the log outlives deleted drafts
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("action", String(40), nullable=False),
    Column("detail", Text, nullable=False),  # JSON
)

_MONEY_DOC_COLUMNS = (
    "customer_id", "period", "kind", "number", "currency", "subtotal_micros", "tax_micros",
    "credits_micros", "total_micros", "document", "created_at",
)

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER IF NOT EXISTS invoices_issued_immutable
BEFORE UPDATE OF {", ".join(_MONEY_DOC_COLUMNS)} ON invoices
WHEN OLD.status <> 'draft'
BEGIN SELECT RAISE(ABORT, 'invoice is issued or void: immutable'); END""",
    """CREATE TRIGGER IF NOT EXISTS invoices_status_forward
BEFORE UPDATE OF status ON invoices
WHEN (OLD.status = 'issued' AND NEW.status NOT IN ('issued', 'void'))
  OR (OLD.status = 'void' AND NEW.status <> 'void')
BEGIN SELECT RAISE(ABORT, 'invoice status may only go draft -> issued -> void'); END""",
    """CREATE TRIGGER IF NOT EXISTS invoices_pdf_once
BEFORE UPDATE OF pdf_sha256 ON invoices
WHEN OLD.status <> 'draft' AND OLD.pdf_sha256 IS NOT NULL
  AND NEW.pdf_sha256 IS NOT OLD.pdf_sha256
BEGIN SELECT RAISE(ABORT, 'issued invoice PDF hash is immutable'); END""",
    """CREATE TRIGGER IF NOT EXISTS invoices_issued_undeletable
BEFORE DELETE ON invoices WHEN OLD.status <> 'draft'
BEGIN SELECT RAISE(ABORT, 'invoice is issued or void: cannot delete'); END""",
] + [
    f"""CREATE TRIGGER IF NOT EXISTS invoice_lines_frozen_{op.lower()}
BEFORE {op} ON invoice_lines
WHEN (SELECT status FROM invoices WHERE id = {row}.invoice_id) <> 'draft'
BEGIN SELECT RAISE(ABORT, 'lines of an issued or void invoice are immutable'); END"""
    for op, row in (("INSERT", "NEW"), ("UPDATE", "OLD"), ("DELETE", "OLD"))
] + [
    f"""CREATE TRIGGER IF NOT EXISTS audit_log_append_only_{op.lower()}
BEFORE {op} ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"""
    for op in ("UPDATE", "DELETE")
]

_PG_CHANGED = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in _MONEY_DOC_COLUMNS)
POSTGRES_TRIGGERS = [
    f"""CREATE OR REPLACE FUNCTION invoices_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF OLD.status <> 'draft' THEN
      RAISE EXCEPTION 'invoice % is %: cannot delete', OLD.id, OLD.status;
    END IF;
    RETURN OLD;
  END IF;
  IF OLD.status <> 'draft' AND ({_PG_CHANGED}) THEN
    RAISE EXCEPTION 'invoice % is %: immutable', OLD.id, OLD.status;
  END IF;
  IF (OLD.status = 'issued' AND NEW.status NOT IN ('issued', 'void'))
     OR (OLD.status = 'void' AND NEW.status <> 'void') THEN
    RAISE EXCEPTION 'invoice % status may only go draft -> issued -> void', OLD.id;
  END IF;
  IF OLD.status <> 'draft' AND OLD.pdf_sha256 IS NOT NULL
     AND NEW.pdf_sha256 IS DISTINCT FROM OLD.pdf_sha256 THEN
    RAISE EXCEPTION 'invoice % PDF hash is immutable', OLD.id;
  END IF;
  RETURN NEW;
END $$""",
    "DROP TRIGGER IF EXISTS invoices_guard ON invoices",
    """CREATE TRIGGER invoices_guard BEFORE UPDATE OR DELETE ON invoices
FOR EACH ROW EXECUTE FUNCTION invoices_guard()""",
    """CREATE OR REPLACE FUNCTION invoice_lines_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE parent_status text;
BEGIN
  SELECT status INTO parent_status FROM invoices
   WHERE id = CASE WHEN TG_OP = 'INSERT' THEN NEW.invoice_id ELSE OLD.invoice_id END;
  IF parent_status <> 'draft' THEN
    RAISE EXCEPTION 'lines of an issued or void invoice are immutable';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$""",
    "DROP TRIGGER IF EXISTS invoice_lines_guard ON invoice_lines",
    """CREATE TRIGGER invoice_lines_guard BEFORE INSERT OR UPDATE OR DELETE ON invoice_lines
FOR EACH ROW EXECUTE FUNCTION invoice_lines_guard()""",
    """CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$""",
    "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
    """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
]
TRIGGER_DDL = {"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRES_TRIGGERS}

for _dialect, _statements in TRIGGER_DDL.items():
    for _statement in _statements:  # DDL() applies %-formatting: escape plpgsql's "%"
        event.listen(metadata, "after_create",
                     DDL(_statement.replace("%", "%%")).execute_if(dialect=_dialect))


# ---------------------------------------------------------------- helpers


def _reject_floats(value: Any, path: str = "document") -> None:
    if isinstance(value, float):
        raise TypeError(f"{path} is a float ({value!r}): money and quantities must be strings/ints")
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_floats(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _reject_floats(item, f"{path}[{i}]")


def canonical_json(doc: dict) -> str:
    _reject_floats(doc)
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _money_text(micros: int, currency: str) -> str:
    """Micro-units back to a decimal string at the currency's precision (more only if stored)."""
    amount = from_micros(micros)
    rounded = round_money(amount, currency)
    return str(rounded if rounded == amount else amount.normalize())


def _micros(value: str | int | Decimal) -> int:
    return to_micros(exact(value))


def _now() -> datetime:
    return datetime.now(UTC)


class Ledger:
    """``Ledger("sqlite:///ledger.db")`` or ``Ledger("postgresql+psycopg2://...")``."""

    def __init__(self, url: str = DEFAULT_URL, **engine_kwargs: Any):
        self.engine: Engine = create_engine(url, **engine_kwargs)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    def create_all(self) -> None:
        metadata.create_all(self.engine)

    # ------------------------------------------------------------ drafts

    def save_drafts(self, period: str, documents: list[dict], actor: str = "month_end") -> dict:
        """Make the period's drafts equal ``documents``, in one transaction; idempotent.

        Issued/void invoices are never touched (``skipped_issued``). A draft whose document is
        unchanged is left alone (``unchanged``: no write, no audit row, same ``updated_at``).
        """
        counts = {"inserted": 0, "replaced": 0, "unchanged": 0, "skipped_issued": 0, "deleted": 0}
        seen: set[str] = set()
        with self.engine.begin() as conn:
            self._lock_period(conn, period)
            for doc in documents:
                customer_id = doc["customer_id"]
                if doc["period"] != period:
                    raise ValueError(f"{customer_id}: document period {doc['period']} != {period}")
                if doc.get("status") != "draft" or doc.get("number") is not None:
                    raise ValueError(f"{customer_id}: only unnumbered drafts can be saved")
                if customer_id in seen:
                    raise ValueError(f"{customer_id}: two documents for {period}")
                seen.add(customer_id)
                counts[self._save_one(conn, doc, actor)] += 1
            stale = conn.execute(
                select(invoices.c.id, invoices.c.customer_id).where(
                    invoices.c.period == period,
                    invoices.c.kind == KIND_INVOICE,
                    invoices.c.status == "draft",
                    invoices.c.customer_id.not_in(seen) if seen else true(),
                )
            ).all()
            for invoice_id, customer_id in stale:
                conn.execute(invoice_lines.delete().where(invoice_lines.c.invoice_id == invoice_id))
                conn.execute(invoices.delete().where(invoices.c.id == invoice_id))
                self._audit(conn, invoice_id, actor, "delete_draft",
                            {"customer_id": customer_id, "period": period})
                counts["deleted"] += 1
        return counts

    def _save_one(self, conn: Connection, doc: dict, actor: str) -> str:
        document = canonical_json(doc)
        values = {
            "customer_id": doc["customer_id"],
            "period": doc["period"],
            "kind": KIND_INVOICE,
            "status": "draft",
            "currency": doc["currency"],
            "subtotal_micros": _micros(doc["subtotal"]),
            "tax_micros": _micros(doc["tax"]),
            "credits_micros": _micros(doc.get("credits_applied") or "0"),
            "total_micros": _micros(doc["total"]),
            "document": document,
        }
        lines = [
            {
                "position": i,
                "charge_id": line["charge_id"],
                "description": line["description"],
                "quantity": str(line["quantity"]),
                "unit": line.get("unit"),
                "unit_price": None if line.get("unit_price") is None else str(line["unit_price"]),
                "amount_micros": _micros(line["amount"]),
            }
            for i, line in enumerate(doc["lines"], start=1)
        ]
        existing = conn.execute(
            select(invoices.c.id, invoices.c.status, invoices.c.document, invoices.c.total_micros)
            .where(
                invoices.c.customer_id == doc["customer_id"],
                invoices.c.period == doc["period"],
                invoices.c.kind == KIND_INVOICE,
                invoices.c.status != "void",
            )
            .with_for_update()
        ).first()
        now = _now()
        if existing is not None and existing.status != "draft":
            return "skipped_issued"
        if existing is not None and existing.document == document:
            return "unchanged"
        if existing is not None:
            invoice_id = existing.id
            conn.execute(invoices.update().where(invoices.c.id == invoice_id)
                         .values(**values, updated_at=now, pdf_sha256=None))
            conn.execute(invoice_lines.delete().where(invoice_lines.c.invoice_id == invoice_id))
            action, detail = "replace_draft", {
                "total_before": _money_text(existing.total_micros, doc["currency"]),
                "total": doc["total"],
            }
        else:
            invoice_id = conn.execute(
                invoices.insert().values(**values, created_at=now, updated_at=now)
                .returning(invoices.c.id)
            ).scalar_one()
            action, detail = "insert_draft", {"total": doc["total"]}
        if lines:
            conn.execute(invoice_lines.insert(), [{**line, "invoice_id": invoice_id} for line in lines])
        self._audit(conn, invoice_id, actor, action,
                    {"customer_id": doc["customer_id"], "period": doc["period"], **detail})
        return "replaced" if action == "replace_draft" else "inserted"

    def _lock_period(self, conn: Connection, period: str) -> None:
        """Serialize writers of one period (PostgreSQL); SQLite's write lock does this already."""
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                         {"key": f"billing_pipeline.ledger:{period}"})

    @staticmethod
    def _audit(conn: Connection, invoice_id: int, actor: str, action: str, detail: dict) -> None:
        conn.execute(audit_log.insert().values(
            invoice_id=invoice_id, at=_now(), actor=actor, action=action,
            detail=json.dumps(detail, sort_keys=True),
        ))

    # ------------------------------------------------------------ reads

    def list_invoices(self, period: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(invoices).where(invoices.c.period == period)
                .order_by(invoices.c.customer_id, invoices.c.kind, invoices.c.id)
            ).mappings().all()
        return [
            {
                "id": row["id"],
                "customer_id": row["customer_id"],
                "period": row["period"],
                "kind": row["kind"],
                "status": row["status"],
                "number": row["number"],
                "currency": row["currency"],
                "subtotal": _money_text(row["subtotal_micros"], row["currency"]),
                "tax": _money_text(row["tax_micros"], row["currency"]),
                "credits_applied": _money_text(row["credits_micros"], row["currency"]),
                "total": _money_text(row["total_micros"], row["currency"]),
                "pdf_sha256": row["pdf_sha256"],
                "created_at": row["created_at"],
                "updated_at": row["updated_at"],
            }
            for row in rows
        ]

    def get_document(self, customer_id: str, period: str) -> dict:
        """The live invoice's document (the JSON copy); KeyError if there is none."""
        with self.engine.connect() as conn:
            document = conn.execute(
                select(invoices.c.document).where(
                    invoices.c.customer_id == customer_id,
                    invoices.c.period == period,
                    invoices.c.kind == KIND_INVOICE,
                    invoices.c.status != "void",
                )
            ).scalar_one_or_none()
        if document is None:
            raise KeyError(f"no invoice for {customer_id} in {period}")
        return json.loads(document, parse_float=Decimal)

    def audit_entries(self, invoice_id: int | None = None) -> list[dict]:
        query = select(audit_log).order_by(audit_log.c.id)
        if invoice_id is not None:
            query = query.where(audit_log.c.invoice_id == invoice_id)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def count_lines(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(invoice_lines)).scalar_one()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
