"""Anthropic usage_report pages: uncached input excludes cache; cache writes split by TTL."""

import json
import shutil
from datetime import date

from billing_pipeline.sources import SOURCES

DAY = date(2026, 10, 5)


def result(**over):
    r = {
        "api_key_id": "apikey_01Rj2N8S",
        "workspace_id": "wrkspc_01",
        "model": "claude-sonnet-4-5",
        "service_tier": "standard",
        "context_window": "0-200k",
        "inference_geo": "global",
        "uncached_input_tokens": 1500,
        "cache_creation": {"ephemeral_1h_input_tokens": 1000, "ephemeral_5m_input_tokens": 500},
        "cache_read_input_tokens": 200,
        "output_tokens": 500,
        "server_tool_use": {"web_search_requests": 10},
    }
    return r | over


def write_page(
    landing, name, results, starting_at="2026-10-05T00:00:00Z", ending_at="2026-10-06T00:00:00Z"
):
    folder = landing / "anthropic/usage_report"
    folder.mkdir(parents=True, exist_ok=True)
    page = {
        "data": [{"starting_at": starting_at, "ending_at": ending_at, "results": results}],
        "has_more": False,
    }
    (folder / name).write_text(json.dumps(page))
    return folder / name


def read(landing):
    return SOURCES["anthropic_usage_report"](landing, DAY, date(2026, 10, 6))


def test_meters_and_cache_write_split_by_ttl(tmp_path):
    write_page(tmp_path, "2026-10-05_p1.json", [result()])
    ev = read(tmp_path).events
    rows = {
        (m, json.loads(d).get("cache_ttl")): q
        for m, d, q in ev.select("meter", "dimensions", "quantity").rows()
    }
    assert rows == {
        ("input_tokens", None): 1500,
        ("cached_input_tokens", None): 200,
        ("cache_write_tokens", "5m"): 500,
        ("cache_write_tokens", "1h"): 1000,
        ("output_tokens", None): 500,
        ("web_search_requests", None): 10,
    }
    assert ev["event_id"].n_unique() == 6 and ev["record_id"].n_unique() == 1
    assert set(ev["account_key"]) == {"anthropic:apikey_01Rj2N8S"} and set(ev["provider"]) == {
        "anthropic"
    }
    dims = json.loads(ev.filter(meter="input_tokens")["dimensions"][0])
    assert dims["service_tier"] == "standard" and dims["context_window"] == "0-200k"


def test_malformed_result_quarantined_rest_read(tmp_path):
    bad = result(cache_creation={"ephemeral_5m_input_tokens": -3})
    write_page(tmp_path, "2026-10-05_p1.json", [result(), bad, result(output_tokens=None)])
    r = read(tmp_path)
    assert sorted(r.quarantine.select("reason", "field").rows()) == [
        ("missing_field", "data[0].results[2].output_tokens"),
        ("negative_quantity", "data[0].results[1].cache_creation.ephemeral_5m_input_tokens"),
    ]
    assert r.records_read == 3 == r.events["origin"].n_unique() + r.quarantine.height


def test_naive_or_foreign_day_timestamps_are_quarantined(tmp_path):
    write_page(tmp_path, "2026-10-05_p1.json", [result()], starting_at="2026-10-05T00:00:00")
    write_page(tmp_path, "2026-10-05_p2.json", [result()], starting_at="2026-10-04T00:00:00Z")
    r = read(tmp_path)
    assert sorted(r.quarantine.select("reason", "field").rows()) == [
        ("bad_timestamp", "starting_at"),
        ("outside_partition", "starting_at"),
    ]
    assert r.events.height == 0 and r.records_read == 2


def test_same_page_twice_same_ids(tmp_path):
    p = write_page(tmp_path, "2026-10-05_p1.json", [result()])
    shutil.copy(p, p.with_name("2026-10-05_again.json"))
    ev = read(tmp_path).events
    assert ev.height == 12 and ev["event_id"].n_unique() == 6
