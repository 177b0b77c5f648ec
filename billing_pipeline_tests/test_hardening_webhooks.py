"""Webhook URLs cannot be aimed at our own network (SSRF), and the outbox tells a catalog author
nothing about it.

The catalog refuses unsupported schemes, plain http without ``allow_http``, and literal loopback,
link-local, private and metadata addresses; every delivery resolves the host again and refuses if
any address is not public, then connects to the address it checked. Redirects are not followed.
Tests that post to 127.0.0.1 opt in with ``BILLING_WEBHOOK_ALLOW_PRIVATE=1`` (environment), which
no catalog can set.
"""

from __future__ import annotations

import datetime as dt
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import sqlalchemy as sa

from billing_pipeline.alerts.outbox import outbox_rows
from billing_pipeline.alerts.run import evaluate_day
from billing_pipeline.alerts.webhooks import deliver_due
from billing_pipeline.catalog import CatalogError
from billing_pipeline.ledger.tables import alert_outbox
from billing_pipeline_tests.support.alerts import catalog, steady, usage

T0 = dt.datetime(2026, 10, 8, 1, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 10, 5)  # acme has spent $5.00 of its $10.00 limit: one alert (50 %)
ALERT = "limit:acme:2026-10:50"
PUBLIC = (
    "93.184.215.14"  # a public address (example.com's range): the DNS answer of a good receiver
)


@pytest.fixture(autouse=True)
def secret(monkeypatch):
    monkeypatch.setenv("BILLING_WEBHOOK_SECRET_ACME", "whsec_test_0123456789")
    monkeypatch.delenv("BILLING_WEBHOOK_ALLOW_PRIVATE", raising=False)  # the production default


def catalog_with(**webhook):
    return catalog(**{"webhook": {"secret_env": "BILLING_WEBHOOK_SECRET_ACME", **webhook}})


class Recorder:
    """An httpx transport standing in for the network: records every request, answers ``status``."""

    def __init__(self, status: int = 200, headers: dict | None = None):
        self.requests: list[httpx.Request] = []
        self.status, self.headers = status, headers or {}

    def client(self) -> httpx.Client:
        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return httpx.Response(
                self.status, headers=self.headers, text="internal detail: port 6379 redis"
            )

        return httpx.Client(transport=httpx.MockTransport(handle))


def dns(*answers: str):
    return lambda host, port: list(answers)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1/hook", "127.0.0.1 is a loopback address"),
        ("https://localhost:8080/hook", "host 'localhost' is a local or metadata name"),
        ("https://[::1]/hook", "::1 is a loopback address"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254 is a cloud metadata address"),
        ("https://10.0.0.7/hook", "10.0.0.7 is a private address"),
        ("https://[fd12:3456::1]/hook", "fd12:3456::1 is a private address"),  # unique-local
        ("https://[::ffff:127.0.0.1]/hook", "127.0.0.1 is a loopback address"),  # IPv4-mapped IPv6
        ("https://0.0.0.0/hook", "0.0.0.0 is an unspecified address"),
        ("https://224.0.0.1/hook", "224.0.0.1 is a multicast address"),
        ("file:///etc/passwd", "scheme 'file' is not supported"),
        ("gopher://hooks.acme.example/_", "scheme 'gopher' is not supported"),
        ("ftp://hooks.acme.example/x", "scheme 'ftp' is not supported"),
        ("http://hooks.acme.example/x", "plain http is refused"),
        ("https://user:pass@hooks.acme.example/x", "credentials in the URL are refused"),
    ],
)
def test_the_catalog_refuses_urls_that_point_inside_or_use_another_scheme(url, why):
    with pytest.raises(CatalogError, match="customers.acme.webhook") as err:
        catalog_with(url=url)
    assert why in str(err.value)


