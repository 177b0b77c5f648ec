"""Gateway JSONL request log: provider usage when given, local token counts when only text is."""

import json
import shutil
from datetime import date

import polars as pl

from billing_pipeline import tokens
from billing_pipeline.sources import SOURCES

DAY = date(2026, 10, 5)


def line(**over):
    d = {
        "request_id": "req-1",
        "timestamp": "2026-10-05T13:02:11Z",
        "customer_key": "acme",
        "provider": "mistral",
        "model": "mistral-large-2411",
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 340,
            "total_tokens": 460,
            "prompt_tokens_details": {"cached_tokens": 20},
        },
    }
    return json.dumps({**d, **over})


def write(landing, name, lines):
    folder = landing / "gateway"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n")
    return folder / name


def read(landing):
    return SOURCES["gateway_log"](landing, DAY, date(2026, 10, 6))


def test_usage_line_prompt_includes_cached(tmp_path):
    write(tmp_path, "2026-10-05.jsonl", [line()])
    r = read(tmp_path)
    assert dict(r.events.select("meter", "quantity").rows()) == {
        "input_tokens": 100,
        "cached_input_tokens": 20,
        "output_tokens": 340,
    }
    row = r.events.row(0, named=True)
    assert (
        row["account_key"] == "gateway:acme"
        and row["provider"] == "mistral"
        and row["model_family"] == "mistral-large"
    )
    assert row["origin"] == "gateway/2026-10-05.jsonl:1" and row["start"] == row["end"]


def test_text_only_lines_are_counted_locally_but_claude_is_never_guessed(tmp_path):
    text_line = json.dumps(
        {
            "request_id": "req-2",
            "timestamp": "2026-10-05T13:03:00Z",
            "customer_key": "acme",
            "model": "gpt-4o-mini",
            "prompt": "hello world",
            "completion": "Hello, world! 1234567",
        }
    )
    claude = json.dumps(
        {
            "request_id": "req-3",
            "timestamp": "2026-10-05T13:04:00Z",
            "customer_key": "acme",
            "model": "claude-sonnet-4-5",
            "prompt": "hi",
            "completion": "hello",
        }
    )
    write(tmp_path, "2026-10-05.jsonl", [text_line, claude])
    r = read(tmp_path)
    ev = r.events
    assert set(ev["provider"]) == {"openai"} and set(ev["dimensions"]) == {'{"counted":"local"}'}
    assert dict(ev.select("meter", "quantity").rows()) == {
        "input_tokens": tokens.count_tokens("gpt-4o-mini", ["hello world"])[0],
        "output_tokens": 8,
    }
    assert r.quarantine.select("reason", "field").rows() == [("no_tokenizer", "model")]


def test_bad_lines_are_quarantined_with_reason_and_field(tmp_path):
    lines = [
        line(),
        "{not json",
        line(request_id="r3", usage={"prompt_tokens": "12", "completion_tokens": 1}),
        line(request_id="r4", usage={"prompt_tokens": 1.5, "completion_tokens": 1}),
        line(request_id="r5", usage={"prompt_tokens": -1, "completion_tokens": 1}),
        line(request_id="r6").replace("340", "NaN"),
        line(request_id="r7", timestamp="2026-10-05T13:02:11"),
        line(request_id="r8", timestamp="2026-10-04T23:59:59Z"),
        line(request_id="r9", usage={"completion_tokens": 1}),
        line(request_id="r10").replace("340", "1e309"),
        "",
    ]
    write(tmp_path, "2026-10-05.jsonl", lines)
    r = read(tmp_path)
    got = {
        o.split(":")[-1]: (reason, field)
        for o, reason, field in r.quarantine.select("origin", "reason", "field").rows()
    }
    assert got == {
        "2": ("bad_json_line", ""),
        "3": ("bad_number", "usage.prompt_tokens"),
        "4": ("bad_number", "usage.prompt_tokens"),
        "5": ("negative_quantity", "usage.prompt_tokens"),
        "6": ("bad_number", "usage.completion_tokens"),
        "7": ("bad_timestamp", "timestamp"),
        "8": ("outside_partition", "timestamp"),
        "9": ("missing_field", "usage.prompt_tokens"),
        "10": ("bad_number", "usage.completion_tokens"),
    }
    assert r.events["origin"].unique().to_list() == ["gateway/2026-10-05.jsonl:1"]
    assert r.records_read == 10 == r.events["origin"].n_unique() + r.quarantine.height


