"""A corpus of broken input: every bad record ends in quarantine with its reason, every good one is
billed, and accepted + quarantined = records in the files. Nothing is silently lost."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import polars as pl

from billing_pipeline.sources import SOURCES

DAY, NEXT = date(2026, 10, 5), date(2026, 10, 6)
T0 = int(datetime(2026, 10, 5, tzinfo=UTC).timestamp())


def req(rid, **over):
    d = {
        "request_id": rid,
        "timestamp": "2026-10-05T13:00:00Z",
        "customer_key": "acme",
        "model": "mistral-large-2411",
        "usage": {"prompt_tokens": 100, "completion_tokens": 10},
    }
    return json.dumps(d | over)


def reasons_by_origin(read):
    return dict(read.quarantine.select("origin", "reason").rows())


def test_gateway_corpus_every_bad_line_quarantined_with_its_reason(tmp_path):
    lines = [  # (bytes of one physical line, expected reason or None when billed)
        (b"\xef\xbb\xbf" + req("r-bom").encode(), None),  # a BOM is an encoding mark, not data
        (req("r-ok").encode(), None),
        (req("r-trunc").encode()[:40], "bad_json_line"),
        (
            req("r-nan").replace('"prompt_tokens": 100', '"prompt_tokens": NaN').encode(),
            "bad_number",
        ),
        (
            req("r-huge").replace('"prompt_tokens": 100', '"prompt_tokens": 1e309').encode(),
            "bad_number",
        ),
        (
            req("r-neg", usage={"prompt_tokens": -5, "completion_tokens": 1}).encode(),
            "negative_quantity",
        ),
        (
            req("r-str", usage={"prompt_tokens": "12", "completion_tokens": 1}).encode(),
            "bad_number",
        ),
        (
            req("r-utf8").replace("acme", "ac\\u00e9").encode().replace(b"\\u00e9", b"\xe9"),
            "bad_encoding",
        ),
        (req("r-naive", timestamp="2026-10-05T13:00:00").encode(), "bad_timestamp"),
        (req("r-other-day", timestamp="2026-10-04T23:59:59Z").encode(), "outside_partition"),
        (
            req("r-10mb", usage=None, prompt="x" * 10_000_000, completion="y").encode(),
            "line_too_long",
        ),
        (
            req("r-quoted-nl", usage=None, prompt="@@", completion="b")
            .replace("@@", "a")
            .encode()
            .replace(b'"a"', b'"a\nb"'),
            "bad_json_line",
        ),  # a raw newline inside a string: two broken lines
        (b"[1, 2]", "bad_json_line"),
        (req("r-no-model", model=None).encode(), "missing_field"),
        (
            req(
                "r-cached",
                usage={
                    "prompt_tokens": 5,
                    "completion_tokens": 1,
                    "prompt_tokens_details": {"cached_tokens": 9},
                },
            ).encode(),
            "negative_quantity",
        ),
    ]
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway/2026-10-05.jsonl").write_bytes(b"\n".join(b for b, _ in lines) + b"\n")
    read = SOURCES["gateway_log"](tmp_path, DAY, NEXT)

    # the quoted newline split its record into two physical lines, both broken
    reasons = [r for b, r in lines for _ in range(b.count(b"\n") + 1)]
    physical = list(enumerate(reasons, start=1))
    expected_q = {f"gateway/2026-10-05.jsonl:{n}": reason for n, reason in physical if reason}
    assert reasons_by_origin(read) == expected_q
    assert set(read.events["origin"]) == {
        f"gateway/2026-10-05.jsonl:{n}" for n, r in physical if r is None
    }
    assert (
        read.events["origin"].n_unique() + read.quarantine.height
        == len(physical)
        == read.records_read
    )
    assert read.quarantine["message"].str.len_chars().min() > 0
    assert (
        read.quarantine["raw"].str.len_chars().max() <= 2000
    )  # the 10 MB line is not copied whole


FOCUS_HEADER = "Id,ChargePeriodStart,ChargePeriodEnd,ChargeCategory,ChargeDescription,ConsumedQuantity,ConsumedUnit,BilledCost,ProviderName,ServiceName,ResourceId,Tags"


def focus_row(
    rid, qty="2", start="2026-10-05 00:00:00", desc="g5.xlarge GPU instance", cost="2.01"
):
    return f'{rid},{start},2026-10-05 02:00:00,Usage,{desc},{qty},Hours,{cost},AWS,Amazon EC2,i-{rid},"{{""customer"":""acme""}}"'


def test_focus_corpus_bom_quoted_newlines_duplicate_headers_bad_numbers_and_bytes(tmp_path):
    folder = tmp_path / "cloud/focus"
    folder.mkdir(parents=True)
    good = "\n".join(
        [
            FOCUS_HEADER,
            focus_row("ok1"),
            focus_row("nl", desc='"g5.xlarge\nGPU, two lines"'),
            focus_row("nan", qty="NaN"),
            focus_row("inf", qty="1e309"),
            focus_row("neg", qty="-1"),
            focus_row("ts", start="yesterday"),
            focus_row("cost", cost='"12,5"'),
        ]
    )
    (folder / "a_2026-10-05.csv").write_bytes(b"\xef\xbb\xbf" + good.encode())
    (folder / "b_2026-10-05.csv").write_text(
        "\n".join(
            [FOCUS_HEADER + ",ConsumedQuantity", focus_row("d1") + ",7", focus_row("d2") + ",8"]
        )
    )
    broken = "\n".join([FOCUS_HEADER, focus_row("ok2"), focus_row("extra") + ",surplus"]).encode()
    broken += b"\n" + focus_row("latin1", desc="g5.xlarge caf\xe9").encode("utf-8").replace(
        b"caf\\xe9", b"caf\xe9"
    )
    (folder / "c_2026-10-05.csv").write_bytes(broken.replace("café".encode(), b"caf\xe9"))
    read = SOURCES["focus"](tmp_path, DAY, NEXT)

    assert sorted(read.events["origin"].unique()) == [
        "cloud/focus/a_2026-10-05.csv:1",
        "cloud/focus/a_2026-10-05.csv:2",
        "cloud/focus/c_2026-10-05.csv:1",
    ]
    assert reasons_by_origin(read) == {
        "cloud/focus/a_2026-10-05.csv:3": "bad_number",
        "cloud/focus/a_2026-10-05.csv:4": "bad_number",
        "cloud/focus/a_2026-10-05.csv:5": "negative_quantity",
        "cloud/focus/a_2026-10-05.csv:6": "bad_timestamp",
        "cloud/focus/a_2026-10-05.csv:7": "bad_number",
        "cloud/focus/b_2026-10-05.csv:1": "duplicate_column",
        "cloud/focus/b_2026-10-05.csv:2": "duplicate_column",
        "cloud/focus/c_2026-10-05.csv:2": "ragged_row",
        "cloud/focus/c_2026-10-05.csv:3": "bad_encoding",
    }
    assert read.events.filter(pl.col("origin").str.starts_with("cloud/focus/a"))[
        "quantity"
    ].to_list() == [7200, 7200]
    assert (
        read.events["origin"].n_unique() + read.quarantine.height == 7 + 2 + 3 == read.records_read
    )


def test_usage_page_corpus_nan_infinity_negative_and_a_truncated_page(tmp_path):
    folder = tmp_path / "openai/usage/completions"
    folder.mkdir(parents=True)
    base = {
        "input_tokens": 10,
        "output_tokens": 2,
        "num_model_requests": 1,
        "model": "gpt-4o",
        "project_id": "p",
    }
    results = [
        base,
        base | {"input_tokens": float("nan")},
        base | {"output_tokens": float("inf")},
        base | {"num_model_requests": -1},
        base | {"input_tokens": 1.5},
        {"output_tokens": 1, "model": "gpt-4o"},
        base | {"model": "gpt-4o-mini", "input_tokens": 10, "input_cached_tokens": 20},
    ]
    page = {
        "object": "page",
        "data": [{"start_time": T0, "end_time": T0 + 86400, "results": results}],
    }
    (folder / "2026-10-05_p1.json").write_text(json.dumps(page))  # json.dumps writes NaN / Infinity
    (folder / "2026-10-05_p2.json").write_text(json.dumps(page)[:50])
    read = SOURCES["openai_usage_api"](tmp_path, DAY, NEXT)
    assert [r for _, r in sorted(reasons_by_origin(read).items())] == [
        "bad_number",
        "bad_number",
        "negative_quantity",
        "bad_number",
        "missing_field",
        "inconsistent_breakdown",
        "unreadable_file",
    ]
    assert read.events["origin"].n_unique() == 1
    assert (
        read.events["origin"].n_unique() + read.quarantine.height
        == len(results) + 1
        == read.records_read
    )
