"""Anthropic's published usage report, billed right: every grouping field a result carries keys
the record and prices it (batch tier, long context, US-only inference), a 1-hour cache write is
its own line, and the month's invoice equals the one computed by hand."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl

from billing_pipeline.catalog import parse_catalog
from billing_pipeline.documents.invoice import build_documents
from billing_pipeline.rating import rate_month
from billing_pipeline.schema import KIND_MONEY_AT_RISK
from billing_pipeline.sources import anthropic_usage
from billing_pipeline.sources.api import anthropic as anthropic_api
from billing_pipeline.usage import normalize
from billing_pipeline_tests.support.admin_api import ANTHROPIC_KEY, FakeAdminApi, fast_policy

FIXTURES = Path(__file__).parent / "data" / "providers" / "anthropic"
DAY, NEXT = date(2025, 8, 1), date(2025, 8, 2)
KEY = "anthropic:apikey_01Rj2N8SVvo6BePZj99NhmiT"


def landing_with(tmp_path: Path, page: dict | None = None) -> Path:
    folder = tmp_path / "anthropic" / "usage_report"
    folder.mkdir(parents=True)
    target = folder / "2025-08-01_p1.json"
    if page is None:
        shutil.copy(FIXTURES / "usage_report_messages.json", target)
    else:
        target.write_text(json.dumps(page))
    return tmp_path


def published() -> dict:
    return json.loads((FIXTURES / "usage_report_messages.json").read_text())


def charge(cid: str, meter: str, price: str, unit_size: int = 1000, **dimensions) -> dict:
    return {
        "id": cid,
        "meter": meter,
        "unit_size": unit_size,
        "unit_price": price,
        "dimensions": dimensions or None,
    }


STANDARD = {"service_tier": "standard", "context_window": "0-200k", "inference_geo": "global"}
LONG = {"service_tier": "standard", "context_window": "200k-1M"}
US = {"service_tier": "standard", "context_window": "0-200k", "inference_geo": "us"}
BATCH = {"service_tier": "batch"}

CATALOG = {
    "issuer": {"name": "Example AI GmbH"},
    "plans": {
        "claude": {
            "name": "Claude pay as you go",
            "charges": [
                # prices per 1,000 tokens (web search: per 1,000 searches)
                charge("in-std", "input_tokens", "0.02", **STANDARD),
                charge("in-batch", "input_tokens", "0.01", **BATCH),
                charge("in-long", "input_tokens", "0.04", **LONG),
                charge("in-us", "input_tokens", "0.04", **US),
                charge("out-std", "output_tokens", "0.08", **STANDARD),
                charge("out-batch", "output_tokens", "0.04", **BATCH),
                charge("out-long", "output_tokens", "0.12", **LONG),
                charge("out-us", "output_tokens", "0.10", **US),
                charge("cache-read", "cached_input_tokens", "0.01"),
                charge("write-5m", "cache_write_tokens", "0.025", cache_ttl="5m"),
                charge("write-1h", "cache_write_tokens", "0.04", cache_ttl="1h"),
                charge("search", "web_search_requests", "10.00"),
            ],
        }
    },
    "customers": {
        "acme": {
            "name": "Acme",
            "subscriptions": [{"plan": "claude", "from": "2025-01-01"}],
            "keys": [KEY],
        }
    },
}


def test_results_that_differ_in_one_grouping_field_are_separate_records_with_that_field_as_a_dimension(
    tmp_path,
):
    read = anthropic_usage.read(landing_with(tmp_path), DAY, NEXT)
    assert read.quarantine.height == 0 and read.records_read == 4
    assert read.events["record_id"].n_unique() == 4  # standard, batch, 200k-1M, us: four records
    inputs = read.events.filter(meter="input_tokens").sort("quantity")
    dims = [json.loads(d) for d in inputs["dimensions"]]
    assert [(d["service_tier"], d["context_window"], d["inference_geo"]) for d in dims] == [
        ("standard", "0-200k", "global"),
        ("standard", "0-200k", "us"),
        ("batch", "0-200k", "global"),
        ("standard", "200k-1M", "global"),
    ]
    assert inputs["quantity"].to_list() == [1500, 1500, 3000, 250000]
    # every grouping field the published result carries is a dimension (model has its own column)
    assert set(dims[0]) == {
        "account_id",
        "api_key_id",
        "context_window",
        "inference_geo",
        "service_account_id",
        "service_tier",
        "workspace_id",
    }
    assert set(inputs["model"]) == {"claude-opus-4-6"} and set(inputs["account_key"]) == {KEY}
    assert set(read.events["end"]) == {datetime(2025, 8, 2, tzinfo=UTC)}


def test_the_published_result_becomes_six_meters_with_the_one_hour_write_apart():
    parsed = anthropic_usage.parse_result(
        published()["data"][0], published()["data"][0]["results"][0], "data[0].results[0]"
    )
    assert (
        parsed["m_input"],
        parsed["m_cached"],
        parsed["m_write_5m"],
        parsed["m_write_1h"],
        parsed["m_output"],
        parsed["m_web_search"],
    ) == (1500, 200, 500, 1000, 500, 10)
    assert parsed["end"] == datetime(2025, 8, 2, tzinfo=UTC)
    # the overlap rule's group: the grouping fields only, no time
    assert json.loads(json.loads(parsed["group_key"])[0]) == {
        "account_id": "user_01WCz1FkmYMm4gnmykNKUu3Q",
        "api_key_id": "apikey_01Rj2N8SVvo6BePZj99NhmiT",
        "context_window": "0-200k",
        "inference_geo": "global",
        "model": "claude-opus-4-6",
        "service_account_id": "svac_01Hk3R9TWxq7CfQak00OiVw4",
        "service_tier": "standard",
        "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
    }


def test_a_new_group_by_field_is_keyed_without_a_code_change_and_null_equals_absent():
    bucket = published()["data"][0]
    base = bucket["results"][0]
    key = lambda r: anthropic_usage.parse_result(bucket, r, "p")["natural_key"]  # noqa: E731
    fast = base | {"speed": "fast"}
    standard = base | {"speed": "standard"}
    assert len({key(base), key(fast), key(standard)}) == 3
    assert key(base | {"speed": None}) == key(base)  # not grouped by speed: the same group
    assert (
        json.loads(anthropic_usage.parse_result(bucket, fast, "p")["dimensions"])["speed"] == "fast"
    )
    # a display label or an unknown quantity never splits a group
    assert key(base | {"workspace_name": "Claude Code", "web_fetch_requests": 3}) == key(base)
    # the same instant written two ways is the same bucket
    assert anthropic_usage.parse_result(
        bucket | {"starting_at": "2025-08-01T00:00:00+00:00"}, base, "p"
    )["natural_key"] == key(base)


def test_a_rejected_result_names_the_account_it_would_have_billed(tmp_path):
    page = published()
    page["data"][0]["results"][1]["output_tokens"] = -5
    read = anthropic_usage.read(landing_with(tmp_path, page), DAY, NEXT)
    assert read.quarantine.select("reason", "account_key", "kind").rows() == [
        ("negative_quantity", KEY, KIND_MONEY_AT_RISK)
    ]
    assert read.records_read == 4 == read.events["origin"].n_unique() + read.quarantine.height


def test_the_published_day_bills_the_hand_computed_invoice(tmp_path):
    catalog = parse_catalog(CATALOG)
    read = anthropic_usage.read(landing_with(tmp_path), DAY, NEXT)
    usage, quarantine = normalize([read.events], [read.quarantine], catalog)
    assert quarantine.height == 0 and set(usage["customer_id"]) == {"acme"}
    rated = rate_month(usage, catalog, "2025-08")
    assert rated.unrated.height == 0
    amounts = {
        c: Decimal(a)
        for c, a in rated.lines.filter(pl.col("charge_id").is_not_null())
        .select("charge_id", "amount")
        .rows()
    }
    # by hand, price per 1,000 units x quantity / 1,000:
    #   in-std     1,500 x 0.02  = 0.03     out-std     500 x 0.08  = 0.04
    #   in-batch   3,000 x 0.01  = 0.03     out-batch 1,000 x 0.04  = 0.04
    #   in-long  250,000 x 0.04  = 10.00    out-long  2,000 x 0.12  = 0.24
    #   in-us      1,500 x 0.04  = 0.06     out-us      500 x 0.10  = 0.05
    #   cache-read (200 + 800) x 0.01 = 0.01
    #   write-5m (500 + 1,500) x 0.025 = 0.05, write-1h 1,000 x 0.04 = 0.04
    #   search 10 searches x 10.00 / 1,000 = 0.10
    assert amounts == {
        "in-std": Decimal("0.03"),
        "in-batch": Decimal("0.03"),
        "in-long": Decimal("10.00"),
        "in-us": Decimal("0.06"),
        "out-std": Decimal("0.04"),
        "out-batch": Decimal("0.04"),
        "out-long": Decimal("0.24"),
        "out-us": Decimal("0.05"),
        "cache-read": Decimal("0.01"),
        "write-5m": Decimal("0.05"),
        "write-1h": Decimal("0.04"),
        "search": Decimal("0.10"),
    }
    # subtotal = 0.03 + 0.03 + 10.00 + 0.06 + 0.04 + 0.04 + 0.24 + 0.05 + 0.01 + 0.05 + 0.04 + 0.10 = 10.69
    [invoice] = build_documents(rated.lines, catalog, "2025-08")
    assert Decimal(invoice["subtotal"]) == Decimal("10.69")


def test_the_fetcher_asks_for_every_documented_grouping_field(api, tmp_path):
    anthropic_api.fetch_day(
        tmp_path,
        date(2026, 10, 5),
        costs=False,
        base_url=api,
        api_key=ANTHROPIC_KEY,
        policy=fast_policy([]),
    )
    path, query, headers = FakeAdminApi.seen[0]
    assert path == "/v1/organizations/usage_report/messages"
    # the nine group_by[] values of the usage report reference; speed needs the fast-mode beta header
    assert sorted(query["group_by[]"]) == sorted(
        [
            "api_key_id",
            "workspace_id",
            "model",
            "service_tier",
            "context_window",
            "inference_geo",
            "speed",
            "account_id",
            "service_account_id",
        ]
    )
    assert headers["anthropic-beta"] == "fast-mode-2026-02-01"
