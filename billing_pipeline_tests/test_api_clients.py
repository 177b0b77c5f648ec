"""The admin-API clients against a local server on 127.0.0.1 that answers in the documented shape:
pages are saved as returned, pagination is followed, 429/5xx are retried, and the day's totals
read back from the landing zone equal the server's totals exactly, once."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import polars as pl
import pytest

from billing_pipeline.sources import SOURCES, provider_costs
from billing_pipeline.sources.api import anthropic as anthropic_api
from billing_pipeline.sources.api import openai as openai_api
from billing_pipeline.sources.api.client import ApiError, retry_after_seconds
from billing_pipeline_tests.support.admin_api import (
    ANTHROPIC_KEY,
    ANTHROPIC_USAGE,
    DAY,
    OPENAI_COMPLETIONS,
    OPENAI_KEY,
    T0,
    FakeAdminApi,
    anthropic_page,
    completions,
    fast_policy,
    openai_page,
)


def totals(events: pl.DataFrame) -> dict[str, int]:
    return dict(events.group_by("meter").agg(pl.col("quantity").sum()).iter_rows())


def test_openai_day_read_back_from_saved_pages_equals_the_api_totals(api, tmp_path):
    waits: list[float] = []
    written = openai_api.fetch_day(
        tmp_path, DAY, base_url=f"{api}/v1", api_key=OPENAI_KEY, policy=fast_policy(waits)
    )
    assert waits == [2.0, 0.5]  # Retry-After honoured on the 429, backoff on the 500
    completion_files = sorted(p.name for p in (tmp_path / "openai/usage/completions").iterdir())
    assert completion_files == ["2026-10-05_p1.json", "2026-10-05_p2.json", "2026-10-05_p3.json"]
    assert (tmp_path / "openai/usage/completions/2026-10-05_p2.json").read_bytes() == json.dumps(
        OPENAI_COMPLETIONS[1], indent=1
    ).encode()
    assert len(written) == 3 + 4 + 1

    read = SOURCES["openai_usage_api"](tmp_path, DAY, date(2026, 10, 6))
    results = [r for page in OPENAI_COMPLETIONS for r in page["data"][0]["results"]]
    got = totals(read.events)
    assert (
        got["input_tokens"] + got["cached_input_tokens"] + got["cache_write_tokens"]
        == sum(r["input_tokens"] for r in results) + 5000
    )  # + embeddings input
    assert got["output_tokens"] == sum(r["output_tokens"] for r in results)
    assert got["requests"] == sum(r["num_model_requests"] for r in results) + 7 + 2 + 3 + 1
    assert (got["images"], got["characters"], got["audio_seconds"]) == (4, 1200, 95)
    assert read.quarantine.height == 0 and read.records_read == 4 + 4
    assert read.events["event_id"].is_unique().all()


def test_openai_requests_are_daily_grouped_and_authenticated(api, tmp_path):
    openai_api.fetch_day(
        tmp_path,
        DAY,
        endpoints=("completions",),
        costs=False,
        base_url=f"{api}/v1",
        api_key=OPENAI_KEY,
        policy=fast_policy([]),
    )
    path, query, headers = FakeAdminApi.seen[0]
    assert (
        query["bucket_width"] == ["1d"]
        and query["start_time"] == [str(T0)]
        and query["end_time"] == [str(T0 + 86400)]
    )
    assert query["group_by"] == [
        "project_id",
        "user_id",
        "api_key_id",
        "model",
        "batch",
        "service_tier",
    ]
    assert headers["Authorization"] == f"Bearer {OPENAI_KEY}"
    assert [q.get("page") for _, q, _ in FakeAdminApi.seen] == [
        None,
        ["c2"],
        ["c2"],
        ["c3"],
        ["c3"],
    ]


def test_refetching_a_day_replaces_its_pages_and_counts_once(api, tmp_path):
    for _ in range(2):
        FakeAdminApi.faults = {}
        openai_api.fetch_day(
            tmp_path, DAY, base_url=f"{api}/v1", api_key=OPENAI_KEY, policy=fast_policy([])
        )
    (tmp_path / "openai/usage/completions/2026-10-05_p9.json").write_text(
        "{}"
    )  # a stale page from a longer fetch
    openai_api.fetch_day(
        tmp_path, DAY, base_url=f"{api}/v1", api_key=OPENAI_KEY, policy=fast_policy([])
    )
    assert not (tmp_path / "openai/usage/completions/2026-10-05_p9.json").exists()
    read = SOURCES["openai_usage_api"](tmp_path, DAY, date(2026, 10, 6))
    assert read.records_read == 8 and read.events["event_id"].is_unique().all()


def test_anthropic_day_read_back_equals_the_report_totals(api, tmp_path):
    waits: list[float] = []
    anthropic_api.fetch_day(
        tmp_path, DAY, base_url=api, api_key=ANTHROPIC_KEY, policy=fast_policy(waits)
    )
    assert waits == [2.0, 0.5]
    path, query, headers = FakeAdminApi.seen[0]
    assert path == "/v1/organizations/usage_report/messages"
    assert headers["x-api-key"] == ANTHROPIC_KEY and headers["anthropic-version"] == "2023-06-01"
    assert query["starting_at"] == ["2026-10-05T00:00:00Z"] and "model" in query["group_by[]"]
    read = SOURCES["anthropic_usage_report"](tmp_path, DAY, date(2026, 10, 6))
    results = [r for page in ANTHROPIC_USAGE for r in page["data"][0]["results"]]
    got = totals(read.events)
    assert got == {
        "input_tokens": sum(r["uncached_input_tokens"] for r in results),
        "cached_input_tokens": sum(r["cache_read_input_tokens"] for r in results),
        "cache_write_tokens": sum(
            r["cache_creation"]["ephemeral_1h_input_tokens"]
            + r["cache_creation"]["ephemeral_5m_input_tokens"]
            for r in results
        ),
        "output_tokens": sum(r["output_tokens"] for r in results),
        "web_search_requests": sum(r["server_tool_use"]["web_search_requests"] for r in results),
    }
    assert read.records_read == 3 and read.events["event_id"].is_unique().all()


def test_provider_costs_are_dollars_from_openai_floats_and_anthropic_cents(api, tmp_path):
    openai_api.fetch_day(
        tmp_path,
        DAY,
        endpoints=(),
        base_url=f"{api}/v1",
        api_key=OPENAI_KEY,
        policy=fast_policy([]),
    )
    anthropic_api.fetch_day(
        tmp_path, DAY, usage=False, base_url=api, api_key=ANTHROPIC_KEY, policy=fast_policy([])
    )
    read = provider_costs.read(tmp_path, DAY, date(2026, 10, 6))
    rows = {r["line_item"]: r for r in read.costs.iter_rows(named=True)}
    assert rows["gpt-4o-2024-08-06, input"]["amount"] == Decimal("2.1125")
    assert rows["gpt-4o-2024-08-06, input"]["model"] == "gpt-4o-2024-08-06"
    assert rows["gpt-4o-mini-2024-07-18, cached input"]["token_type"] == "cached input"
    assert rows["gpt-4o-mini-2024-07-18, cached input"]["amount"] == Decimal("0.1")
    assert rows["Claude Sonnet 4.5 Usage - Input Tokens"]["amount"] == Decimal(
        "1.2345"
    )  # "123.45" cents
    assert rows["Web search"]["amount"] == Decimal("0.005")
    assert (
        read.records_read == 4
        and read.quarantine.height == 0
        and read.costs["cost_id"].is_unique().all()
    )


def test_a_cost_amount_that_is_not_money_is_quarantined(tmp_path):
    folder = tmp_path / "anthropic/cost_report"
    folder.mkdir(parents=True)
    page = anthropic_page(
        [
            {"amount": 12.5, "currency": "USD", "workspace_id": "w"},
            {"amount": "NaN", "workspace_id": "w"},
        ]
    )
    (folder / "2026-10-05_p1.json").write_text(json.dumps(page))
    read = provider_costs.read(tmp_path, DAY, date(2026, 10, 6))
    assert read.costs.height == 0 and read.quarantine["reason"].to_list() == [
        "bad_number",
        "bad_number",
    ]
    assert read.quarantine["field"].to_list() == [
        "data[0].results[0].amount",
        "data[0].results[1].amount",
    ]


def test_a_client_error_fails_at_once_without_leaking_the_key(api, tmp_path):
    FakeAdminApi.routes.pop("/v1/organization/costs")
    waits: list[float] = []
    with pytest.raises(ApiError) as err:
        openai_api.fetch_day(
            tmp_path,
            DAY,
            endpoints=(),
            base_url=f"{api}/v1",
            api_key=OPENAI_KEY,
            policy=fast_policy(waits),
        )
    assert "404" in str(err.value) and "TESTSECRET" not in str(err.value) and waits == []


def test_retries_are_bounded(api, tmp_path):
    FakeAdminApi.faults = {("/v1/organization/costs", ""): [503] * 10}
    waits: list[float] = []
    with pytest.raises(ApiError, match="gave up after 4 attempts, last: HTTP 503"):
        openai_api.fetch_day(
            tmp_path,
            DAY,
            endpoints=(),
            base_url=f"{api}/v1",
            api_key=OPENAI_KEY,
            policy=fast_policy(waits),
        )
    assert waits == [0.5, 1.0, 2.0] and not (tmp_path / "openai/costs").exists()


def test_missing_admin_key_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    with pytest.raises(ApiError, match="OPENAI_ADMIN_KEY is not set"):
        openai_api.fetch_day(tmp_path, DAY, base_url="http://127.0.0.1:9")


def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2026, 10, 5, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Mon, 05 Oct 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("soon") is None


def test_fetch_assets_write_the_day_into_the_landing_zone(api, tmp_path):
    import dagster as dg

    from billing_pipeline.defs.fetch import anthropic_api_pages, openai_api_pages
    from billing_pipeline.defs.resources import LandingZone, ProviderAdminApi

    resources = {
        "landing": LandingZone(path=str(tmp_path)),
        "openai_admin_api": ProviderAdminApi(api_key=OPENAI_KEY, base_url=f"{api}/v1"),
        "anthropic_admin_api": ProviderAdminApi(api_key=ANTHROPIC_KEY, base_url=api),
    }
    FakeAdminApi.faults = {}
    result = dg.materialize(
        [openai_api_pages, anthropic_api_pages], partition_key="2026-10-05", resources=resources
    )
    assert result.success
    assert SOURCES["openai_usage_api"](tmp_path, DAY, date(2026, 10, 6)).records_read == 8
    assert SOURCES["anthropic_usage_report"](tmp_path, DAY, date(2026, 10, 6)).records_read == 3
    assert len(list((tmp_path / "anthropic/cost_report").iterdir())) == 1


# ---------------------------------------------------------------- hardening: no secret leaks, no partial day


class EchoingApi(BaseHTTPRequestHandler):
    """A provider (or a proxy) that echoes the request, admin key included, in its error bodies:
    ``statuses`` are answered in order. The key comes once near the start and once more across
    the 300th character of the body, where cutting before redacting would keep a prefix of it."""

    statuses: list[int] = []

    def do_GET(self):
        status = self.statuses.pop(0) if self.statuses else 500
        key = self.headers.get("x-api-key") or self.headers.get("Authorization").removeprefix(
            "Bearer "
        )
        head = f'{{"error": {{"message": "invalid key {self.headers.get("Authorization")} {key} env {WEBHOOK_SECRET} '
        body = (
            head + "x" * (293 - len(head)) + f" {key} (echoed)" + '"}}'
        )  # 6 characters of the key within the first 300
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


WEBHOOK_SECRET = "whsec_TESTSECRET_webhook"


@pytest.fixture
def echo(monkeypatch):
    monkeypatch.setenv("BILLING_WEBHOOK_SECRET_ACME", WEBHOOK_SECRET)
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _no_secret(text: str) -> None:
    for fragment in (
        "TESTSECRET",
        "sk-adm",
        "sk-ant",
        "whsec_",
    ):  # the secrets, or the first 6 characters
        assert fragment not in text, text


def test_a_500_echoing_the_key_leaks_it_neither_into_the_error_nor_the_retry_logs(
    echo, tmp_path, caplog
):
    EchoingApi.statuses = [500, 500, 500, 500]
    caplog.set_level("WARNING", logger="billing_pipeline.sources.api.client")
    with pytest.raises(ApiError) as err:
        openai_api.fetch_day(
            tmp_path,
            DAY,
            endpoints=(),
            base_url=f"{echo}/v1",
            api_key=OPENAI_KEY,
            policy=fast_policy([]),
        )
    message = str(err.value)
    assert message.startswith("GET /organization/costs: gave up after 4 attempts, last: HTTP 500: ")
    assert "invalid key [REDACTED] [REDACTED] env [REDACTED]" in message
    _no_secret(message)
    retries = [r.getMessage() for r in caplog.records]
    assert len(retries) == 3  # 4 attempts: 3 logged retries, then the error
    for line in retries:
        _no_secret(line)
    assert err.value.__cause__ is None and err.value.__context__ is None  # no chained httpx text


def test_a_400_echoing_the_anthropic_key_fails_at_once_redacted(echo, tmp_path):
    EchoingApi.statuses = [400]
    waits: list[float] = []
    with pytest.raises(ApiError) as err:
        anthropic_api.fetch_day(
            tmp_path,
            DAY,
            costs=False,
            base_url=echo,
            api_key=ANTHROPIC_KEY,
            policy=fast_policy(waits),
        )
    assert "HTTP 400" in str(err.value) and waits == []
    _no_secret(str(err.value))


def test_redact_removes_keys_from_the_environment_and_their_encoded_spellings(monkeypatch):
    from billing_pipeline.sources.api.client import redact

    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-TESTSECRET/with+slash")
    monkeypatch.setenv("BILLING_WEBHOOK_SECRET_GLOBEX", "whsec_TESTSECRET_globex")
    text = (
        "a sk-admin-TESTSECRET/with+slash b sk-admin-TESTSECRET%2Fwith%2Bslash "
        "c sk-admin-TESTSECRET\\/with+slash d whsec_TESTSECRET_globex"
    )
    assert redact(text) == "a [REDACTED] b [REDACTED] c [REDACTED] d [REDACTED]"
    assert redact("nothing to hide") == "nothing to hide"


class PagingApi(BaseHTTPRequestHandler):
    """Answers page N (cursor ``cN``) from ``pages``; ``pages`` is set per test."""

    pages: list[dict] = []

    def do_GET(self):
        cursor = parse_qs(urlparse(self.path).query).get("page", ["c1"])[0]
        body = json.dumps(self.pages[int(cursor[1:]) - 1]).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def paging():
    server = ThreadingHTTPServer(("127.0.0.1", 0), PagingApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_has_more_without_a_next_page_cursor_is_an_error_naming_the_path_and_page(paging, tmp_path):
    page = completions("proj_a", "gpt-4o", 1)
    PagingApi.pages = [
        openai_page([page], "c2"),
        {**openai_page([page]), "has_more": True, "next_page": None},
    ]
    with pytest.raises(
        ApiError,
        match=r"GET /organization/usage/completions: page 2 says has_more but gives no "
        r"next_page cursor",
    ):
        openai_api.fetch_day(
            tmp_path,
            DAY,
            endpoints=("completions",),
            costs=False,
            base_url=f"{paging}/v1",
            api_key=OPENAI_KEY,
            policy=fast_policy([]),
        )
    assert not (
        tmp_path / "openai/usage/completions"
    ).exists()  # no partial day in the landing zone


def test_the_page_limit_is_an_error_never_a_silent_partial_day(paging):
    import httpx

    from billing_pipeline.sources.api.client import fetch_all_pages

    PagingApi.pages = [
        openai_page([], f"c{n + 1}") for n in range(1, 5)
    ]  # every page says has_more
    with (
        httpx.Client(base_url=paging) as client,
        pytest.raises(
            ApiError, match=r"GET /costs: page 3 says has_more after 3 pages \(the limit\)"
        ),
    ):
        fetch_all_pages(client, "/costs", [], fast_policy([]), max_pages=3)
    PagingApi.pages = [openai_page([], "c2"), openai_page([], "c2")]  # a cursor that loops
    with httpx.Client(base_url=paging) as client, pytest.raises(ApiError, match="page 2 repeats"):
        fetch_all_pages(client, "/costs", [], fast_policy([]))
    PagingApi.pages = [openai_page([], "c2"), openai_page([])]  # has_more false on page 2: complete
    with httpx.Client(base_url=paging) as client:
        assert len(fetch_all_pages(client, "/costs", [], fast_policy([]))) == 2


def test_a_failing_fetch_asset_stores_no_key_in_the_dagster_run(echo, tmp_path):
    """What the issue saw: the key in the run storage, once per Dagster retry. The 400 fails at
    once (the client retries only 429 and 5xx, and Dagster retries nothing on top)."""
    import dagster as dg

    from billing_pipeline.defs.fetch import openai_api_pages
    from billing_pipeline.defs.resources import LandingZone, ProviderAdminApi

    EchoingApi.statuses = [400] * 20
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [openai_api_pages],
            partition_key="2026-10-05",
            instance=instance,
            raise_on_error=False,
            resources={
                "landing": LandingZone(path=str(tmp_path)),
                "openai_admin_api": ProviderAdminApi(api_key=OPENAI_KEY, base_url=f"{echo}/v1"),
            },
        )
        assert not result.success
        failures = [
            e
            for e in result.all_events
            if e.is_step_failure
            or e.event_type_value == "STEP_RESTARTED"
            or e.event_type_value == "STEP_UP_FOR_RETRY"
        ]
        assert failures and any("HTTP 400" in str(e.event_specific_data) for e in failures)
        for record in instance.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.STEP_FAILURE)
        ) + instance.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
        ):
            _no_secret(str(record.event_log_entry))
        for event in result.all_events:
            _no_secret(str(event))
