"""Invoice delivery by email: an outbox in the ledger and message building (SMTP: ``smtp.py``).

Every issued invoice gets one outbox row for purpose ``issue`` (``invoice_deliveries``, unique per
invoice and purpose), so however often delivery runs, an invoice is sent once; a re-send on
request is a new row (``resend-1``, ``resend-2``, ...), audit-logged. A row is ``pending`` until
sent; a refused or failed attempt leaves it ``pending`` with exponential backoff, up to
``MAX_ATTEMPTS``, then ``failed``; a permanent refusal (5xx for the recipient or the message) fails
it at once. A customer without a billing email gets a ``no_recipient`` row (reported, never
sent); a row whose invoice was voided before it went out is ``cancelled``.

Bad rows stay in their lane. A recipient that cannot form a message (a line break or control
character, no ``@``, two addresses, a non-ASCII mailbox the SMTP dialogue cannot carry, ...) fails
its row at once with the reason, before any server is contacted; an unexpected error while
building or sending one row is recorded on that row (retried with backoff) and the pass goes on.
Attempts never pass ``MAX_ATTEMPTS``: a row whose last allowed attempt never finished (the sender
died) is marked ``failed`` when its lease expires instead of being tried again.

Claims, leases, attempts and backoff are the ledger's one outbox mechanism (``ledger/outbox.py``,
``INVOICE_EMAILS``); this module says what a row carries and how it is sent.

Crash safety. A row is claimed (``sending``, attempts + 1, a lease in ``next_attempt_at``) and
committed *before* the server is contacted; it is recorded ``sent`` with the server's reply right
after the server accepted the message. If the process dies between the server's 250 and that
commit, the outcome is unknown. We choose at-least-once: when the lease expires the row is sent
again, with the same ``Message-ID`` (``<NUMBER.PURPOSE@issuer-domain>``), so the copy is
recognisable as the same message and receivers that honour Message-ID drop it. At-most-once would
instead leave an invoice silently undelivered, which costs more than a duplicate of the same
invoice number. The window is the time between the server's reply and one small commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from billing_pipeline import progress
from billing_pipeline.delivery.smtp import (
    describe,
    is_permanent,
)
from billing_pipeline.documents.kinds import KIND_INVOICE
from billing_pipeline.issuing.month import DocumentTampered, check_document, file_stem
from billing_pipeline.ledger.ledger import Ledger, audit, load_document
from billing_pipeline.ledger.outbox import ERROR_LENGTH, INVOICE_EMAILS
from billing_pipeline.ledger.tables import invoice_deliveries, invoices
from billing_pipeline.money import exact, fmt_money
from billing_pipeline.paths import inside
from billing_pipeline.periods import month_label

PURPOSE_ISSUE = "issue"
OUTBOX = INVOICE_EMAILS  # claims, leases, attempts and backoff: the ledger's one outbox mechanism
MAX_ATTEMPTS = OUTBOX.max_attempts
BACKOFF_MAX = OUTBOX.backoff.cap
LEASE = OUTBOX.lease
after_failure = OUTBOX.after_failure  # status and next try after failed attempt number n
KIND_LABELS = {
    KIND_INVOICE: "Invoice",
    "credit_note": "Credit note",
    "adjustment": "Adjustment invoice",
}


class DeliveryError(ValueError):
    """Bad input for delivery (unknown invoice, missing settings): the message says which."""


class AttachmentError(RuntimeError):
    """The issued PDF is missing or is not the one issued: the attempt fails, nothing is sent."""


class AddressError(ValueError):
    """The recipient cannot form a message: the row fails at once, nothing is sent."""


def address_problem(address: str) -> str | None:
    """Why ``address`` cannot be a message's only recipient (None: it can). A display name is
    allowed (``Acme Billing <billing@acme.example>``); the mailbox itself must be ASCII, since
    the SMTP dialogue (no SMTPUTF8) cannot carry anything else."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in address):
        return "contains a line break or control character"
    parsed = getaddresses([address])
    if len(parsed) != 1 or not parsed[0][1]:
        return "is not exactly one email address"
    mailbox = parsed[0][1]
    if mailbox.count("@") != 1:
        return "is not an email address (one @ between mailbox and domain)"
    local, domain = mailbox.split("@")
    if not local or not domain or any(c.isspace() for c in mailbox):
        return "is not an email address (empty mailbox or domain)"
    if not mailbox.isascii():
        return "has non-ASCII characters in the mailbox (not supported by our SMTP client)"
    try:
        Address(addr_spec=mailbox)
    except (ValueError, IndexError, TypeError) as exc:
        return f"is not an email address ({exc})"
    return None


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class Sender:
    name: str
    address: str

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] or "localhost"


