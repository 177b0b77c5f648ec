"""Delivery with a hostile or broken billing email: the row fails at once with the reason, the
other invoices still go out, attempts never pass the limit, and ``send`` lists the failure and
exits 1 without a traceback. A real SMTP server on 127.0.0.1 (aiosmtpd) receives the mail."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from billing_pipeline.delivery import mail as delivery
from billing_pipeline_tests.support.delivery import CUSTOMERS, EMAILS, SENDER, T0, cli, send
from billing_pipeline_tests.support.ledger import MONTH

INJECTED = "billing@acme.example\r\nBcc: everyone@victim.example"


@pytest.mark.parametrize(
    ("address", "why"),
    [
        (INJECTED, "contains a line break or control character"),
        ("billing@acme.example\nX-Evil: 1", "contains a line break or control character"),
        ("billing.acme.example", "is not an email address"),
        ("billing@acme@example", "is not exactly one email address"),
        ("a@acme.example, b@globex.example", "is not exactly one email address"),
        ("bïlling@acme.example", "has non-ASCII characters in the mailbox"),
    ],
)
def test_an_address_that_cannot_form_a_message_fails_its_row_at_once_and_the_rest_still_go(
    ledger, issued, mailbox, smtp, address, why
):
    report = send(ledger, issued, smtp, recipients={**EMAILS, "acme": address})
    assert [i["number"] for i in report.sent] == ["INV-2026-000002", "INV-2026-000003"]
    assert [(i["number"], i["attempts"]) for i in report.failed] == [("INV-2026-000001", 1)]
    assert why in report.failed[0]["error"] and report.retrying == []
    row = delivery.deliveries(ledger, number="INV-2026-000001")[0]
    assert (row["status"], row["attempts"]) == ("failed", 1) and why in row["last_error"]
    assert sorted(to for _, (to,) in mailbox.envelopes) == [
        "billing@globex.example",
        "billing@initech.example",
    ]
    assert all(m["Bcc"] is None for m in mailbox.messages)
    later = send(
        ledger, issued, smtp, now=T0 + dt.timedelta(days=1), recipients={**EMAILS, "acme": address}
    )
    assert (
        later.counts()["failed"] == 0 and len(mailbox.messages) == 2
    )  # failed is final: not tried again


def test_a_resend_to_an_address_that_cannot_form_a_message_is_refused_with_the_reason(
    ledger, issued, mailbox, smtp
):
    send(ledger, issued, smtp)
    with pytest.raises(delivery.DeliveryError, match="billing email .* contains a line break"):
        send(
            ledger,
            issued,
            smtp,
            recipients={**EMAILS, "acme": INJECTED},
            number="INV-2026-000001",
            resend=True,
        )


def test_a_sender_address_or_issuer_name_with_a_line_break_is_a_settings_error():
    with pytest.raises(delivery.DeliveryError, match="sender address"):
        delivery.sender_from_env(
            "Example AI", "x", {"BILLING_SMTP_FROM": "invoices@example.ai\r\nBcc: a@b.c"}
        )
    with pytest.raises(delivery.DeliveryError, match="issuer.name"):
        delivery.sender_from_env("Example AI\r\nBcc: a@b.c", "invoices@example.ai", {})


def test_attempts_never_pass_the_limit_when_every_sender_dies_mid_send(
    ledger, issued, mailbox, smtp
):
    """Each attempt is claimed (attempts + 1) and then the process dies: after MAX_ATTEMPTS (8)
    such claims the row is failed, never claimed a ninth time."""
    delivery.enqueue(ledger, EMAILS, SENDER.domain, T0, MONTH)
    row = delivery.deliveries(ledger, number="INV-2026-000001")[0]
    now = T0
    for _ in range(delivery.MAX_ATTEMPTS):
        assert delivery.claim(ledger, row["id"], now)  # ...and then the process died
        now += delivery.LEASE + dt.timedelta(seconds=1)
    assert not delivery.claim(ledger, row["id"], now)
    report = send(ledger, issued, smtp, now=now)
    assert [(i["number"], i["attempts"]) for i in report.failed] == [("INV-2026-000001", 8)]
    assert [i["number"] for i in report.sent] == ["INV-2026-000002", "INV-2026-000003"]
    stored = delivery.deliveries(ledger, number="INV-2026-000001")[0]
    assert (stored["status"], stored["attempts"]) == ("failed", 8)
    assert "attempt 8 of 8 never finished" in stored["last_error"]


@pytest.mark.parametrize(
    "ledger", ["sqlite"], indirect=True
)  # the catalog refuses it before any ledger is opened
def test_a_catalog_email_that_could_inject_a_header_is_refused_at_load_and_send_sends_nothing(
    ledger, issued, mailbox, tmp_path
):
    """The first defence is the catalog: the address never reaches delivery (the row-level
    failure above is the second, for addresses that come from anywhere else)."""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "issuer": {"name": "Example AI GmbH", "email": "invoices@example-ai.example"},
                "plans": {},
                "customers": {
                    c: {
                        "name": c.title(),
                        "subscriptions": [],
                        "email": INJECTED if c == "acme" else EMAILS[c],
                    }
                    for c in CUSTOMERS
                },
            }
        )
    )
    env = {
        "BILLING_SMTP_HOST": "127.0.0.1",
        "BILLING_SMTP_PORT": str(mailbox.port),
        "BILLING_SMTP_SECURITY": "none",
        "BILLING_SMTP_FROM": None,
        "BILLING_DATABASE_URL": None,
    }
    url = ledger.engine.url.render_as_string(hide_password=False)
    result = cli(
        [
            "send",
            "--month",
            MONTH,
            "--out",
            str(issued),
            "--catalog",
            str(catalog),
            "--database-url",
            url,
        ],
        env,
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert (
        "customers.acme.email" in result.output and "not one plain email address" in result.output
    )
    assert mailbox.envelopes == []
