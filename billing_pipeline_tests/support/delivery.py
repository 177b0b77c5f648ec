"""Invoice delivery test kit: three customers' billing emails and a local SMTP server's mailbox."""

from __future__ import annotations

import datetime as dt
import email
import socket
from email import policy

from click.testing import CliRunner

from billing_pipeline.cli import main
from billing_pipeline.delivery import mail as delivery
from billing_pipeline_tests.support.ledger import MONTH

CUSTOMERS = ("acme", "globex", "initech")
EMAILS = {c: f"billing@{c}.example" for c in CUSTOMERS}
SENDER = delivery.Sender("Example AI GmbH", "invoices@example-ai.example")
T0 = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC)


class Mailbox:
    """aiosmtpd handler: records accepted messages; refuses the next ``refuse`` DATA commands with
    a temporary error, and recipients listed in ``reject`` with a permanent one."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse = 0
        self.reject: set[str] = set()
        self.logins: list[str] = []

    async def handle_RCPT(  # noqa: N802 - aiosmtpd finds handlers by the SMTP verb
        self, server, session, envelope, address, rcpt_options
    ):
        if address in self.reject:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd finds handlers by the SMTP verb
        self, server, session, envelope
    ):
        if self.refuse:
            self.refuse -= 1
            return "451 4.3.0 try again later"
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"

    def numbers(self) -> list[str]:
        return sorted(m["Subject"].split()[1] for m in self.messages)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send(ledger, out, transport, now=T0, recipients=EMAILS, **kwargs):
    """One delivery run at ``now`` over the month's invoices issued under ``out``."""
    return delivery.deliver(
        ledger,
        recipients,
        out,
        transport,
        sender=SENDER,
        period=kwargs.pop("period", MONTH),
        now=now,
        **kwargs,
    )


def cli(args, env):
    """The billing-pipeline command; an exception escapes as itself, not as exit code 1."""
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)