def sender_from_env(
    issuer_name: str, issuer_email: str, environ: Mapping[str, str] = os.environ
) -> Sender:
    """From: ``BILLING_SMTP_FROM``, else the catalog's ``issuer.email``."""
    address = (environ.get("BILLING_SMTP_FROM") or issuer_email or "").strip()
    if "@" not in address:
        raise DeliveryError(
            "no sender address: set BILLING_SMTP_FROM or issuer.email in the catalog"
        )
    problem = address_problem(address)
    if problem:
        raise DeliveryError(f"sender address {address!r} {problem}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in issuer_name):
        raise DeliveryError(
            "issuer.name contains a line break or control character: it cannot be a From name"
        )
    return Sender(issuer_name, address)


# ---------------------------------------------------------------- messages (pure)


def message_id(number: str, purpose: str, domain: str) -> str:
    """Stable per (invoice, purpose): a re-sent copy after a crash carries the same id."""
    return f"<{number}.{purpose}@{domain}>"


def _facts(doc: dict) -> dict:
    kind = KIND_LABELS.get(doc.get("kind", KIND_INVOICE), "Invoice")
    return {
        "kind": kind,
        "number": doc["number"],
        "customer": doc.get("customer", {}).get("name") or doc["customer_id"],
        "period": month_label(doc["period"]),
        "from": doc.get("period_start", ""),
        "to": doc.get("period_end", ""),
        "total": fmt_money(exact(doc["total"]), doc["currency"]),
        "due": doc.get("due_date") or "on receipt",
        "issuer": doc.get("issuer", {}).get("name", ""),
    }


def body_text(doc: dict) -> str:
    f = _facts(doc)
    return (
        f"Hello {f['customer']},\n\n"
        f"please find attached {f['kind'].lower()} {f['number']} for {f['period']} "
        f"({f['from']} to {f['to']}).\n\n"
        f"  Number:   {f['number']}\n  Period:   {f['period']}\n"
        f"  Total:    {f['total']}\n  Due date: {f['due']}\n\n"
        "The PDF is the invoice; the JSON file is a machine-readable copy of the same document.\n\n"
        f"{f['issuer']}\n"
    )


def body_html(doc: dict) -> str:
    f = {k: html.escape(str(v)) for k, v in _facts(doc).items()}
    rows = "".join(
        f'<tr><th align="left">{label}</th><td>{value}</td></tr>'
        for label, value in (
            ("Number", f["number"]),
            ("Period", f"{f['period']} ({f['from']} to {f['to']})"),
            ("Total", f["total"]),
            ("Due date", f["due"]),
        )
    )
    return (
        f"<!DOCTYPE html><html><body><p>Hello {f['customer']},</p>"
        f"<p>please find attached {f['kind'].lower()} <strong>{f['number']}</strong> for {f['period']}.</p>"
        f"<table>{rows}</table>"
        "<p>The PDF is the invoice; the JSON file is a machine-readable copy of the same document.</p>"
        f"<p>{f['issuer']}</p></body></html>\n"
    )


def build_message(
    doc: dict,
    pdf: bytes,
    document_json: str,
    *,
    sender: Sender,
    recipient: str,
    purpose: str,
    msg_id: str,
    date: dt.datetime,
) -> EmailMessage:
    """The email for one issued document: plain text + HTML, the PDF and the JSON copy attached.
    Raises ``AddressError`` for a recipient that cannot form a message."""
    problem = address_problem(recipient)
    if problem:
        raise AddressError(f"recipient {recipient!r} {problem}")
    f = _facts(doc)
    message = EmailMessage()
    copy = "" if purpose == PURPOSE_ISSUE else " (copy)"
    message["Subject"] = f"{f['kind']} {f['number']} for {f['period']}{copy}"
    message["From"] = formataddr((sender.name, sender.address))
    message["To"] = recipient
    message["Date"] = format_datetime(date)
    message["Message-ID"] = msg_id
    message.set_content(body_text(doc))
    message.add_alternative(body_html(doc), subtype="html")
    message.add_attachment(
        pdf, maintype="application", subtype="pdf", filename=f"{doc['number']}.pdf"
    )
    message.add_attachment(
        document_json.encode("utf-8"),
        maintype="application",
        subtype="json",
        filename=f"{doc['number']}.json",
    )
    return message


# ---------------------------------------------------------------- recipients


def recipients_from_catalog(catalog) -> dict[str, str]:
    """Customer id -> billing email ('' when the catalog has none)."""
    return {cid: customer.email for cid, customer in catalog.customers.items()}


def _recipient(doc: dict, recipients: Mapping[str, str]) -> str | None:
    """The catalog's billing email (the current one); the document's only if the customer is gone."""
    email = (
        recipients[doc["customer_id"]]
        if doc["customer_id"] in recipients
        else doc.get("customer", {}).get("email", "")
    )
    return email.strip() or None


# ---------------------------------------------------------------- the outbox (ledger)


def _insert(conn: Connection):
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
        invoice_deliveries
    )


