"""OpenAI Usage API pages -> canonical rows. OpenAI's input_tokens INCLUDES cached tokens."""

import json
import shutil
from datetime import UTC, date, datetime

import polars as pl

from billing_pipeline import schema
from billing_pipeline.sources import SOURCES

DAY = date(2026, 10, 5)
T0 = int(datetime(2026, 10, 5, tzinfo=UTC).timestamp())


def result(**over):
    r = {
        "object": "organization.usage.completions.result",
        "input_tokens": 1250000,
        "output_tokens": 310000,
        "num_model_requests": 842,
        "input_cached_tokens": 400000,
        "input_cache_write_tokens": 5000,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "project_id": "proj_abc",
        "model": "gpt-4o-2024-08-06",
        "batch": False,
        "service_tier": "default",
        "user_id": None,
        "api_key_id": None,
    }
    return r | over


def write_page(landing, name, results, start=T0):
    folder = landing / "openai/usage/completions"
    folder.mkdir(parents=True, exist_ok=True)
    page = {
        "object": "page",
        "has_more": False,
        "next_page": None,
        "data": [
            {"object": "bucket", "start_time": start, "end_time": start + 86400, "results": results}
        ],
    }
    (folder / name).write_text(json.dumps(page))
    return folder / name


def read(landing, start=DAY, end=date(2026, 10, 6)):
    return SOURCES["openai_usage_api"](landing, start, end)


def meters(events):
    return dict(zip(events["meter"], events["quantity"], strict=True))


def test_cached_input_is_not_billed_twice(tmp_path):
    write_page(tmp_path, "2026-10-05_p1.json", [result()])
    r = read(tmp_path)
    assert r.events.columns == list(schema.USAGE_SCHEMA)
    assert meters(r.events) == {
        "input_tokens": 845000,
        "cached_input_tokens": 400000,
        "cache_write_tokens": 5000,
        "output_tokens": 310000,
        "requests": 842,
    }
    row = r.events.row(0, named=True)
    assert row["account_key"] == "openai:proj_abc" and row["provider"] == "openai"
    assert row["model_family"] == "gpt-4o" and row["customer_id"] is None
    assert row["origin"] == "openai/usage/completions/2026-10-05_p1.json#data[0].results[0]"
    assert json.loads(row["dimensions"]) == {
        "batch": False,
        "project_id": "proj_abc",
        "service_tier": "default",
    }
    assert r.events["start"][0] == datetime(2026, 10, 5, tzinfo=UTC)
    assert r.records_read == 1 and r.quarantine.height == 0


def test_audio_split_out_of_text_without_double_counting(tmp_path):
    # newer form (input_cached_audio_tokens present): input_audio_tokens is the UNCACHED audio (spec since 2026-07-15)
    write_page(
        tmp_path,
        "2026-10-05_p1.json",
        [
            result(
                input_tokens=1000,
                input_cached_tokens=100,
                input_cache_write_tokens=0,
                input_audio_tokens=300,
                input_cached_audio_tokens=50,
                output_tokens=500,
                output_audio_tokens=200,
            )
        ],
    )
    m = meters(read(tmp_path).events)
    # uncached 1,000 - 100 = 900 = text 600 + audio 300; cached 100 = text 50 + audio 50
    assert m["audio_input_tokens"] == 300 and m["input_tokens"] == 600
    assert m["cached_input_tokens"] == 50 and m["cached_audio_input_tokens"] == 50
    assert (
        m["input_tokens"]
        + m["audio_input_tokens"]
        + m["cached_input_tokens"]
        + m["cached_audio_input_tokens"]
        == 1000
    )
    assert m["output_tokens"] == 300 and m["audio_output_tokens"] == 200


def test_older_form_audio_is_split_out_of_the_uncached_input(tmp_path):
    older = {
        k: v
        for k, v in result(
            input_tokens=1000,
            input_cached_tokens=100,
            input_audio_tokens=300,
            output_tokens=500,
            output_audio_tokens=200,
        ).items()
        if k != "input_cache_write_tokens"
    }
    write_page(tmp_path, "2026-10-05_p1.json", [older])
    m = meters(read(tmp_path).events)
    # 1,000 - 100 cached = 900 uncached = 300 audio + 600 text
    assert m == {
        "input_tokens": 600,
        "cached_input_tokens": 100,
        "audio_input_tokens": 300,
        "output_tokens": 300,
        "audio_output_tokens": 200,
        "requests": 842,
    }


