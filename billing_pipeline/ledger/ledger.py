"""The invoice ledger: drafts, issued (immutable) and void invoices, corrections, an audit log.

SQLAlchemy 2.x Core on SQLite (default) or PostgreSQL, the same URL-driven code. Money is stored as
BigInteger micro-units (``money.to_micros``): no Numeric columns, so no float or decimal-SAWarning
path exists. The schema and its guard triggers live in ``schema.py``; ``migrate()`` brings a
database to it with Alembic (``migrations/``). Numbers are assigned in ``numbering.py``.

Writers of one period are serialized: PostgreSQL takes an advisory transaction lock per period;
on SQLite every transaction starts with ``BEGIN IMMEDIATE`` (the write lock up front, so two
writers never interleave read-then-write).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import create_engine, delete, event, func, inspect, select, text, true
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from billing_pipeline import shipped
from billing_pipeline.documents.credit_notes import (
    ORIGIN_LATE_USAGE,
    credits_drawn,
    late_usage_correction,
    manual_credit_note,
)
from billing_pipeline.documents.kinds import KIND_INVOICE
from billing_pipeline.ledger.revisions import UnknownLedgerSchema, existing_revision
from billing_pipeline.ledger.tables import (
    audit_log,
    invoice_lines,
    invoices,
    metadata,
    month_checks,
)
from billing_pipeline.money import amount_text, exact, from_micros, to_micros

DEFAULT_URL = "sqlite:///billing_ledger.sqlite3"
MIGRATIONS_DIR = shipped.migrations_dir()  # importlib.resources: the same folder in a wheel
COUNT_KEYS = ("inserted", "replaced", "unchanged", "skipped_issued", "deleted", "corrections")


class LedgerError(ValueError):
    """A refused ledger operation (unknown number, wrong status): the message says which."""


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


class _FloatFound(Exception):
    pass


def _refuse_float(text_: str):
    raise _FloatFound(text_)


def canonical_json(doc: dict) -> str:
    """The document as stored: sorted keys, no floats anywhere (money and quantities are strings
    and ints). The float check reads the encoded text back with the C parser (a float is the only
    number written with a point or an exponent); only a document that has one is walked in Python,
    to name where it is (a month's 10^4 documents hold ~10^6 chart points: walking them all cost
    more than encoding them)."""
    try:
        text_ = json.dumps(
            doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
        json.loads(text_, parse_float=_refuse_float)
    except (ValueError, _FloatFound):  # NaN/inf refused by dumps, or a float read back
        _reject_floats(doc)  # raises TypeError naming the path
        raise
    return text_


def load_document(text_: str) -> dict:
    return json.loads(text_, parse_float=Decimal)


def _micros(value: str | int | Decimal) -> int:
    return to_micros(exact(value))


def _now() -> datetime:
    return datetime.now(UTC)


def lock_period(conn: Connection, period: str) -> None:
    """Serialize writers of one period (PostgreSQL); SQLite's BEGIN IMMEDIATE does this already."""
    _transaction_lock(conn, period)


