"""Signed webhook delivery from the outbox.

Each request carries the alert id (the receiver's idempotency key), a Unix timestamp, and
``X-Billing-Signature: sha256=<hex>``, the HMAC-SHA256 with the customer's secret of
``<timestamp>.<body>``. Signing the timestamp with the body means a captured request cannot be
replayed later with a fresh timestamp; receivers reject timestamps older than a few minutes
(``verify``). A 2xx response acknowledges the alert; anything else (or no answer) is retried with
backoff by the next delivery run.

Where we may POST (SSRF). The catalog's URL rules (``catalog.model.Webhook``) run again at every
attempt, and the host name is resolved then: if *any* address it resolves to is loopback,
link-local, private, unique-local, multicast, unspecified, reserved or a cloud metadata address,
nothing is sent. The request then goes to the address we checked (the URL's host stays in the
``Host`` header and TLS SNI/certificate check), so a name that re-resolves between the check and
the connection (DNS rebinding) cannot redirect us. Redirects are never followed: a 3xx is a failed
attempt. A URL whose shape is wrong (a scheme other than https/http, no host, credentials, not a
URL) is refused for good: the row becomes ``no_endpoint`` and is never retried.

What is stored. ``last_error`` holds a coarse outcome (``refused: ...``, ``unreachable``,
``rejected: HTTP 4xx``, ``redirect not followed: HTTP 3xx``), never the exact status or the
response body: a catalog author must not learn the shape of a network by reading our outbox.

Tests post to a receiver on 127.0.0.1: they opt in with ``BILLING_WEBHOOK_ALLOW_PRIVATE=1`` in
the environment (or ``deliver_due(..., allow_private=True)``), which only lifts the address rules;
it is not a catalog field, so no catalog can switch it on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx
from sqlalchemy.engine import Engine

from billing_pipeline.alerts import outbox
from billing_pipeline.catalog.model import Webhook

SIGNATURE_HEADER = "X-Billing-Signature"
TIMESTAMP_HEADER = "X-Billing-Timestamp"
ALERT_ID_HEADER = "X-Billing-Alert-Id"
TOLERANCE_SECONDS = 300
TIMEOUT_SECONDS = 10


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    body: bytes,
    headers: Mapping[str, str],
    now: dt.datetime,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = int(lowered.get(TIMESTAMP_HEADER.lower(), ""))
    except ValueError:
        return False
    if abs(now.timestamp() - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected, lowered.get(SIGNATURE_HEADER.lower(), ""))


def secret_from_env(name: str) -> bytes:
    """The signing secret; only variables named ``BILLING_WEBHOOK_SECRET_*`` (rows recorded before
    that rule, or written by hand, cannot make us sign with e.g. a provider admin key)."""
    if not (name or "").startswith(Webhook.SECRET_PREFIX):
        raise LookupError(f"webhook secret: {name!r} is not a {Webhook.SECRET_PREFIX}* variable")
    value = os.environ.get(name)
    if not value:
        raise LookupError(f"webhook secret: environment variable {name} is not set")
    return value.encode()


class Refused(Exception):
    """The URL may not be contacted; ``permanent`` when no later attempt can succeed."""

    def __init__(self, reason: str, permanent: bool = False):
        super().__init__(reason)
        self.permanent = permanent


Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address the host name resolves to (TCP); an ``OSError`` when it does not resolve."""
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


@dataclass(frozen=True)
class Target:
    """Where one attempt goes: the URL with the checked address as host, plus Host and SNI."""

    url: httpx.URL
    host_header: str
    sni_hostname: str | None


def checked_target(url: str, allow_private: bool, resolver: Resolver = resolve) -> Target:
    """The send-time check: the catalog's URL rules, then every resolved address. Raises ``Refused``."""
    # http was vetted at catalog load (``allow_http`` on the webhook); the outbox keeps only the URL.
    # The shape of the URL (scheme, host, credentials) can never change: refused for good.
    problem = Webhook.url_problem(url or "", allow_http=True, allow_private=True)
    if problem:
        raise Refused(f"refused: {problem}", permanent=True)
    # A literal inner address, like a name resolving to one, is retried (and refused again).
    problem = None if allow_private else Webhook.url_problem(url, allow_http=True)
    if problem:
        raise Refused(f"refused: {problem}")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise Refused("refused: not a valid URL", permanent=True) from None
    scheme = parsed.scheme.lower()
    host = parsed.raw_host.decode("ascii").strip("[]")  # IDNA-encoded; an IPv6 literal unbracketed
    port = parsed.port or (443 if scheme == "https" else 80)
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolver(host, port)]
        except (OSError, UnicodeError, ValueError):
            raise Refused("unreachable") from None
    if not addresses:
        raise Refused("unreachable")
    if not allow_private and any(Webhook.address_problem(a) for a in addresses):
        raise Refused(f"refused: {host} resolves to a non-public address")
    return Target(
        url=parsed.copy_with(host=str(addresses[0])),
        host_header=parsed.netloc.decode("ascii"),
        sni_hostname=host if scheme == "https" else None,
    )