def _in_scope(table, period: str | None, number: str | None) -> list:
    return [
        *([table.c.period == period] if period is not None else []),
        *([table.c.number == number] if number is not None else []),
    ]


def _scope(query, table, period: str | None, number: str | None):
    return query.where(*_in_scope(table, period, number))


def _row(
    doc: dict, invoice_id: int, purpose: str, recipient: str | None, domain: str, now: dt.datetime
) -> dict:
    return {
        "invoice_id": invoice_id,
        "number": doc["number"],
        "customer_id": doc["customer_id"],
        "period": doc["period"],
        "purpose": purpose,
        "recipient": recipient,
        "status": "pending" if recipient else "no_recipient",
        "attempts": 0,
        "next_attempt_at": now,
        "message_id": message_id(doc["number"], purpose, domain),
        "created_at": now,
        "updated_at": now,
    }


def _missing_issue_rows(
    conn: Connection,
    recipients: Mapping[str, str],
    domain: str,
    now: dt.datetime,
    period: str | None,
    number: str | None,
) -> list[dict]:
    """Outbox rows the issued documents in scope should have and do not have yet."""
    has_row = (
        select(invoice_deliveries.c.id)
        .where(
            invoice_deliveries.c.invoice_id == invoices.c.id,
            invoice_deliveries.c.purpose == PURPOSE_ISSUE,
        )
        .exists()
    )
    query = _scope(
        select(invoices.c.id, invoices.c.document).where(invoices.c.status == "issued", ~has_row),
        invoices,
        period,
        number,
    )
    rows = conn.execute(query.order_by(invoices.c.sequence, invoices.c.id)).all()
    return [
        _row(doc, r.id, PURPOSE_ISSUE, _recipient(doc, recipients), domain, now)
        for r in rows
        for doc in [load_document(r.document)]
    ]


def enqueue(
    ledger: Ledger,
    recipients: Mapping[str, str],
    domain: str,
    now: dt.datetime,
    period: str | None = None,
    number: str | None = None,
) -> list[dict]:
    """Give every issued document in scope its ``issue`` row (idempotent: a known one is kept)."""
    new = []
    with ledger.engine.begin() as conn:
        for values in _missing_issue_rows(conn, recipients, domain, now, period, number):
            statement = (
                _insert(conn)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["invoice_id", "purpose"])
            )
            if conn.execute(statement).rowcount:
                new.append(values)
    return new


def _issued(conn: Connection, number: str):
    row = conn.execute(
        select(invoices.c.id, invoices.c.status, invoices.c.document).where(
            invoices.c.number == number
        )
    ).first()
    if row is None:
        raise DeliveryError(f"no invoice numbered {number}")
    if row.status != "issued":
        raise DeliveryError(f"{number} is {row.status}: only issued invoices are sent")
    return row


