"""Invoice delivery by email: every issued invoice reaches its customer's billing email once, with
the issued PDF and the ledger's JSON copy attached, even when the mail server refuses at first.

A real SMTP server (aiosmtpd) on 127.0.0.1 receives the mail (the ``mailbox`` and ``smtp``
fixtures); the ledger tests run on SQLite and PostgreSQL (the ``ledger`` fixture).
"""

from __future__ import annotations

import datetime as dt
import email
import hashlib
import itertools
import json
from decimal import Decimal
from email import policy

import pytest
import sqlalchemy as sa
import yaml

from billing_pipeline.delivery import mail as delivery
from billing_pipeline.delivery.smtp import SmtpConfigError, smtp_from_env
from billing_pipeline.ledger.ledger import canonical_json, load_document
from billing_pipeline.money import exact, fmt_money
from billing_pipeline_tests.support.delivery import CUSTOMERS, EMAILS, SENDER, T0, cli, send
from billing_pipeline_tests.support.ledger import MONTH, rewrite_issued


def _stored(ledger) -> dict[str, tuple[str, str]]:
    """number -> (stored document text, pdf sha256) straight from the invoices table."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT number, document, pdf_sha256 FROM invoices WHERE status = 'issued'")
        )
        return {r.number: (r.document, r.pdf_sha256) for r in rows}


def _attachments(message) -> dict[str, bytes]:
    return {part.get_filename(): part.get_content() for part in message.iter_attachments()}


def _assert_invoice_email(message, ledger, out):
    number = message["Subject"].split()[1]
    stored_text, sha = _stored(ledger)[number]
    doc = load_document(stored_text)
    assert message["To"] == EMAILS[doc["customer_id"]]
    files = _attachments(message)
    assert set(files) == {f"{number}.pdf", f"{number}.json"}
    pdf = files[f"{number}.pdf"]
    assert pdf == (out / MONTH / "invoices" / f"{doc['customer_id']}.pdf").read_bytes()
    assert hashlib.sha256(pdf).hexdigest() == sha
    assert json.loads(files[f"{number}.json"], parse_float=Decimal) == doc
    total = fmt_money(exact(doc["total"]), doc["currency"])
    for body in (message.get_body(("plain",)), message.get_body(("html",))):
        text = body.get_content()
        assert (
            number in text and total in text and doc["due_date"] in text and "October 2026" in text
        )


# ---------------------------------------------------------------- the rules


def test_every_issued_invoice_arrives_once_with_its_pdf_and_json_copy(
    ledger, issued, mailbox, smtp
):
    report = send(ledger, issued, smtp)
    numbers = sorted(_stored(ledger))
    assert len(numbers) == len(CUSTOMERS)
    assert mailbox.numbers() == numbers
    assert sorted(i["number"] for i in report.sent) == numbers
    for message in mailbox.messages:
        _assert_invoice_email(message, ledger, issued)
        assert message["From"] == f"{SENDER.name} <{SENDER.address}>"
    rows = delivery.deliveries(ledger, MONTH)
    assert {(r["number"], r["status"], r["attempts"]) for r in rows} == {
        (n, "sent", 1) for n in numbers
    }
    received = {m["Subject"].split()[1]: m["Message-ID"] for m in mailbox.messages}
    for row in rows:  # the server's reply is kept, and the Message-ID is the recorded one
        assert row["server_response"].startswith("250 2.0.0 Ok: queued as Q")
        assert received[row["number"]] == row["message_id"]
    actions = [e["action"] for e in ledger.audit_entries()]
    assert actions.count("email_sent") == len(numbers)


def test_a_rerun_sends_nothing_new(ledger, issued, mailbox, smtp):
    send(ledger, issued, smtp)
    before = len(mailbox.messages)
    again = send(ledger, issued, smtp, now=T0 + dt.timedelta(days=2))
    assert again.counts() == {
        "sent": 0,
        "retrying": 0,
        "failed": 0,
        "no_recipient": 0,
        "cancelled": 0,
    }
    assert len(mailbox.messages) == before == len(CUSTOMERS)


def test_a_refused_first_attempt_is_retried_after_backoff_and_delivered_once(
    ledger, issued, mailbox, smtp
):
    mailbox.refuse = 1
    first = send(ledger, issued, smtp)
    assert len(first.retrying) == 1 and "451" in first.retrying[0]["error"]
    refused = first.retrying[0]["number"]
    retry_at = first.retrying[0]["next_attempt_at"]
    assert retry_at > T0
    assert refused not in mailbox.numbers() and len(mailbox.messages) == len(CUSTOMERS) - 1
    row = next(r for r in delivery.deliveries(ledger, MONTH) if r["number"] == refused)
    assert (row["status"], row["attempts"]) == ("pending", 1) and "451" in row["last_error"]

    early = send(ledger, issued, smtp, now=retry_at - dt.timedelta(seconds=1))
    assert early.sent == [] and len(mailbox.messages) == len(CUSTOMERS) - 1  # backoff: not yet
    late = send(ledger, issued, smtp, now=retry_at)
    assert [i["number"] for i in late.sent] == [refused]
    assert mailbox.numbers() == sorted(_stored(ledger))  # each exactly once
    row = next(r for r in delivery.deliveries(ledger, MONTH) if r["number"] == refused)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)
    _assert_invoice_email(
        next(m for m in mailbox.messages if refused in m["Subject"]), ledger, issued
    )


def test_a_refusal_that_never_ends_gives_up_after_max_attempts(ledger, issued, mailbox, smtp):
    mailbox.refuse = 10_000
    now = T0
    for attempt in range(1, delivery.MAX_ATTEMPTS + 1):
        report = send(ledger, issued, smtp, now=now, number="INV-2026-000001")
        assert len(report.retrying if attempt < delivery.MAX_ATTEMPTS else report.failed) == 1
        now = max(now, report.retrying[0]["next_attempt_at"] if report.retrying else now)
    row = delivery.deliveries(ledger, number="INV-2026-000001")[0]
    assert (row["status"], row["attempts"]) == ("failed", delivery.MAX_ATTEMPTS)
    assert (
        send(
            ledger, issued, smtp, now=now + dt.timedelta(days=30), number="INV-2026-000001"
        ).counts()["sent"]
        == 0
    )
    assert mailbox.messages == []


def test_a_recipient_refused_permanently_fails_at_once_and_others_still_arrive(
    ledger, issued, mailbox, smtp
):
    mailbox.reject = {EMAILS["globex"]}
    report = send(ledger, issued, smtp)
    assert [(i["attempts"], "550" in i["error"]) for i in report.failed] == [(1, True)]
    assert len(report.sent) == len(CUSTOMERS) - 1
    assert all(m["To"] != EMAILS["globex"] for m in mailbox.messages)


def test_resend_on_request_sends_exactly_one_more_copy(ledger, issued, mailbox, smtp):
    send(ledger, issued, smtp)
    number = sorted(_stored(ledger))[0]
    report = send(
        ledger,
        issued,
        smtp,
        now=T0 + dt.timedelta(hours=1),
        period=None,
        number=number,
        resend=True,
    )
    assert [(i["number"], i["purpose"]) for i in report.sent] == [(number, "resend-1")]
    copies = [m for m in mailbox.messages if m["Subject"].split()[1] == number]
    assert len(copies) == 2 and copies[1]["Subject"].endswith("(copy)")
    assert copies[0]["Message-ID"] != copies[1]["Message-ID"]
    _assert_invoice_email(copies[1], ledger, issued)
    assert len(mailbox.messages) == len(CUSTOMERS) + 1
    assert send(ledger, issued, smtp, now=T0 + dt.timedelta(days=1)).sent == []  # and not again
    requested = [e for e in ledger.audit_entries() if e["action"] == "resend_requested"]
    assert [json.loads(e["detail"])["number"] for e in requested] == [number]


def test_dry_run_writes_one_eml_per_invoice_and_sends_nothing(ledger, issued, mailbox, tmp_path):
    report = delivery.preview(
        ledger, EMAILS, issued, tmp_path / "eml", sender=SENDER, period=MONTH, now=T0
    )
    assert sorted(p.name for p in report.written) == sorted(
        f"{n}.issue.eml" for n in _stored(ledger)
    )
    for path in report.written:
        _assert_invoice_email(
            email.message_from_bytes(path.read_bytes(), policy=policy.default), ledger, issued
        )
    assert mailbox.messages == [] and delivery.deliveries(ledger) == []  # the ledger is unchanged


def test_a_customer_without_billing_email_is_recorded_and_reported_not_sent(
    ledger, issued, mailbox, smtp
):
    report = send(ledger, issued, smtp, recipients={**EMAILS, "initech": ""})
    number = next(
        n
        for n, (text, _) in _stored(ledger).items()
        if load_document(text)["customer_id"] == "initech"
    )
    assert report.no_recipient == [{"number": number, "customer_id": "initech"}]
    assert number not in mailbox.numbers() and len(mailbox.messages) == len(CUSTOMERS) - 1
    row = delivery.deliveries(ledger, number=number)[0]
    assert (row["status"], row["recipient"], row["attempts"]) == ("no_recipient", None, 0)
    again = send(
        ledger, issued, smtp, now=T0 + dt.timedelta(days=1), recipients={**EMAILS, "initech": ""}
    )
    assert again.no_recipient == report.no_recipient and again.sent == []  # still reported


def test_an_invoice_voided_before_delivery_is_not_sent(ledger, issued, mailbox, smtp):
    delivery.enqueue(ledger, EMAILS, SENDER.domain, T0, MONTH)
    ledger.void("INV-2026-000002", "wrong customer")
    report = send(ledger, issued, smtp)
    assert report.cancelled == [{"number": "INV-2026-000002", "purpose": "issue"}]
    assert (
        "INV-2026-000002" not in mailbox.numbers() and len(mailbox.messages) == len(CUSTOMERS) - 1
    )


def test_a_pdf_that_is_not_the_issued_one_is_never_attached(ledger, issued, mailbox, smtp):
    pdf = issued / MONTH / "invoices" / "acme.pdf"
    pdf.write_bytes(pdf.read_bytes() + b"%tampered")
    report = send(ledger, issued, smtp)
    assert [("sha256" in i["error"], i["number"]) for i in report.retrying] == [
        (True, "INV-2026-000001")
    ]
    assert "INV-2026-000001" not in mailbox.numbers()


def test_a_document_rewritten_in_the_ledger_after_issue_is_never_sent(
    ledger, issued, mailbox, smtp
):
    stored_text, _ = _stored(ledger)["INV-2026-000001"]
    forged = {**load_document(stored_text), "total": "0.01"}
    rewrite_issued(
        ledger, "INV-2026-000001", "document = :forged", {"forged": canonical_json(forged)}
    )
    report = send(ledger, issued, smtp)
    [held] = report.retrying
    assert held["number"] == "INV-2026-000001"
    assert held["error"].startswith("INV-2026-000001 (acme): the issued document was tampered with")
    assert held["error"].endswith("; not sent")
    assert "INV-2026-000001" not in mailbox.numbers()
    assert len(mailbox.messages) == len(CUSTOMERS) - 1  # the others still go


def test_a_sender_that_died_mid_send_is_taken_over_after_its_lease_with_the_same_message_id(
    ledger, issued, mailbox, smtp
):
    """At-least-once: the row claimed by a crashed sender is retried once its lease expires,
    carrying the same Message-ID, so a receiver can tell a possible duplicate."""
    delivery.enqueue(ledger, EMAILS, SENDER.domain, T0, MONTH)
    row = delivery.deliveries(ledger, number="INV-2026-000001")[0]
    assert delivery.claim(ledger, row["id"], T0)  # ...and then the process died
    assert [i["number"] for i in send(ledger, issued, smtp).sent] == [
        "INV-2026-000002",
        "INV-2026-000003",
    ]
    taken = send(ledger, issued, smtp, now=T0 + delivery.LEASE + dt.timedelta(seconds=1))
    assert [i["number"] for i in taken.sent] == ["INV-2026-000001"]
    message = next(m for m in mailbox.messages if "INV-2026-000001" in m["Subject"])
    assert (
        message["Message-ID"] == row["message_id"] == "<INV-2026-000001.issue@example-ai.example>"
    )
    assert delivery.deliveries(ledger, number="INV-2026-000001")[0]["attempts"] == 2


def test_a_claimed_row_is_not_claimed_again_while_its_lease_runs(ledger, issued):
    delivery.enqueue(ledger, EMAILS, SENDER.domain, T0, MONTH)
    rows = delivery.due(ledger, T0, MONTH)
    assert [delivery.claim(ledger, r["id"], T0) for r in rows] == [True] * len(CUSTOMERS)
    assert [delivery.claim(ledger, r["id"], T0 + dt.timedelta(minutes=1)) for r in rows] == [
        False
    ] * len(CUSTOMERS)


def test_backoff_doubles_and_gives_up_at_max_attempts():
    now = T0
    waits = [
        delivery.after_failure(n, now, permanent=False)["next_attempt_at"] - now
        for n in range(1, delivery.MAX_ATTEMPTS)
    ]
    assert all(
        later == 2 * earlier or later == delivery.BACKOFF_MAX
        for earlier, later in itertools.pairwise(waits)
    )
    assert delivery.after_failure(delivery.MAX_ATTEMPTS, now, permanent=False)["status"] == "failed"
    assert delivery.after_failure(1, now, permanent=True)["status"] == "failed"


def test_smtp_settings_come_from_the_environment():
    settings = smtp_from_env(
        {
            "BILLING_SMTP_HOST": "mail.example",
            "BILLING_SMTP_SECURITY": "ssl",
            "BILLING_SMTP_USER": "u",
            "BILLING_SMTP_PASSWORD": "pw-s3cret",
        }
    )
    assert (settings.host, settings.port, settings.security, settings.user, settings.password) == (
        "mail.example",
        465,
        "ssl",
        "u",
        "pw-s3cret",
    )
    assert "pw-s3cret" not in repr(settings)
    assert smtp_from_env({"BILLING_SMTP_HOST": "h", "BILLING_SMTP_PORT": "2525"}).port == 2525
    for bad in (
        {},
        {"BILLING_SMTP_HOST": "h", "BILLING_SMTP_SECURITY": "tls"},
        {"BILLING_SMTP_HOST": "h", "BILLING_SMTP_PORT": "smtp"},
    ):
        with pytest.raises(SmtpConfigError, match="BILLING_SMTP_"):
            smtp_from_env(bad)
    assert delivery.sender_from_env("X", "billing@x.example", {}).address == "billing@x.example"
    assert (
        delivery.sender_from_env(
            "X", "billing@x.example", {"BILLING_SMTP_FROM": "a@b.example"}
        ).domain
        == "b.example"
    )


# ---------------------------------------------------------------- the command and the Dagster asset


def test_send_command_delivers_the_demo_month_once_and_resends_on_request(
    demo_month, tmp_path, mailbox, monkeypatch
):
    month = demo_month.copy_to(tmp_path)
    catalog = yaml.safe_load(month.catalog.read_text())
    customers = catalog["customers"]
    silent = sorted(customers)[0]
    customers[silent]["email"] = ""  # a customer without billing email
    month.catalog.write_text(yaml.safe_dump(catalog, sort_keys=False))
    common = ["--out", str(month.out), "--catalog", str(month.catalog)]
    env = {
        "BILLING_SMTP_HOST": "127.0.0.1",
        "BILLING_SMTP_PORT": str(mailbox.port),
        "BILLING_SMTP_SECURITY": "none",
        "BILLING_SMTP_USER": "billing",
        "BILLING_SMTP_PASSWORD": "s3cret",
        "BILLING_DATABASE_URL": None,
    }
    assert cli(["issue", "--month", MONTH, *common], env).exit_code == 0
    from billing_pipeline.ledger.ledger import Ledger

    ledger = Ledger(f"sqlite:///{month.out / 'ledger.db'}")
    issued = {
        r["number"]: r["customer_id"]
        for r in ledger.list_invoices(MONTH)
        if r["status"] == "issued"
    }
    silent_number = next(n for n, c in issued.items() if c == silent)

    no_host = cli(["send", "--month", MONTH, *common], {**env, "BILLING_SMTP_HOST": None})
    assert no_host.exit_code == 2 and "BILLING_SMTP_HOST is not set" in no_host.stderr

    dry = cli(["send", "--month", MONTH, "--dry-run", str(tmp_path / "eml"), *common], env)
    assert dry.exit_code == 0 and mailbox.messages == []
    assert len(list((tmp_path / "eml").glob("*.eml"))) == len(issued) - 1

    result = cli(["send", "--month", MONTH, *common], env)
    assert result.exit_code == 0, result.output
    assert mailbox.numbers() == sorted(n for n in issued if n != silent_number)
    assert {to for _, (to,) in mailbox.envelopes} == {
        customers[c]["email"] for n, c in issued.items() if n != silent_number
    }
    assert set(mailbox.logins) == {"billing"}
    assert f"not sent {silent_number}: customer {silent} has no billing email" in result.output
    for message in mailbox.messages:
        number = message["Subject"].split()[1]
        files = _attachments(message)
        assert (
            files[f"{number}.pdf"]
            == (month.out / MONTH / "invoices" / f"{issued[number]}.pdf").read_bytes()
        )
        assert json.loads(files[f"{number}.json"], parse_float=Decimal) == ledger.get_document(
            issued[number], MONTH
        )

    rerun = cli(["send", "--month", MONTH, *common], env)
    assert rerun.exit_code == 0 and len(mailbox.messages) == len(issued) - 1
    assert "sent 0," in rerun.output

    unknown = cli(["send", "--invoice", "INV-2099-000001", *common], env)
    assert unknown.exit_code == 2 and "no invoice numbered INV-2099-000001" in unknown.stderr

    number = mailbox.numbers()[0]
    again = cli(["send", "--invoice", number, "--resend", *common], env)
    assert again.exit_code == 0, again.output
    assert mailbox.numbers().count(number) == 2 and len(mailbox.messages) == len(issued)
    assert f"{number} resend-1: sent, 1 attempt(s)" in again.output

    import dagster as dg

    from billing_pipeline.defs.issuing import delivered_invoices
    from billing_pipeline.defs.resources import (
        CatalogResource,
        LedgerResource,
        OutputFiles,
        SmtpResource,
    )

    materialized = dg.materialize(
        [delivered_invoices],
        partition_key=f"{MONTH}-01",
        resources={
            "catalog": CatalogResource(path=str(month.catalog)),
            "ledger": LedgerResource(url=f"sqlite:///{month.out / 'ledger.db'}"),
            "output": OutputFiles(path=str(month.out)),
            "smtp": SmtpResource(host="127.0.0.1", port=mailbox.port, security="none"),
        },
    )
    metadata = materialized.asset_materializations_for_node("delivered_invoices")[0].metadata
    assert (metadata["sent"].value, metadata["failed"].value, metadata["skipped"].value) == (
        0,
        0,
        1,
    )
    assert len(mailbox.messages) == len(issued)

    monkeypatch.delenv("BILLING_SMTP_HOST", raising=False)
    unconfigured = dg.materialize(
        [delivered_invoices],
        partition_key=f"{MONTH}-01",
        raise_on_error=False,
        resources={
            "catalog": CatalogResource(path=str(month.catalog)),
            "ledger": LedgerResource(url=f"sqlite:///{month.out / 'ledger.db'}"),
            "output": OutputFiles(path=str(month.out)),
            "smtp": SmtpResource(),
        },
    )
    assert not unconfigured.success
    failure = next(e for e in unconfigured.all_events if e.is_step_failure)
    assert "BILLING_SMTP_HOST is not set" in failure.step_failure_data.error.message


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "exactly one of --month"),
        (["--month", MONTH, "--invoice", "INV-2026-000001"], "exactly one of --month"),
        (["--month", MONTH, "--resend"], "--resend needs --invoice"),
        (["--month", "2026-13"], "2026-13"),
    ],
)
def test_send_command_refuses_bad_input_with_one_line(args, message, tmp_path):
    result = cli(["send", *args, "--out", str(tmp_path)], {})
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