def test_http_needs_the_explicit_catalog_flag_and_private_addresses_need_the_test_opt_in(
    monkeypatch,
):
    assert (
        catalog_with(url="http://hooks.acme.example/x", allow_http=True)
        .customers["acme"]
        .webhook.allow_http
    )
    with pytest.raises(CatalogError, match="loopback"):
        catalog_with(url="http://127.0.0.1:9/x", allow_http=True)  # allow_http is not allow_private
    with pytest.raises(CatalogError, match="allow_private"):
        catalog_with(
            url="https://hooks.acme.example/x", allow_private=True
        )  # no such catalog field
    monkeypatch.setenv("BILLING_WEBHOOK_ALLOW_PRIVATE", "1")
    assert catalog_with(url="http://127.0.0.1:9/x", allow_http=True).customers["acme"].webhook.url


@pytest.mark.parametrize(
    "name",
    [
        "OPENAI_ADMIN_KEY",
        "ANTHROPIC_ADMIN_KEY",
        "BILLING_SMTP_PASSWORD",
        "ACME_WEBHOOK_SECRET",
        "BILLING_WEBHOOK_SECRET_",
        "billing_webhook_secret_acme",
    ],
)
def test_secret_env_must_name_a_billing_webhook_secret_variable(name):
    with pytest.raises(CatalogError, match="BILLING_WEBHOOK_SECRET_<NAME>"):
        catalog(**{"webhook": {"url": "https://hooks.acme.example/x", "secret_env": name}})


@pytest.mark.parametrize(
    "answers",
    [
        ("127.0.0.1",),
        (PUBLIC, "10.1.2.3"),
        ("169.254.169.254",),
        ("::1",),
        ("fd00:ec2::254",),
        ("100.64.0.1",),
    ],
)
def test_a_name_resolving_to_any_inner_address_is_refused_at_send_time(ledger, tmp_path, answers):
    evaluate_day(
        usage(steady()),
        catalog_with(url="https://hooks.acme.example/billing"),
        DAY,
        ledger.engine,
        tmp_path,
        now=T0,
    )
    network = Recorder()
    report = deliver_due(
        ledger.engine, now=lambda: T0, client=network.client(), resolver=dns(*answers)
    )
    assert network.requests == []  # nothing left the building
    assert report.failed == {ALERT: "refused: hooks.acme.example resolves to a non-public address"}
    row = outbox_rows(ledger.engine)[0]
    assert (row["status"], row["attempts"]) == (
        "pending",
        1,
    )  # DNS may change: retried with backoff


def test_the_request_goes_to_the_checked_address_with_the_name_in_host_and_sni(ledger, tmp_path):
    """DNS rebinding: a second lookup at connect time could answer 127.0.0.1; we never do one."""
    evaluate_day(
        usage(steady()),
        catalog_with(url="https://hooks.acme.example:8443/billing?v=1"),
        DAY,
        ledger.engine,
        tmp_path,
        now=T0,
    )
    network = Recorder()
    report = deliver_due(
        ledger.engine, now=lambda: T0, client=network.client(), resolver=dns(PUBLIC)
    )
    assert report.delivered == [ALERT]
    (request,) = network.requests
    assert str(request.url) == f"https://{PUBLIC}:8443/billing?v=1"
    assert request.headers["host"] == "hooks.acme.example:8443"
    assert (
        request.extensions["sni_hostname"] == "hooks.acme.example"
    )  # TLS checks the name's certificate