def _resend_row(
    conn: Connection, number: str, recipients: Mapping[str, str], domain: str, now: dt.datetime
) -> tuple[int, dict]:
    row = _issued(conn, number)
    doc = load_document(row.document)
    recipient = _recipient(doc, recipients)
    if recipient is None:
        raise DeliveryError(
            f"{number}: customer {doc['customer_id']} has no billing email in the catalog"
        )
    problem = address_problem(recipient)
    if problem:
        raise DeliveryError(
            f"{number}: customer {doc['customer_id']}'s billing email {recipient!r} {problem}"
        )
    resends = conn.execute(
        select(func.count())
        .select_from(invoice_deliveries)
        .where(
            invoice_deliveries.c.invoice_id == row.id, invoice_deliveries.c.purpose != PURPOSE_ISSUE
        )
    ).scalar_one()
    return row.id, _row(doc, row.id, f"resend-{resends + 1}", recipient, domain, now)


def request_resend(
    ledger: Ledger,
    number: str,
    recipients: Mapping[str, str],
    domain: str,
    now: dt.datetime,
    actor: str = "cli",
) -> dict:
    """A new, explicit delivery of an issued invoice (a fresh row; the earlier ones stay as they are)."""
    with ledger.engine.begin() as conn:
        invoice_id, values = _resend_row(conn, number, recipients, domain, now)
        conn.execute(invoice_deliveries.insert().values(**values))
        audit(
            conn,
            invoice_id,
            actor,
            "resend_requested",
            {"number": number, "purpose": values["purpose"], "recipient": values["recipient"]},
        )
    return values


def due(
    ledger: Ledger, now: dt.datetime, period: str | None = None, number: str | None = None
) -> list[dict]:
    """Rows to attempt now: pending and due, or 'sending' with an expired lease (a crashed sender)."""
    with ledger.engine.connect() as conn:
        return OUTBOX.due(conn, now, *_in_scope(invoice_deliveries, period, number))


def claim(ledger: Ledger, row_id: int, now: dt.datetime) -> bool:
    """Take a due row for one attempt, committed before SMTP; False if another sender has it."""
    with ledger.engine.begin() as conn:
        return OUTBOX.claim(conn, row_id, now)


def _audit(conn: Connection, row: dict, actor: str, action: str, **detail) -> None:
    audit(
        conn,
        row["invoice_id"],
        actor,
        action,
        {
            "number": row["number"],
            "purpose": row["purpose"],
            "recipient": row["recipient"],
            **detail,
        },
    )


def _give_up(ledger: Ledger, row: dict, now: dt.datetime, actor: str) -> bool:
    """A row whose last allowed attempt never finished (its sender died; lease expired): failed,
    not attempted again. False if another sender got to it first."""
    error = (
        f"gave up: attempt {row['attempts']} of {MAX_ATTEMPTS} never finished "
        "(the sender stopped mid-send; it may or may not have arrived)"
    )
    with ledger.engine.begin() as conn:
        done = OUTBOX.give_up(conn, row["id"], now, error)
        if done:
            _audit(conn, row, actor, "email_failed", last_error=error)
    return done


def _failed(
    ledger: Ledger,
    row: dict,
    attempts: int,
    reason: str,
    now: dt.datetime,
    permanent: bool,
    actor: str,
) -> dict:
    """Claimed attempt number ``attempts`` failed: retried after the backoff, or failed for good
    (audit-logged). Returns the new status and next try."""
    with ledger.engine.begin() as conn:
        state = OUTBOX.record_failure(conn, row["id"], attempts, reason, now, permanent)
        if state["status"] == OUTBOX.failed:
            _audit(conn, row, actor, "email_failed", last_error=reason[:ERROR_LENGTH])
    return state