def test_responses_api_usage_shape(tmp_path):
    write(
        tmp_path,
        "2026-10-05.jsonl",
        [
            line(
                model="gpt-4o",
                provider=None,
                usage={
                    "input_tokens": 50,
                    "input_tokens_details": {"cached_tokens": 10},
                    "output_tokens": 5,
                },
            )
        ],
    )
    ev = read(tmp_path).events
    assert dict(ev.select("meter", "quantity").rows()) == {
        "input_tokens": 40,
        "cached_input_tokens": 10,
        "output_tokens": 5,
    }
    assert set(ev["provider"]) == {"openai"}


def test_a_bad_utf8_line_is_quarantined_and_the_rest_of_the_file_still_bills(tmp_path):
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway/2026-10-05.jsonl").write_bytes(
        b'{"request_id": "\xff"}\n' + line().encode() + b"\n"
    )
    r = read(tmp_path)
    assert r.quarantine.select("origin", "reason").rows() == [
        ("gateway/2026-10-05.jsonl:1", "bad_encoding")
    ]
    assert set(r.events["origin"]) == {"gateway/2026-10-05.jsonl:2"} and r.records_read == 2


def test_same_file_twice_same_record_ids(tmp_path):
    p = write(tmp_path, "2026-10-05.jsonl", [line()])
    shutil.copy(p, p.with_name("2026-10-05.replay.jsonl"))
    ev = read(tmp_path).events
    assert ev.height == 6 and ev["record_id"].n_unique() == 1 and ev["event_id"].n_unique() == 3


def test_anthropic_style_usage_keeps_cache_reads_and_writes_on_top_of_input(tmp_path):
    usage = {
        "input_tokens": 50,
        "cache_read_input_tokens": 4000,
        "cache_creation_input_tokens": 1200,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 1000},
        "output_tokens": 300,
        "server_tool_use": {"web_search_requests": 2},
    }
    write(
        tmp_path,
        "2026-10-05.jsonl",
        [line(provider="anthropic", model="claude-sonnet-4-5", usage=usage)],
    )
    r = read(tmp_path)
    rows = {
        (m, json.loads(d).get("cache_ttl")): q
        for m, d, q in r.events.select("meter", "dimensions", "quantity").rows()
    }
    assert rows == {
        ("input_tokens", None): 50,
        ("cached_input_tokens", None): 4000,
        ("cache_write_tokens", "5m"): 200,
        ("cache_write_tokens", "1h"): 1000,
        ("output_tokens", None): 300,
        ("web_search_requests", None): 2,
    }
    assert (
        sum(rows.values()) - 300 - 2 == 50 + 4000 + 1200
    )  # Anthropic total input = input + reads + writes
    assert r.events["event_id"].is_unique().all() and r.quarantine.height == 0


def test_anthropic_style_cache_write_without_ttl_split_counts_as_default_5m(tmp_path):
    usage = {"input_tokens": 10, "cache_creation_input_tokens": 700, "output_tokens": 5}
    write(
        tmp_path,
        "2026-10-05.jsonl",
        [line(provider="anthropic", model="claude-haiku-4-5", usage=usage)],
    )
    ev = read(tmp_path).events.filter(pl.col("meter") == "cache_write_tokens")
    assert ev["quantity"].to_list() == [700]
    # the usage report's context_window too: 10 + 700 input tokens is under 200k
    assert json.loads(ev["dimensions"][0]) == {"cache_ttl": "5m", "context_window": "0-200k"}


def test_negative_cache_tokens_are_quarantined_not_dropped(tmp_path):
    usage = {"input_tokens": 10, "cache_read_input_tokens": -5, "output_tokens": 5}
    write(
        tmp_path,
        "2026-10-05.jsonl",
        [line(provider="anthropic", model="claude-haiku-4-5", usage=usage)],
    )
    r = read(tmp_path)
    assert r.events.height == 0
    assert r.quarantine.select("reason", "field").rows() == [
        ("negative_quantity", "usage.cache_read_input_tokens")
    ]


