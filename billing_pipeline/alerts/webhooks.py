"""Signed webhook delivery from the outbox.

Each request carries the alert id (the receiver's idempotency key), a Unix timestamp, and
``X-Billing-Signature: sha256=<hex>``, the HMAC-SHA256 with the customer's secret of
``<timestamp>.<body>``. Signing the timestamp with the body means a captured request cannot be
replayed later with a fresh timestamp; receivers reject timestamps older than a few minutes
(``verify``). A 2xx response acknowledges the alert; anything else (or no answer) is retried with
backoff by the next delivery run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx
from sqlalchemy.engine import Engine

from billing_pipeline.alerts import outbox

SIGNATURE_HEADER = "X-Billing-Signature"
TIMESTAMP_HEADER = "X-Billing-Timestamp"
ALERT_ID_HEADER = "X-Billing-Alert-Id"
TOLERANCE_SECONDS = 300
TIMEOUT_SECONDS = 10


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, headers: Mapping[str, str], now: dt.datetime,
           tolerance: int = TOLERANCE_SECONDS) -> bool:
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
    value = os.environ.get(name)
    if not value:
        raise LookupError(f"webhook secret: environment variable {name} is not set")
    return value.encode()


@dataclass
class DeliveryReport:
    delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # alert id -> last error
    skipped: list[str] = field(default_factory=list)  # held by another deliverer


def deliver_due(engine: Engine, now: Callable[[], dt.datetime] | None = None,
                secret: Callable[[str], bytes] = secret_from_env,
                client: httpx.Client | None = None) -> DeliveryReport:
    """One attempt for every due row. Rows that fail stay pending with their next attempt time."""
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    report = DeliveryReport()
    own_client = client is None
    client = client or httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False)
    try:
        for row in outbox.due(engine, clock()):
            started = clock()
            if not outbox.claim(engine, row["alert_id"], started):
                report.skipped.append(row["alert_id"])
                continue
            body = row["payload"].encode("utf-8")
            timestamp = int(started.timestamp())
            try:
                headers = {"Content-Type": "application/json", ALERT_ID_HEADER: row["alert_id"],
                           TIMESTAMP_HEADER: str(timestamp),
                           SIGNATURE_HEADER: sign(secret(row["secret_env"]), timestamp, body)}
                response = client.post(row["url"], content=body, headers=headers)
                ok = 200 <= response.status_code < 300
                error = "" if ok else f"HTTP {response.status_code}"
            except (httpx.HTTPError, LookupError) as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"
            if ok:
                outbox.acknowledge(engine, row["alert_id"], clock())
                report.delivered.append(row["alert_id"])
            else:
                outbox.failed(engine, row["alert_id"], row["attempts"], error, clock())
                report.failed[row["alert_id"]] = error
    finally:
        if own_client:
            client.close()
    return report