def test_uncached_field_wins_when_present(tmp_path):
    write_page(tmp_path, "2026-10-05_p1.json", [result(input_uncached_tokens=845000)])
    assert meters(read(tmp_path).events)["input_tokens"] == 845000


def test_all_zero_record_stays_visible_as_one_row(tmp_path):
    zero = result(
        input_tokens=0,
        output_tokens=0,
        num_model_requests=0,
        input_cached_tokens=0,
        input_cache_write_tokens=0,
    )
    write_page(tmp_path, "2026-10-05_p1.json", [zero])
    r = read(tmp_path)
    assert r.events.select("meter", "quantity").rows() == [("input_tokens", 0)]


def test_malformed_results_are_quarantined_and_the_rest_read(tmp_path):
    results = [
        result(),
        result(model="gpt-4o-mini", output_tokens="lots"),
        result(model="o3", input_tokens=-5),
        result(model="gpt-4.1", output_tokens=1.5),
        {"object": "x", "model": "gpt-5"},
    ]
    write_page(tmp_path, "2026-10-05_p1.json", results)
    r = read(tmp_path)
    q = r.quarantine.sort("origin")
    assert q.columns == list(schema.QUARANTINE_SCHEMA)
    assert q.select("reason", "field").rows() == [
        ("bad_number", "data[0].results[1].output_tokens"),
        ("negative_quantity", "data[0].results[2].input_tokens"),
        ("bad_number", "data[0].results[3].output_tokens"),
        ("missing_field", "data[0].results[4].input_tokens"),
    ]
    assert (q["day"] == DAY).all() and q["raw"].str.contains('"model"').all()
    assert r.events["origin"].n_unique() == 1
    assert r.records_read == 5 == r.events["origin"].n_unique() + r.quarantine.height


def test_unreadable_page_is_one_row_and_nan_is_a_bad_number(tmp_path):
    folder = tmp_path / "openai/usage/completions"
    write_page(tmp_path, "2026-10-05_p1.json", [result()])
    (folder / "2026-10-05_p2.json").write_text('{"data": [')
    (folder / "2026-10-05_p3.json").write_text(
        json.dumps(
            {"data": [{"start_time": T0, "end_time": T0 + 86400, "results": [result()]}]}
        ).replace("310000", "NaN")
    )
    r = read(tmp_path)
    reasons = dict(zip(r.quarantine["origin"], r.quarantine["reason"], strict=True))
    assert reasons["openai/usage/completions/2026-10-05_p2.json"] == "unreadable_file"
    assert reasons["openai/usage/completions/2026-10-05_p3.json#data[0].results[0]"] == "bad_number"
    assert r.records_read == 3


def test_bucket_on_another_day_is_outside_partition(tmp_path):
    write_page(tmp_path, "2026-10-05_p1.json", [result()], start=T0 + 86400)
    r = read(tmp_path)
    assert r.events.height == 0
    assert r.quarantine.select("reason", "field", "day").rows() == [
        ("outside_partition", "start_time", DAY)
    ]


def test_window_selects_dated_files(tmp_path):
    write_page(tmp_path, "2026-10-05_p1.json", [result()])
    assert read(tmp_path, date(2026, 10, 6), date(2026, 10, 7)).records_read == 0
    assert (
        SOURCES["openai_usage_api"](tmp_path / "nothing", DAY, date(2026, 10, 6)).records_read == 0
    )


def test_same_record_in_two_files_gets_the_same_ids(tmp_path):
    p1 = write_page(tmp_path, "2026-10-05_p1.json", [result()])
    shutil.copy(p1, p1.with_name("2026-10-05_copy.json"))
    ev = read(tmp_path).events
    assert ev["origin"].n_unique() == 2
    assert ev["record_id"].n_unique() == 1 and ev["event_id"].n_unique() == 5
    assert (
        ev.group_by("origin").agg(pl.col("event_id").sort())["event_id"].to_list()[0]
        == ev.group_by("origin").agg(pl.col("event_id").sort())["event_id"].to_list()[1]
    )