def test_ids_are_sha256_of_the_natural_key_so_every_run_gives_the_same_ids(tmp_path):
    import hashlib

    usage = {"input_tokens": 10, "cache_creation_input_tokens": 700, "output_tokens": 5}
    write(
        tmp_path,
        "2026-10-05.jsonl",
        [line(provider="anthropic", model="claude-haiku-4-5", usage=usage)],
    )
    ev = read(tmp_path).events
    sha = lambda *parts: hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]  # noqa: E731
    record = sha("gateway_log", "req-1")
    assert set(ev["record_id"]) == {record}
    assert dict(ev.select("meter", "event_id").rows()) == {
        "input_tokens": sha(record, "input_tokens"),
        "output_tokens": sha(record, "output_tokens"),
        "cache_write_tokens": sha(record, "cache_write_tokens", "5m"),
    }


def test_a_field_of_the_wrong_json_type_quarantines_only_its_line(tmp_path):
    write(
        tmp_path,
        "2026-10-05.jsonl",
        [
            line(request_id="r1", usage="12 tokens"),
            line(request_id="r2"),
            line(request_id="r3", prompt={"messages": []}),
        ],
    )
    r = read(tmp_path)
    got = {
        o.split(":")[-1]: (reason, field)
        for o, reason, field in r.quarantine.select("origin", "reason", "field").rows()
    }
    assert got == {"1": ("wrong_type", "usage"), "3": ("wrong_type", "prompt")}
    assert set(r.events["origin"]) == {"gateway/2026-10-05.jsonl:2"} and r.records_read == 3