def _sent(ledger: Ledger, row: dict, response: str, now: dt.datetime, actor: str) -> None:
    with ledger.engine.begin() as conn:
        OUTBOX.record_sent(
            conn,
            row["id"],
            now,
            server_response=response[:ERROR_LENGTH],
            message_id=row["message_id"],
        )
        _audit(
            conn,
            row,
            actor,
            "email_sent",
            message_id=row["message_id"],
            server_response=response[:ERROR_LENGTH],
            last_error=None,
        )


def _cancelled(ledger: Ledger, row: dict, now: dt.datetime) -> None:
    with ledger.engine.begin() as conn:
        OUTBOX.finish(
            conn, row["id"], now, status="cancelled", last_error="invoice voided before delivery"
        )


def deliveries(ledger: Ledger, period: str | None = None, number: str | None = None) -> list[dict]:
    query = _scope(select(invoice_deliveries), invoice_deliveries, period, number)
    with ledger.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query.order_by(invoice_deliveries.c.id)).mappings()]


# ---------------------------------------------------------------- one pass


def _message_for(
    ledger: Ledger, row: dict, out_dir: Path, sender: Sender, now: dt.datetime
) -> EmailMessage | None:
    """The row's message, or None when its invoice was voided meanwhile. The JSON copy is the
    ledger's stored document text, which must hash to the sha256 frozen at issue (a row rewritten
    since is never sent); the PDF must be the one whose sha256 was stored at issue."""

    with ledger.engine.connect() as conn:
        inv = conn.execute(
            select(
                invoices.c.status,
                invoices.c.number,
                invoices.c.customer_id,
                invoices.c.document,
                invoices.c.document_sha256,
                invoices.c.pdf_sha256,
            ).where(invoices.c.id == row["invoice_id"])
        ).one()
    if inv.status != "issued":
        return None
    try:
        check_document(inv, refused="sent")
    except DocumentTampered as error:
        raise AttachmentError(str(error)) from error
    doc = load_document(inv.document)
    pdf_path = inside(out_dir, doc["period"], "invoices", f"{file_stem(doc)}.pdf")
    if inv.pdf_sha256 is None or not pdf_path.is_file():
        raise AttachmentError(
            f"{pdf_path}: issued PDF not rendered yet (billing-pipeline issue "
            f"--month {doc['period']} renders missing PDFs)"
        )
    pdf = pdf_path.read_bytes()
    if hashlib.sha256(pdf).hexdigest() != inv.pdf_sha256:
        raise AttachmentError(f"{pdf_path}: sha256 differs from the issued PDF's {inv.pdf_sha256}")
    return build_message(
        doc,
        pdf,
        inv.document,
        sender=sender,
        recipient=row["recipient"],
        purpose=row["purpose"],
        msg_id=row["message_id"],
        date=now,
    )


@dataclass
class DeliveryReport:
    sent: list[dict] = field(default_factory=list)  # number, recipient, purpose, response
    retrying: list[dict] = field(default_factory=list)  # number, error, next_attempt_at
    failed: list[dict] = field(default_factory=list)  # number, error
    no_recipient: list[dict] = field(default_factory=list)  # number, customer_id (all in scope)
    cancelled: list[dict] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)  # dry run: the .eml files

    def counts(self) -> dict[str, int]:
        return {
            k: len(getattr(self, k))
            for k in ("sent", "retrying", "failed", "no_recipient", "cancelled")
        }