def _transaction_lock(conn: Connection, name: str) -> None:
    """A PostgreSQL advisory lock held until the transaction ends (a no-op on SQLite, whose
    writers already queue)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"billing_pipeline.ledger:{name}"},
        )


def _audit_row(
    invoice_id: int, actor: str, action: str, detail: dict, at: datetime | None = None
) -> dict:
    return {
        "invoice_id": invoice_id,
        "at": at or _now(),
        "actor": actor,
        "action": action,
        "detail": json.dumps(detail, sort_keys=True),
    }


def audit(conn: Connection, invoice_id: int, actor: str, action: str, detail: dict) -> int:
    """Append an audit entry; returns its id (a status change must point at it: schema.py)."""
    return conn.execute(
        audit_log.insert()
        .values(**_audit_row(invoice_id, actor, action, detail))
        .returning(audit_log.c.id)
    ).scalar_one()


def _draft_detail(doc: dict, kind: str) -> dict:
    """What the audit log records of a written draft."""
    return {
        "customer_id": doc["customer_id"],
        "period": doc["period"],
        "kind": kind,
        "total": doc["total"],
        "references": doc.get("references"),
    }


def _row_values(doc: dict) -> dict:
    return {
        "customer_id": doc["customer_id"],
        "period": doc["period"],
        "kind": doc.get("kind", KIND_INVOICE),
        "status": "draft",
        "currency": doc["currency"],
        "subtotal_micros": _micros(doc["subtotal"]),
        "tax_micros": _micros(doc["tax"]),
        "credits_micros": _micros(doc.get("credits_applied") or "0"),
        "total_micros": _micros(doc["total"]),
        "document": canonical_json(doc),
        "references_number": doc.get("references"),
    }


def _line_rows(doc: dict, invoice_id: int) -> list[dict]:
    return [
        {
            "invoice_id": invoice_id,
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


def write_draft(conn: Connection, doc: dict, actor: str, existing_id: int | None = None) -> int:
    """Insert a draft, or replace draft ``existing_id`` (lines included); audited."""
    values, now = _row_values(doc), _now()
    if existing_id is None:
        invoice_id = conn.execute(
            invoices.insert()
            .values(**values, created_at=now, updated_at=now)
            .returning(invoices.c.id)
        ).scalar_one()
    else:
        invoice_id = existing_id
        conn.execute(
            invoices.update()
            .where(invoices.c.id == invoice_id)
            .values(**values, updated_at=now, pdf_sha256=None)
        )
        conn.execute(invoice_lines.delete().where(invoice_lines.c.invoice_id == invoice_id))
    if doc["lines"]:
        conn.execute(invoice_lines.insert(), _line_rows(doc, invoice_id))
    audit(
        conn,
        invoice_id,
        actor,
        "insert_draft" if existing_id is None else "replace_draft",
        _draft_detail(doc, values["kind"]),
    )
    return invoice_id


def insert_drafts(conn: Connection, docs: list[dict], actor: str) -> list[int]:
    """``write_draft`` for many new drafts at once: one multi-row INSERT ... RETURNING for the
    invoices (ids in the documents' order), one for all their lines, one for their audit rows."""
    if not docs:
        return []
    now = _now()
    values = [{**_row_values(doc), "created_at": now, "updated_at": now} for doc in docs]
    ids = list(
        conn.execute(
            invoices.insert().returning(invoices.c.id, sort_by_parameter_order=True), values
        ).scalars()
    )
    lines = [
        row
        for doc, invoice_id in zip(docs, ids, strict=True)
        for row in _line_rows(doc, invoice_id)
    ]
    if lines:
        conn.execute(invoice_lines.insert(), lines)
    conn.execute(
        audit_log.insert(),
        [
            _audit_row(invoice_id, actor, "insert_draft", _draft_detail(doc, row["kind"]), now)
            for doc, invoice_id, row in zip(docs, ids, values, strict=True)
        ],
    )
    return ids


def _delete_draft(conn: Connection, invoice_id: int, actor: str, detail: dict) -> None:
    conn.execute(invoice_lines.delete().where(invoice_lines.c.invoice_id == invoice_id))
    conn.execute(invoices.delete().where(invoices.c.id == invoice_id))
    audit(conn, invoice_id, actor, "delete_draft", detail)


class Ledger:
    """``Ledger("sqlite:///ledger.db")`` or ``Ledger("postgresql+psycopg2://...")``."""

    def __init__(self, url: str = DEFAULT_URL, **engine_kwargs: Any):
        self.engine: Engine = create_engine(url, **engine_kwargs)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)

    @staticmethod
    def check_url(url: str) -> None:
        """Fail fast, before any month-end work, on a ledger URL that cannot be used: an unknown
        scheme, a driver that is not installed, a server that does not answer. Raises LedgerError
        with one line a person can act on (the password, if any, is not repeated)."""
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError) as exc:
            raise LedgerError(
                f"--database-url: not a usable ledger URL ({type(exc).__name__}: {exc})"
            ) from None
        if parsed.get_backend_name() not in ("sqlite", "postgresql"):
            raise LedgerError(
                f"--database-url: the ledger supports sqlite and postgresql, not {parsed.get_backend_name()}"
            )
        try:
            engine = create_engine(parsed)
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise LedgerError(
                f"--database-url: not a usable ledger URL ({type(exc).__name__}: {exc})"
            ) from None
        except ImportError as exc:
            raise LedgerError(
                f"--database-url: the driver for {parsed.drivername!r} is not installed ({exc})"
            ) from None
        try:
            with engine.connect():
                pass
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:300]
            raise LedgerError(
                f"--database-url: cannot connect to {parsed.render_as_string(hide_password=True)}: "
                f"{reason}"
            ) from None
        finally:
            engine.dispose()

    def create_all(self) -> None:
        """Create the current schema directly (throwaway ledgers); real ledgers use migrate()."""
        metadata.create_all(self.engine)

    def migrate(self) -> None:
        """``alembic upgrade head``. A ledger made by create_all (before migrations existed, or
        by an older release) is adopted: stamped at the revision its tables and columns match
        exactly (``revisions.py``), then upgraded; one that matches none raises LedgerError."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as conn:
            # Steps on several workers open the ledger at once: without the lock two of them both
            # create alembic_version on a new PostgreSQL ledger and one fails the month-end.
            _transaction_lock(conn, "migrate")
            config.attributes["connection"] = conn
            if "alembic_version" not in inspect(conn).get_table_names():
                try:
                    revision = existing_revision(conn)
                except UnknownLedgerSchema as exc:
                    raise LedgerError(str(exc)) from None
                if revision is not None:
                    command.stamp(config, revision)
            command.upgrade(config, "head")

    # ------------------------------------------------------------ drafts

    def save_drafts(self, period: str, documents: list[dict], actor: str = "month_end") -> dict:
        """Make the period's drafts equal ``documents``, in one transaction; idempotent.

        Issued/void invoices are never touched (``skipped_issued``). When the fresh document of an
        issued invoice differs from what was billed, a correction draft (credit note or
        adjustment) referencing it is written or refreshed (``corrections``). A draft whose
        document is unchanged is left alone (no write, no audit row, same ``updated_at``).
        """
        counts = dict.fromkeys(COUNT_KEYS, 0)
        seen: set[str] = set()
        with self.engine.begin() as conn:
            lock_period(conn, period)
            # The period's invoices in one query, not one per customer (10^4 customers a month).
            current: dict[str, Any] = {}
            for row in conn.execute(
                select(
                    invoices.c.id, invoices.c.customer_id, invoices.c.status, invoices.c.document
                )
                .where(
                    invoices.c.period == period,
                    invoices.c.kind == KIND_INVOICE,
                    invoices.c.status != "void",
                )
                .order_by(invoices.c.id)
                .with_for_update()
            ):
                current.setdefault(row.customer_id, row)
            new: list[dict] = []
            for doc in documents:
                customer_id = doc["customer_id"]
                if doc["period"] != period:
                    raise ValueError(f"{customer_id}: document period {doc['period']} != {period}")
                if doc.get("status") != "draft" or doc.get("number") is not None:
                    raise ValueError(f"{customer_id}: only unnumbered drafts can be saved")
                if customer_id in seen:
                    raise ValueError(f"{customer_id}: two documents for {period}")
                seen.add(customer_id)
                if customer_id not in current:
                    new.append(doc)
                    continue
                for outcome in self._save_one(conn, doc, actor, current[customer_id]):
                    counts[outcome] += 1
            insert_drafts(conn, new, actor)
            counts["inserted"] += len(new)
            stale = conn.execute(
                select(invoices.c.id, invoices.c.customer_id).where(
                    invoices.c.period == period,
                    invoices.c.kind == KIND_INVOICE,
                    invoices.c.status == "draft",
                    invoices.c.customer_id.not_in(seen) if seen else true(),
                )
            ).all()
            for invoice_id, customer_id in stale:
                _delete_draft(
                    conn, invoice_id, actor, {"customer_id": customer_id, "period": period}
                )
                counts["deleted"] += 1
        return counts

    def _save_one(self, conn: Connection, doc: dict, actor: str, existing) -> list[str]:
        """``doc`` against the customer's current invoice of the period (id, status, document)."""
        if existing.status != "draft":
            return [
                "skipped_issued",
                *self._refresh_correction(conn, load_document(existing.document), doc, actor),
            ]
        if existing.document == canonical_json(doc):
            return ["unchanged"]
        write_draft(conn, doc, actor, existing.id)
        return ["replaced"]

    def _refresh_correction(
        self, conn: Connection, original: dict, fresh: dict, actor: str
    ) -> list[str]:
        """Late usage after issue: keep one open late-usage correction draft equal to the
        difference between ``fresh`` and what was billed (original + issued corrections)."""
        rows = conn.execute(
            select(invoices.c.id, invoices.c.status, invoices.c.document)
            .where(
                invoices.c.references_number == original["number"],
                invoices.c.status != "void",
            )
            .order_by(invoices.c.id)
        ).all()
        late = [(r, load_document(r.document)) for r in rows]
        late = [(r, d) for r, d in late if d.get("origin") == ORIGIN_LATE_USAGE]
        billed = [d for r, d in late if r.status == "issued"]
        open_drafts = [r for r, _ in late if r.status == "draft"]
        # Credits: a correction draws only what no other live document of the customer drew.
        elsewhere = (
            self._credits_drawn_elsewhere(conn, original) if credits_drawn([fresh]) else None
        )
        correction = late_usage_correction(original, billed, fresh, elsewhere)
        keep = open_drafts[0] if open_drafts and correction is not None else None
        for row in open_drafts:
            if row is not keep:
                _delete_draft(
                    conn,
                    row.id,
                    actor,
                    {
                        "customer_id": fresh["customer_id"],
                        "period": fresh["period"],
                        "superseded": True,
                    },
                )
        if correction is None or (keep is not None and keep.document == canonical_json(correction)):
            return []
        write_draft(conn, correction, actor, keep.id if keep is not None else None)
        return ["corrections"]

    @staticmethod
    def _credits_drawn_elsewhere(conn: Connection, original: dict) -> dict[int, Decimal]:
        """What the customer's live documents other than ``original`` and its corrections drew
        from each prepaid credit grant (every period, drafts included: never over-draw)."""
        number = original["number"]
        rows = conn.execute(
            select(invoices.c.document).where(
                invoices.c.customer_id == original["customer_id"],
                invoices.c.status != "void",
                invoices.c.number.is_distinct_from(number),
                invoices.c.references_number.is_distinct_from(number),
            )
        ).scalars()
        return credits_drawn([load_document(document) for document in rows])

    # ------------------------------------------------------------ checks

    def record_checks(self, period: str, results: list[dict]) -> None:
        """Replace the period's check results with ``results`` (name, passed, blocking, detail)."""
        now = _now()
        with self.engine.begin() as conn:
            lock_period(conn, period)
            conn.execute(delete(month_checks).where(month_checks.c.period == period))
            if results:
                conn.execute(
                    month_checks.insert(),
                    [
                        {
                            "period": period,
                            "check_name": r["name"],
                            "passed": bool(r["passed"]),
                            "blocking": bool(r.get("blocking", True)),
                            "detail": str(r.get("detail", "")),
                            "recorded_at": now,
                        }
                        for r in results
                    ],
                )

    @staticmethod
    def failed_blocking_checks(conn: Connection, period: str) -> list[str]:
        return list(
            conn.execute(
                select(month_checks.c.check_name)
                .where(
                    month_checks.c.period == period,
                    month_checks.c.blocking == true(),
                    month_checks.c.passed == False,  # noqa: E712 - SQL comparison
                )
                .order_by(month_checks.c.check_name)
            ).scalars()
        )

    # ------------------------------------------------------------ corrections

    def void(self, number: str, reason: str, actor: str = "cli") -> dict:
        """Void an issued invoice (kept as a paper trail; its slot opens for a successor)."""
        if not reason.strip():
            raise LedgerError("voiding needs a reason (it goes into the audit log)")
        with self.engine.begin() as conn:
            row = self._by_number(conn, number)
            lock_period(conn, row.period)
            if row.status != "issued":
                raise LedgerError(f"{number} is {row.status}: only issued invoices can be voided")
            # The audit row first: the database refuses a status change that does not point at it.
            audit_id = audit(conn, row.id, actor, "void", {"number": number, "reason": reason})
            conn.execute(
                invoices.update()
                .where(invoices.c.id == row.id)
                .values(status="void", status_audit_id=audit_id, updated_at=_now())
            )
        return {"number": number, "customer_id": row.customer_id, "period": row.period}

    def add_credit_note(self, number: str, amount: str, reason: str, actor: str = "cli") -> dict:
        """A draft credit note of ``amount`` (before tax) against issued invoice ``number``."""
        with self.engine.begin() as conn:
            row = self._by_number(conn, number)
            lock_period(conn, row.period)
            if row.status != "issued":
                raise LedgerError(
                    f"{number} is {row.status}: credit notes reference issued invoices"
                )
            doc = manual_credit_note(load_document(row.document), amount, reason)
            invoice_id = write_draft(conn, doc, actor)
        return {"id": invoice_id, **{k: doc[k] for k in ("customer_id", "period", "kind", "total")}}

    @staticmethod
    def _by_number(conn: Connection, number: str):
        row = conn.execute(select(invoices).where(invoices.c.number == number)).first()
        if row is None:
            raise LedgerError(f"no invoice numbered {number}")
        return row

    # ------------------------------------------------------------ reads

    def list_invoices(self, period: str) -> list[dict]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(invoices)
                    .where(invoices.c.period == period)
                    .order_by(invoices.c.customer_id, invoices.c.kind, invoices.c.id)
                )
                .mappings()
                .all()
            )
        return [
            {
                **{
                    k: row[k]
                    for k in (
                        "id",
                        "customer_id",
                        "period",
                        "kind",
                        "status",
                        "number",
                        "currency",
                        "pdf_sha256",
                        "created_at",
                        "updated_at",
                    )
                },
                "references": row["references_number"],
                "subtotal": amount_text(
                    from_micros(row["subtotal_micros"]), row["currency"], lossless=True
                ),
                "tax": amount_text(from_micros(row["tax_micros"]), row["currency"], lossless=True),
                "credits_applied": amount_text(
                    from_micros(row["credits_micros"]), row["currency"], lossless=True
                ),
                "total": amount_text(
                    from_micros(row["total_micros"]), row["currency"], lossless=True
                ),
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
        return load_document(document)

    def credits_used(self, before_period: str) -> dict[str, dict[int, Decimal]]:
        """Per customer, what the invoices of earlier periods and their corrections drew from each
        prepaid credit grant (grant index -> amount; a credit note's give-back counts negative),
        read from each stored document's ``credits[].applied``; void documents drew nothing.
        Month-end passes this to ``build_documents`` so a grant is never drawn twice; re-running
        a month does not count its own draft."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(invoices.c.customer_id, invoices.c.document)
                .where(
                    invoices.c.period < before_period,
                    invoices.c.status != "void",
                    (invoices.c.credits_micros != 0) | (invoices.c.kind != KIND_INVOICE),
                )
                .order_by(invoices.c.period, invoices.c.id)
            ).all()
        used: dict[str, dict[int, Decimal]] = {}
        for customer_id, document in rows:
            for draw in load_document(document).get("credits", []):
                applied = exact(draw["applied"])
                if applied:
                    grants = used.setdefault(customer_id, {})
                    grants[draw["grant"]] = grants.get(draw["grant"], Decimal(0)) + applied
        return used

    def documents(
        self, period: str, statuses: tuple[str, ...] = ("issued",), customer_id: str | None = None
    ) -> list[tuple[int, str | None, dict]]:
        """(id, pdf_sha256, document) of the period's invoices and corrections, by number."""
        query = select(invoices.c.id, invoices.c.pdf_sha256, invoices.c.document).where(
            invoices.c.period == period, invoices.c.status.in_(statuses)
        )
        if customer_id is not None:
            query = query.where(invoices.c.customer_id == customer_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(invoices.c.sequence, invoices.c.id)).all()
        return [(r.id, r.pdf_sha256, load_document(r.document)) for r in rows]

    def issued_for_rendering(self, period: str, customer_id: str | None = None) -> list:
        """The period's issued documents with what the render check compares: rows of id,
        pdf_sha256, document_sha256 (NULL if issued before revision 0006) and document (text)."""
        query = select(
            invoices.c.id,
            invoices.c.customer_id,
            invoices.c.number,
            invoices.c.pdf_sha256,
            invoices.c.document_sha256,
            invoices.c.document,
        ).where(invoices.c.period == period, invoices.c.status == "issued")
        if customer_id is not None:
            query = query.where(invoices.c.customer_id == customer_id)
        with self.engine.connect() as conn:
            return conn.execute(query.order_by(invoices.c.sequence, invoices.c.id)).all()

    def record_render_failure(self, invoice_id: int, detail: dict) -> None:
        """An issued invoice whose PDF could not be rendered (or was refused): in the audit log,
        so the failure outlives the run that met it."""
        with self.engine.begin() as conn:
            audit(conn, invoice_id, "issuing", "render_failed", detail)

    def store_pdf_sha256(self, invoice_id: int, sha256: str) -> None:
        """Record an issued PDF's hash once (the database refuses to change it afterwards)."""
        with self.engine.begin() as conn:
            conn.execute(
                invoices.update()
                .where(invoices.c.id == invoice_id, invoices.c.pdf_sha256.is_(None))
                .values(pdf_sha256=sha256)
            )
            audit(conn, invoice_id, "issuing", "store_pdf_sha256", {"pdf_sha256": sha256})

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
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # REPLACE's implicit deletes fire DELETE triggers only with this on; the ledger's own
    # connections get it, and the triggers refuse the collision anyway for any other connection.
    cursor.execute("PRAGMA recursive_triggers=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