def chat_usage(prompt, completion, cached=0, audio_in=0, audio_out=0, reasoning=0, **extra_in):
    """Chat Completions ``usage`` (OpenAI spec ``CompletionUsage``)."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": audio_in, **extra_in},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": audio_out,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def meters(r):
    return dict(r.events.select("meter", "quantity").rows())


def test_audio_and_image_tokens_get_their_own_meters_and_leave_only_text_in_the_text_meters(
    tmp_path,
):
    usage = chat_usage(
        1000, 300, cached=100, audio_in=600, audio_out=200, reasoning=50, image_tokens=250
    )
    write(
        tmp_path, "2026-10-05.jsonl", [line(provider="openai", model="gpt-realtime", usage=usage)]
    )
    got = meters(read(tmp_path))
    # 1,000 prompt = 50 text + 100 cached + 600 audio + 250 image; 300 completion = 100 text (50 reasoning) + 200 audio
    assert got == {
        "input_tokens": 50,
        "cached_input_tokens": 100,
        "audio_input_tokens": 600,
        "image_input_tokens": 250,
        "output_tokens": 100,
        "audio_output_tokens": 200,
    }


def test_cached_audio_is_told_by_the_shape_when_the_parts_exceed_the_prompt(tmp_path):
    """A long realtime session: 900 of 1,000 prompt tokens are audio and 800 are cached, so at
    least 700 cached tokens are audio (800 + 900 - 1,000): billed as cached audio, not rejected."""
    usage = chat_usage(1000, 10, cached=800, audio_in=900)
    write(
        tmp_path, "2026-10-05.jsonl", [line(provider="openai", model="gpt-realtime", usage=usage)]
    )
    r = read(tmp_path)
    assert r.quarantine.height == 0
    assert meters(r) == {
        "cached_input_tokens": 100,
        "cached_audio_input_tokens": 700,
        "audio_input_tokens": 200,
        "output_tokens": 10,
    }  # 0 text + 100 + 700 + 200 = 1,000


def test_parts_that_cannot_fit_in_the_totals_are_money_at_risk_not_clamped(tmp_path):
    write(
        tmp_path,
        "2026-10-05.jsonl",
        [
            line(
                request_id="r1", usage=chat_usage(100, 10, cached=80, audio_in=10, image_tokens=50)
            ),
            line(request_id="r2", usage=chat_usage(100, 10, audio_out=11)),
            line(request_id="r3", usage=chat_usage(100, 10, reasoning=11)),
            line(request_id="r4", usage=chat_usage(100, 10, cached=101)),
        ],
    )
    r = read(tmp_path)
    got = {
        o.split(":")[-1]: (reason, field, kind)
        for o, reason, field, kind in r.quarantine.select(
            "origin", "reason", "field", "kind"
        ).rows()
    }
    # r1: 80 + 10 + 50 = 140 > 100: the 40 over are cached audio (all 10) then cached image (30); it bills
    # as 40 cached text + 10 cached audio + 30 cached image + 20 image = 100
    assert "1" not in got and meters(read(tmp_path)) == {
        "cached_input_tokens": 40,
        "cached_audio_input_tokens": 10,
        "cached_image_input_tokens": 30,
        "image_input_tokens": 20,
        "output_tokens": 10,
    }
    assert got == {
        "2": ("negative_quantity", "usage.completion_tokens_details.audio_tokens", "money_at_risk"),
        "3": (
            "negative_quantity",
            "usage.completion_tokens_details.reasoning_tokens",
            "money_at_risk",
        ),
        "4": ("negative_quantity", "usage.prompt_tokens_details.cached_tokens", "money_at_risk"),
    }


def test_responses_cache_writes_are_their_own_meter(tmp_path):
    usage = {
        "input_tokens": 5000,
        "input_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 3000},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 5020,
    }
    write(tmp_path, "2026-10-05.jsonl", [line(provider="openai", model="gpt-5", usage=usage)])
    ev = read(tmp_path).events
    assert meters(read(tmp_path)) == {
        "input_tokens": 1000,
        "cached_input_tokens": 1000,
        "cache_write_tokens": 3000,
        "output_tokens": 20,
    }
    assert set(ev["dimensions"]) == {"{}"}  # no cache_ttl: OpenAI does not tell one


def test_failed_requests_are_not_billable_whatever_the_log_records(tmp_path):
    write(
        tmp_path,
        "2026-10-05.jsonl",
        [
            line(request_id="r1", status=500),
            line(request_id="r2", status="failure", usage=None),
            line(
                request_id="r3",
                error={
                    "message": "Rate limit reached",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                },
            ),
            line(request_id="r4", error="upstream timeout"),
            line(request_id="r5", status=200),
            line(request_id="r6", status="completed", error=None),
        ],
    )
    r = read(tmp_path)
    got = {
        o.split(":")[-1]: (reason, field, kind, key)
        for o, reason, field, kind, key in r.quarantine.select(
            "origin", "reason", "field", "kind", "account_key"
        ).rows()
    }
    assert got == {
        "1": ("failed_request", "status", "not_billable", "gateway:acme"),
        "2": ("failed_request", "status", "not_billable", "gateway:acme"),
        "3": ("failed_request", "error", "not_billable", "gateway:acme"),
        "4": ("failed_request", "error", "not_billable", "gateway:acme"),
    }
    assert set(r.events["origin"].str.split(":").list.last()) == {"5", "6"} and r.records_read == 6


def test_quarantined_lines_name_the_gateway_key_they_would_have_billed(tmp_path):
    write(
        tmp_path,
        "2026-10-05.jsonl",
        [
            line(request_id="r1", usage={"prompt_tokens": -1, "completion_tokens": 1}),
            line(request_id="r2").replace("340", "NaN"),
            "{not json",
        ],
    )
    q = read(tmp_path).quarantine
    assert q.select("reason", "account_key").rows() == [
        ("negative_quantity", "gateway:acme"),
        ("bad_number", "gateway:acme"),
        ("bad_json_line", None),
    ]


def test_service_tier_and_anthropic_long_context_are_dimensions_the_price_book_can_key_on(tmp_path):
    long = {
        "input_tokens": 150_000,
        "cache_read_input_tokens": 60_000,
        "cache_creation_input_tokens": 0,
        "output_tokens": 5,
        "service_tier": "standard",
    }
    write(
        tmp_path,
        "2026-10-05.jsonl",
        [
            line(request_id="r1", provider="openai", model="gpt-4o", service_tier="priority"),
            line(request_id="r2", provider="anthropic", model="claude-sonnet-4-5", usage=long),
        ],
    )
    ev = read(tmp_path).events
    dims = {
        rid: json.loads(d)
        for rid, d in ev.select(pl.col("origin").str.split(":").list.last(), "dimensions")
        .unique()
        .rows()
    }
    assert dims["1"] == {"service_tier": "priority"}
    # 150,000 + 60,000 cache reads = 210,000 input tokens, over 200k: Anthropic's long-context bucket
    assert dims["2"] == {"context_window": "200k-1M", "service_tier": "standard"}