def outcome(response: httpx.Response) -> str:
    """A coarse description of a non-2xx answer: the status class, never the exact code or body."""
    klass = f"HTTP {response.status_code // 100}xx"
    if 300 <= response.status_code < 400:
        return f"redirect not followed: {klass}"
    return f"rejected: {klass}"


@dataclass
class DeliveryReport:
    delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # alert id -> last error (coarse)
    skipped: list[str] = field(default_factory=list)  # held by another deliverer
    refused: dict[str, str] = field(default_factory=dict)  # alert id -> why it will never be sent


def deliver_due(
    engine: Engine,
    now: Callable[[], dt.datetime] | None = None,
    secret: Callable[[str], bytes] = secret_from_env,
    client: httpx.Client | None = None,
    allow_private: bool | None = None,
    resolver: Resolver = resolve,
) -> DeliveryReport:
    """One attempt for every due row. Rows that fail stay pending with their next attempt time;
    rows whose URL can never be used are refused for good. ``allow_private``: the test opt-in
    (default: ``BILLING_WEBHOOK_ALLOW_PRIVATE=1`` in the environment)."""
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    private = Webhook.private_allowed() if allow_private is None else allow_private
    report = DeliveryReport()
    own_client = client is None
    client = client or httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False)
    try:
        for row in outbox.due(engine, clock()):
            started = clock()
            if not outbox.claim(engine, row["alert_id"], started):
                report.skipped.append(row["alert_id"])
                continue
            attempt = row["attempts"] + 1  # counted by the claim
            body = row["payload"].encode("utf-8")
            timestamp = int(started.timestamp())
            try:
                target = checked_target(row["url"], private, resolver)
                headers = {
                    "Content-Type": "application/json",
                    ALERT_ID_HEADER: row["alert_id"],
                    TIMESTAMP_HEADER: str(timestamp),
                    "Host": target.host_header,
                    SIGNATURE_HEADER: sign(secret(row["secret_env"]), timestamp, body),
                }
                extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
                response = client.post(
                    target.url,
                    content=body,
                    headers=headers,
                    follow_redirects=False,
                    extensions=extensions,
                )
                ok = 200 <= response.status_code < 300
                error = "" if ok else outcome(response)
            except Refused as exc:
                if exc.permanent:
                    outbox.refuse(engine, row["alert_id"], attempt, str(exc), clock())
                    report.refused[row["alert_id"]] = str(exc)
                    continue
                ok, error = False, str(exc)
            except httpx.HTTPError:
                ok, error = False, "unreachable"
            except LookupError as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001 - one row's surprise must not stop the others
                ok, error = False, f"failed: {type(exc).__name__}"
            if ok:
                outbox.acknowledge(engine, row["alert_id"], clock())
                report.delivered.append(row["alert_id"])
            else:
                outbox.failed(engine, row["alert_id"], attempt, error, clock())
                report.failed[row["alert_id"]] = error
    finally:
        if own_client:
            client.close()
    return report


def deliver_all_due(engine: Engine, rounds: int = 50, **kwargs) -> DeliveryReport:
    """``deliver_due`` again until a pass finds nothing to attempt (each pass takes the oldest due
    rows, at most ``outbox.due``'s limit): an hour's new alerts are sent in the run that found
    them, not left behind a backlog of older ones. A failed row waits for its backoff, so it is
    not attempted twice here; ``rounds`` bounds the passes."""
    total = DeliveryReport()
    for _ in range(rounds):
        report = deliver_due(engine, **kwargs)
        total.delivered += report.delivered
        total.failed.update(report.failed)
        total.skipped += report.skipped
        total.refused.update(report.refused)
        if not (report.delivered or report.failed or report.refused):
            break
    return total