def deliver(
    ledger: Ledger,
    recipients: Mapping[str, str],
    out_dir: Path,
    transport,
    *,
    sender: Sender,
    period: str | None = None,
    number: str | None = None,
    resend: bool = False,
    now: dt.datetime | None = None,
    actor: str = "delivery",
) -> DeliveryReport:
    """Enqueue the issued documents in scope (or one explicit re-send), then attempt every due row
    once. ``recipients``: customer id -> billing email (``recipients_from_catalog``);
    ``transport.send(message) -> server reply`` is an ``SmtpTransport`` or a test double."""
    clock = (
        (lambda: now) if now is not None else (lambda: dt.datetime.now(dt.UTC))
    )  # tests pin the time
    if resend:
        if number is None:
            raise DeliveryError("--resend needs --invoice NUMBER")
        request_resend(ledger, number, recipients, sender.domain, clock(), actor)
    else:
        if number is not None:
            with ledger.engine.connect() as conn:
                _issued(conn, number)
        enqueue(ledger, recipients, sender.domain, clock(), period, number)
    report = DeliveryReport()
    settings = getattr(transport, "settings", None)
    secrets = tuple(s for s in (getattr(settings, "password", None),) if s)
    rows = due(ledger, clock(), period, number)
    for row in progress.counted(progress.EMAILS, rows, lambda r: r["number"]):
        now = clock()  # each row's lease starts when it is claimed, however long the pass takes
        if OUTBOX.exhausted(row):
            if _give_up(ledger, row, now, actor):
                report.failed.append(
                    {
                        "number": row["number"],
                        "purpose": row["purpose"],
                        "attempts": row["attempts"],
                        "error": "the last attempt never finished",
                        "next_attempt_at": now,
                    }
                )
            continue
        if not claim(ledger, row["id"], now):
            continue
        attempts = row["attempts"] + 1
        try:
            message = _message_for(ledger, row, out_dir, sender, now)
            if message is None:
                _cancelled(ledger, row, now)
                report.cancelled.append({"number": row["number"], "purpose": row["purpose"]})
                continue
            response = transport.send(message)
        except Exception as error:  # noqa: BLE001 - one row's failure, whatever it is, must not stop the rest
            permanent = isinstance(error, AddressError) or is_permanent(error)
            reason = (
                str(error)
                if isinstance(error, AddressError | AttachmentError)
                else describe(error, secrets)
            )
            state = _failed(ledger, row, attempts, reason, now, permanent, actor)
            item = {
                "number": row["number"],
                "purpose": row["purpose"],
                "error": reason,
                "attempts": attempts,
                "next_attempt_at": state["next_attempt_at"],
            }
            (report.failed if state["status"] == "failed" else report.retrying).append(item)
            continue
        _sent(ledger, row, response, now, actor)
        report.sent.append(
            {
                "number": row["number"],
                "purpose": row["purpose"],
                "recipient": row["recipient"],
                "response": response,
            }
        )
    report.no_recipient = [
        {"number": r["number"], "customer_id": r["customer_id"]}
        for r in deliveries(ledger, period, number)
        if r["status"] == "no_recipient"
    ]
    return report


def preview(
    ledger: Ledger,
    recipients: Mapping[str, str],
    out_dir: Path,
    directory: Path,
    *,
    sender: Sender,
    period: str | None = None,
    number: str | None = None,
    resend: bool = False,
    now: dt.datetime | None = None,
) -> DeliveryReport:
    """Dry run: write the .eml files a real pass would send now, and change nothing in the ledger."""
    now = now or dt.datetime.now(dt.UTC)
    with ledger.engine.connect() as conn:
        if resend:
            if number is None:
                raise DeliveryError("--resend needs --invoice NUMBER")
            rows = [_resend_row(conn, number, recipients, sender.domain, now)[1]]
        else:
            rows = _missing_issue_rows(conn, recipients, sender.domain, now, period, number)
    if not resend:
        rows += due(ledger, now, period, number)
    report = DeliveryReport()
    directory.mkdir(parents=True, exist_ok=True)
    for row in rows:
        if row["status"] == "no_recipient":
            report.no_recipient.append({"number": row["number"], "customer_id": row["customer_id"]})
            continue
        try:
            message = _message_for(ledger, row, out_dir, sender, now)
        except (AddressError, AttachmentError) as error:
            report.failed.append(
                {
                    "number": row["number"],
                    "purpose": row["purpose"],
                    "error": str(error),
                    "attempts": row["attempts"],
                }
            )
            continue
        if message is None:
            report.cancelled.append({"number": row["number"], "purpose": row["purpose"]})
            continue
        path = inside(directory, f"{row['number']}.{row['purpose']}.eml")
        path.write_bytes(message.as_bytes(policy=policy.SMTP))
        report.written.append(path)
    if not resend:
        report.no_recipient += [
            {"number": r["number"], "customer_id": r["customer_id"]}
            for r in deliveries(ledger, period, number)
            if r["status"] == "no_recipient"
        ]
    return report
