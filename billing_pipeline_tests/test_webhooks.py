"""Webhook delivery against a real HTTP receiver on 127.0.0.1: signed, retried, never twice."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from billing_pipeline.alerts.outbox import outbox_rows
from billing_pipeline.alerts.run import evaluate_day
from billing_pipeline.alerts.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    deliver_due,
    sign,
    verify,
)
from billing_pipeline_tests.support.alerts import catalog, steady, usage
from billing_pipeline_tests.support.gateway import WebhookReceiver

SECRET = "whsec_test_0123456789"
T0 = dt.datetime(2026, 10, 8, 1, 0, tzinfo=dt.UTC)

# The documented test opt-in: these tests' webhook receivers listen on 127.0.0.1.
pytestmark = pytest.mark.usefixtures("receivers_on_loopback")


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("BILLING_WEBHOOK_SECRET_ACME", SECRET)


def test_thresholds_are_delivered_exactly_once_across_two_reruns(ledger, tmp_path, secret):
    with WebhookReceiver(SECRET, now=T0) as receiver:
        cat, month = catalog(receiver.url), usage(steady())
        for _ in range(2):  # the daily run, then a re-run of the same day
            evaluate_day(month, cat, dt.date(2026, 10, 8), ledger.engine, tmp_path, now=T0)
            deliver_due(ledger.engine, now=lambda: T0)
    assert receiver.ids() == ["limit:acme:2026-10:50", "limit:acme:2026-10:75"]
    assert len(receiver.requests) == 2
    headers, body = receiver.requests[1]
    payload = json.loads(body)
    assert (
        payload["type"],
        payload["spend_to_date"],
        payload["monthly_limit"],
        payload["projected_month_end"],
    ) == ("limit_threshold", "8.00", "10.00", "31.00")


def test_a_receiver_that_fails_twice_then_succeeds_gets_each_alert_once(ledger, tmp_path, secret):
    with WebhookReceiver(SECRET, fail_first=2, now=T0) as receiver:
        evaluate_day(
            usage(steady()),
            catalog(receiver.url),
            dt.date(2026, 10, 5),
            ledger.engine,
            tmp_path,
            now=T0,
        )
        clock = [T0]
        reports = []
        for minutes in (0, 0.25, 1, 3, 10, 60):  # delivery runs; the first retry is due after 30 s
            clock[0] = receiver.now = T0 + dt.timedelta(minutes=minutes)
            reports.append(deliver_due(ledger.engine, now=lambda: clock[0]))
    assert [list(r.failed.values()) for r in reports[:3]] == [
        ["rejected: HTTP 5xx"],
        [],
        ["rejected: HTTP 5xx"],
    ]
    assert (
        reports[3].delivered == ["limit:acme:2026-10:50"]
        and reports[4].delivered == reports[5].delivered == []
    )
    assert receiver.ids() == ["limit:acme:2026-10:50"] and len(receiver.requests) == 3
    row = outbox_rows(ledger.engine)[0]
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 3, None)


def test_a_receiver_detects_a_bad_signature_a_tampered_body_and_a_replayed_request(
    ledger, tmp_path, secret
):
    with WebhookReceiver(SECRET, now=T0) as receiver:
        evaluate_day(
            usage(steady()),
            catalog(receiver.url),
            dt.date(2026, 10, 5),
            ledger.engine,
            tmp_path,
            now=T0,
        )
        deliver_due(ledger.engine, now=lambda: T0)
    headers, body = receiver.requests[0]
    assert headers[SIGNATURE_HEADER] == sign(SECRET.encode(), int(headers[TIMESTAMP_HEADER]), body)
    assert verify(SECRET.encode(), body, headers, T0)
    assert not verify(b"another secret", body, headers, T0)
    assert not verify(SECRET.encode(), body.replace(b'"5.00"', b'"0.50"'), headers, T0)
    assert not verify(
        SECRET.encode(), body, {**headers, TIMESTAMP_HEADER: str(int(T0.timestamp()) + 60)}, T0
    )
    assert not verify(
        SECRET.encode(), body, headers, T0 + dt.timedelta(minutes=10)
    )  # replayed later


def test_a_missing_secret_is_a_failed_attempt_naming_the_variable_not_a_crash(
    ledger, tmp_path, monkeypatch
):
    monkeypatch.delenv("BILLING_WEBHOOK_SECRET_ACME", raising=False)
    with WebhookReceiver(SECRET, now=T0) as receiver:
        evaluate_day(
            usage(steady()),
            catalog(receiver.url),
            dt.date(2026, 10, 5),
            ledger.engine,
            tmp_path,
            now=T0,
        )
        report = deliver_due(ledger.engine, now=lambda: T0)
    assert report.failed == {
        "limit:acme:2026-10:50": "LookupError: webhook secret: environment variable "
        "BILLING_WEBHOOK_SECRET_ACME is not set"
    }
    assert receiver.requests == []
