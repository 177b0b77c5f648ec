"""One retry layer for the provider admin APIs: the client's (sources/api/client.py). A page that
never stops failing costs exactly the client's attempts in HTTP calls when a fetch asset runs:
Dagster retries nothing on top (defs/fetch.py says why)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from billing_pipeline.defs.fetch import anthropic_api_pages, openai_api_pages
from billing_pipeline.defs.resources import LandingZone, ProviderAdminApi
from billing_pipeline.sources.api.client import RetryPolicy


class AlwaysUnavailable(BaseHTTPRequestHandler):
    """Every request answered 503, with ``Retry-After: 0`` so the client's waits take no time."""

    calls: list[str] = []

    def do_GET(self):
        self.calls.append(self.path)
        self.send_response(503)
        self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(b'{"error": {"message": "overloaded"}}')

    def log_message(self, *args):
        pass


@pytest.fixture
def unavailable():
    AlwaysUnavailable.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), AlwaysUnavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("asset", "resource", "path"),
    [
        (openai_api_pages, "openai_admin_api", "/v1"),
        (anthropic_api_pages, "anthropic_admin_api", ""),
    ],
)
def test_a_page_that_always_answers_503_is_asked_for_exactly_the_clients_attempts(
    unavailable, tmp_path, asset, resource, path
):
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [asset],
            partition_key="2026-10-05",
            instance=instance,
            raise_on_error=False,
            resources={
                "landing": LandingZone(path=str(tmp_path)),
                resource: ProviderAdminApi(api_key="sk-test-key", base_url=f"{unavailable}{path}"),
            },
        )
    attempts = RetryPolicy().attempts
    assert not result.success
    assert len(AlwaysUnavailable.calls) == attempts == 5  # the first page, 5 times; nothing after
    assert len(set(AlwaysUnavailable.calls)) == 1
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert f"gave up after {attempts} attempts, last: HTTP 503" in failure.to_string()
    assert not [
        e
        for e in result.all_events
        if e.event_type_value in ("STEP_UP_FOR_RETRY", "STEP_RESTARTED")
    ]
    assert not list(tmp_path.rglob("*.json"))  # no partial day in the landing zone
