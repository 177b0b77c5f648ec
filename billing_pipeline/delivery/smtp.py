"""The SMTP client for invoice delivery: settings from the environment and one thin transport.

Nothing here knows about invoices or the ledger (``delivery.py`` does); this module only turns
an ``EmailMessage`` into one all-or-nothing SMTP transaction and says whether a refusal is worth
retrying.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr

from billing_pipeline.sources.api.client import redact  # the one redaction rule

SECURITY_PORTS = {"none": 25, "starttls": 587, "ssl": 465}


class SmtpConfigError(ValueError):
    """A missing or malformed BILLING_SMTP_* variable: the message names it."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str = "starttls"  # none | starttls | ssl
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 60.0


def smtp_from_env(environ: Mapping[str, str] = os.environ) -> SmtpSettings:
    """``BILLING_SMTP_HOST``, ``_PORT`` (default by security), ``_SECURITY`` (none|starttls|ssl,
    default starttls), ``_USER`` and ``_PASSWORD`` (login only when a user is set)."""
    host = (environ.get("BILLING_SMTP_HOST") or "").strip()
    if not host:
        raise SmtpConfigError(
            "BILLING_SMTP_HOST is not set (or write .eml files with --dry-run DIR)"
        )
    security = (environ.get("BILLING_SMTP_SECURITY") or "starttls").strip().lower()
    if security not in SECURITY_PORTS:
        raise SmtpConfigError(f"BILLING_SMTP_SECURITY={security!r}: expected none, starttls or ssl")
    port_text = (environ.get("BILLING_SMTP_PORT") or "").strip()
    if port_text and not port_text.isdigit():
        raise SmtpConfigError(f"BILLING_SMTP_PORT={port_text!r}: expected a port number")
    return SmtpSettings(
        host=host,
        port=int(port_text) if port_text else SECURITY_PORTS[security],
        security=security,
        user=environ.get("BILLING_SMTP_USER") or None,
        password=environ.get("BILLING_SMTP_PASSWORD") or None,
    )


def is_permanent(error: BaseException) -> bool:
    """A 5xx refusal of the recipient(s) or the message: retrying would be refused again."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    return isinstance(error, smtplib.SMTPDataError) and error.smtp_code >= 500


def describe(error: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """The error as stored in the outbox and printed: the server's words, with the SMTP password
    and every other known secret redacted (a server may echo what it was sent)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        text = "; ".join(
            f"{rcpt}: {code} {_text(resp)}" for rcpt, (code, resp) in error.recipients.items()
        )
    elif isinstance(error, smtplib.SMTPResponseException):
        text = f"{error.smtp_code} {_text(error.smtp_error)}"
    else:
        text = f"{type(error).__name__}: {error}"
    return redact(text, secrets)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class SmtpTransport:
    """One connection for a pass (opened on first use, reopened after a broken one). ``send`` is
    all-or-nothing: MAIL, every RCPT, DATA; any refusal resets and raises, so a retry never
    reaches a recipient twice. Returns the server's reply to DATA (e.g. '250 2.0.0 Ok: queued')."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self._conn: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (OSError, smtplib.SMTPException):
                self._conn.close()
            self._conn = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.security == "ssl":
            conn = smtplib.SMTP_SSL(
                s.host, s.port, timeout=s.timeout, context=ssl.create_default_context()
            )
        else:
            conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            if s.security == "starttls":
                conn.starttls(context=ssl.create_default_context())
        if s.user:
            conn.login(s.user, s.password or "")
        return conn

    def send(self, message: EmailMessage) -> str:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        sender = parseaddr(message["From"])[1]
        recipients = [address for _, address in getaddresses(message.get_all("To", [])) if address]
        try:
            conn.ehlo_or_helo_if_needed()
            code, reply = conn.mail(sender)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, reply, sender)
            refused = {}
            for rcpt in recipients:
                code, reply = conn.rcpt(rcpt)
                if code not in (250, 251):
                    refused[rcpt] = (code, reply)
            if refused:
                raise smtplib.SMTPRecipientsRefused(refused)
            code, reply = conn.data(message.as_bytes(policy=policy.SMTP))
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
            return f"{code} {_text(reply)}"
        except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused):
            try:
                conn.rset()
            except (OSError, smtplib.SMTPException):
                self._drop()
            raise
        except (OSError, smtplib.SMTPException):
            self._drop()
            raise

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