def test_a_redirect_is_not_followed_and_the_stored_outcome_is_coarse(ledger, tmp_path):
    evaluate_day(
        usage(steady()),
        catalog_with(url="https://hooks.acme.example/billing"),
        DAY,
        ledger.engine,
        tmp_path,
        now=T0,
    )
    network = Recorder(302, {"Location": "http://169.254.169.254/latest/meta-data/"})
    report = deliver_due(
        ledger.engine, now=lambda: T0, client=network.client(), resolver=dns(PUBLIC)
    )
    assert len(network.requests) == 1  # the metadata address was never asked
    assert report.failed == {ALERT: "redirect not followed: HTTP 3xx"}
    network = Recorder(404)
    later = T0 + dt.timedelta(minutes=5)
    deliver_due(ledger.engine, now=lambda: later, client=network.client(), resolver=dns(PUBLIC))
    row = outbox_rows(ledger.engine)[0]
    assert row["last_error"] == "rejected: HTTP 4xx"  # not the exact status, not the body
    assert "404" not in row["last_error"] and "redis" not in row["last_error"]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (
            "gopher://127.0.0.1:6379/_FLUSHALL",
            "refused: scheme 'gopher' is not supported: webhooks are https",
        ),
        ("file:///etc/passwd", "refused: scheme 'file' is not supported: webhooks are https"),
        ("https://[::1/hook", "refused: not a valid URL (Invalid IPv6 URL)"),
    ],
)
def test_an_unusable_url_in_the_outbox_is_refused_once_and_never_retried(
    ledger, tmp_path, url, why
):
    """A row recorded before the catalog rule (or by hand): refused at send time, for good."""
    evaluate_day(
        usage(steady()),
        catalog_with(url="https://hooks.acme.example/billing"),
        DAY,
        ledger.engine,
        tmp_path,
        now=T0,
    )
    with ledger.engine.begin() as conn:
        conn.execute(sa.update(alert_outbox).values(url=url))
    network = Recorder()
    first = deliver_due(
        ledger.engine, now=lambda: T0, client=network.client(), resolver=dns(PUBLIC)
    )
    assert first.refused == {ALERT: why}
    a_day_later = T0 + dt.timedelta(days=1)
    second = deliver_due(
        ledger.engine, now=lambda: a_day_later, client=network.client(), resolver=dns(PUBLIC)
    )
    assert (second.failed, second.refused, second.delivered) == ({}, {}, [])
    row = outbox_rows(ledger.engine)[0]
    assert (row["status"], row["attempts"]) == ("no_endpoint", 1) and network.requests == []


def test_a_secret_variable_outside_the_prefix_is_never_used_to_sign(ledger, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-TESTSECRET")
    evaluate_day(
        usage(steady()),
        catalog_with(url="https://hooks.acme.example/billing"),
        DAY,
        ledger.engine,
        tmp_path,
        now=T0,
    )
    with ledger.engine.begin() as conn:
        conn.execute(sa.update(alert_outbox).values(secret_env="OPENAI_ADMIN_KEY"))
    network = Recorder()
    report = deliver_due(
        ledger.engine, now=lambda: T0, client=network.client(), resolver=dns(PUBLIC)
    )
    assert report.failed == {
        ALERT: "LookupError: webhook secret: 'OPENAI_ADMIN_KEY' is not a "
        "BILLING_WEBHOOK_SECRET_* variable"
    }
    assert network.requests == []


def test_without_the_opt_in_a_real_receiver_on_loopback_gets_nothing(ledger, tmp_path, monkeypatch):
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(
            "BILLING_WEBHOOK_ALLOW_PRIVATE", "1"
        )  # the catalog is loaded by a test...
        cat = catalog_with(url=f"http://127.0.0.1:{server.server_port}/hook", allow_http=True)
        evaluate_day(usage(steady()), cat, DAY, ledger.engine, tmp_path, now=T0)
        monkeypatch.delenv(
            "BILLING_WEBHOOK_ALLOW_PRIVATE"
        )  # ...but production delivery has no opt-in
        report = deliver_due(ledger.engine, now=lambda: T0)
        assert report.failed == {ALERT: "refused: 127.0.0.1 is a loopback address"} and hits == []
        later = T0 + dt.timedelta(minutes=5)
        assert deliver_due(ledger.engine, now=lambda: later, allow_private=True).delivered == [
            ALERT
        ]
        assert hits == ["/hook"]
    finally:
        server.shutdown()
        server.server_close()
