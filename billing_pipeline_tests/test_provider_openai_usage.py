"""OpenAI Usage API as OpenAI publishes it (issue 15 section 2): the spec's own pages, the newer token
split, a long realtime session, the cookbook's mid-day first bucket, billed to the cent by hand.

Fixtures: billing_pipeline_tests/data/providers/openai/ (SOURCES.md says where each comes from).
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline import schema
from billing_pipeline.catalog import parse_catalog
from billing_pipeline.demo.catalog import ISSUER
from billing_pipeline.documents.invoice import build_documents
from billing_pipeline.rating import rate_month
from billing_pipeline.sources import openai_usage
from billing_pipeline.sources.api import openai as openai_api
from billing_pipeline.usage import normalize
from billing_pipeline_tests.support.openai_usage import TOKEN_PLAN, per_1k

DATA = Path(__file__).parent / "data" / "providers" / "openai"
NOV, DEC = date(2024, 11, 1), date(2024, 12, 1)
INPUT_METERS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "audio_input_tokens",
    "cached_audio_input_tokens",
    "image_input_tokens",
    "cached_image_input_tokens",
)


def land(landing: Path, fixture: str, rel: str) -> Path:
    target = landing / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / fixture, target)
    return target


def fixture_result(fixture: str) -> dict:
    return json.loads((DATA / fixture).read_text())["data"][0]["results"][0]


def write_results(
    landing: Path, name: str, results: list[dict], start: int = 1730419200, end: int | None = None
):
    folder = landing / "openai/usage/completions"
    folder.mkdir(parents=True, exist_ok=True)
    page = {
        "object": "page",
        "data": [
            {
                "object": "bucket",
                "start_time": start,
                "end_time": end or start + 86400,
                "results": results,
            }
        ],
        "has_more": False,
        "next_page": None,
    }
    (folder / name).write_text(json.dumps(page))


def meters(events: pl.DataFrame) -> dict[str, int]:
    return dict(events.group_by("meter").agg(pl.col("quantity").sum()).iter_rows())


def read(landing: Path, start: date = NOV, end: date = DEC):
    return openai_usage.read(landing, start, end)


# ---------------------------------------------------------------- the token split, as the spec defines it


def test_the_specs_own_page_reads_every_token_field_and_bills_each_input_token_once(tmp_path):
    land(
        tmp_path,
        "usage_completions_page_spec_example.json",
        "openai/usage/completions/2024-11-01_p1.json",
    )
    r = read(tmp_path)
    got = meters(r.events)
    # input_uncached 500 = text 400 + audio 50 + image 50; cached 400 = text 300 + audio 50 + image 50
    assert got == {
        "input_tokens": 400,
        "cached_input_tokens": 300,
        "cache_write_tokens": 100,
        "audio_input_tokens": 50,
        "cached_audio_input_tokens": 50,
        "image_input_tokens": 50,
        "cached_image_input_tokens": 50,
        "output_tokens": 400,
        "audio_output_tokens": 50,
        "image_output_tokens": 50,
        "requests": 5,
    }
    assert (
        sum(got[m] for m in INPUT_METERS) == 1000
    )  # OpenAI's input_tokens, nothing twice, nothing lost
    row = r.events.row(0, named=True)
    # ungrouped (every grouping field null): nobody to attribute it to, no dimensions, no model
    assert (row["account_key"], row["dimensions"], row["model"]) == (None, "{}", "")
    assert r.events["origin"].n_unique() == 1
    assert r.quarantine.filter(pl.col("origin").str.contains("#")).height == 0  # no result rejected


def test_newer_form_with_image_tokens_splits_every_modality_and_keys_every_grouping_field(tmp_path):
    land(
        tmp_path,
        "usage_completions_result_spec_example.json",
        "openai/usage/completions/2024-11-01_p1.json",
    )
    r = read(tmp_path)
    got = meters(r.events)
    assert got == {
        "input_tokens": 2500,
        "cached_input_tokens": 1500,
        "cache_write_tokens": 200,
        "audio_input_tokens": 300,
        "cached_audio_input_tokens": 100,
        "image_input_tokens": 200,
        "cached_image_input_tokens": 200,
        "output_tokens": 800,
        "audio_output_tokens": 100,
        "image_output_tokens": 100,
        "requests": 5,
    }
    assert sum(got[m] for m in INPUT_METERS) == 5000  # = input_tokens of the spec's example
    row = r.events.row(0, named=True)
    assert row["account_key"] == "openai:proj_abc" and row["model_family"] == "gpt-4o-mini"
    assert json.loads(row["dimensions"]) == {
        "api_key_id": "key_abc",
        "batch": False,
        "project_id": "proj_abc",
        "service_tier": "default",
        "user_id": "user-abc",
    }


def test_a_long_realtime_session_whose_cached_audio_exceeds_its_uncached_audio_bills(tmp_path):
    land(
        tmp_path,
        "usage_completions_realtime_cached_audio.json",
        "openai/usage/completions/2024-11-02_p1.json",
    )
    r = read(tmp_path)
    assert (
        r.quarantine.height == 0
    )  # once rejected as negative_quantity: uncached 4,000 - cached 9,000 < 0
    got = meters(r.events)
    assert got == {
        "input_tokens": 1200,
        "cached_input_tokens": 800,
        "audio_input_tokens": 4000,
        "cached_audio_input_tokens": 9000,
        "output_tokens": 600,
        "audio_output_tokens": 2400,
        "requests": 40,
    }
    assert sum(got.get(m, 0) for m in INPUT_METERS) == 15000


def test_older_form_totals_only_keeps_everything_not_split_as_text(tmp_path):
    # the cookbook's 2025-01-13 bucket, older form: input_audio_tokens includes its cached part (old spec)
    old = {
        "object": "organization.usage.completions.result",
        "input_tokens": 3718360,
        "output_tokens": 97756,
        "num_model_requests": 3053,
        "project_id": "proj_abc",
        "user_id": None,
        "api_key_id": None,
        "model": "gpt-4o-mini",
        "batch": None,
        "input_cached_tokens": 76544,
        "input_audio_tokens": 5776,
        "output_audio_tokens": 3166,
    }
    write_results(tmp_path, "2024-11-01_p1.json", [old])
    got = meters(read(tmp_path).events)
    # text input 3,718,360 - 76,544 - 5,776 = 3,636,040; text output 97,756 - 3,166 = 94,590
    assert got == {
        "input_tokens": 3636040,
        "cached_input_tokens": 76544,
        "audio_input_tokens": 5776,
        "output_tokens": 94590,
        "audio_output_tokens": 3166,
        "requests": 3053,
    }
    assert sum(got.get(m, 0) for m in INPUT_METERS) == 3718360
    totals_only = {k: v for k, v in old.items() if "audio" not in k and "cached" not in k}
    write_results(tmp_path, "2024-11-01_p1.json", [totals_only])
    assert meters(read(tmp_path).events) == {
        "input_tokens": 3718360,
        "output_tokens": 97756,
        "requests": 3053,
    }


SPEC = fixture_result("usage_completions_result_spec_example.json")


@pytest.mark.parametrize(
    "change, field",
    [
        ({"input_tokens": 5001}, "input_uncached_tokens"),  # 3,000 + 1,800 + 200 != 5,001
        ({"input_text_tokens": 2400}, "input_text_tokens"),  # 2,400 + 300 + 200 != 3,000
        (
            {"input_cached_text_tokens": 1600},
            "input_cached_text_tokens",
        ),  # 1,600 + 100 + 200 != 1,800
        ({"output_text_tokens": 900}, "output_text_tokens"),  # 900 + 100 + 100 != 1,000
        (
            {"output_text_tokens": None, "output_audio_tokens": 1200},
            "output_audio_tokens",
        ),  # 1,200 + 100 > 1,000
        (
            {"input_uncached_tokens": None, "input_cached_tokens": 4900},
            "input_cached_tokens",
        ),  # 4,900 + 200 > 5,000
        (
            {"input_text_tokens": None, "input_audio_tokens": 2900},
            "input_audio_tokens",
        ),  # 2,900 + 200 > 3,000
    ],
)
def test_parts_that_contradict_their_total_are_money_at_risk_naming_the_field(
    tmp_path, change, field
):
    write_results(tmp_path, "2024-11-01_p1.json", [SPEC, SPEC | change | {"user_id": "user-other"}])
    r = read(tmp_path)
    q = r.quarantine.with_columns(schema.quarantine_kind_expr().alias("kind"))
    assert q.select("reason", "field", "kind", "account_key").rows() == [
        (
            "inconsistent_breakdown",
            f"data[0].results[1].{field}",
            "money_at_risk",
            "openai:proj_abc",
        )
    ]
    assert r.records_read == 2 == r.events["origin"].n_unique() + q.height


def test_a_rejected_result_names_the_account_it_would_have_billed(tmp_path):
    bad = [
        SPEC | {"output_tokens": "lots"},
        SPEC | {"project_id": None, "input_tokens": -1},
        SPEC | {"project_id": None, "api_key_id": None, "output_tokens": 1.5},
    ]
    write_results(tmp_path, "2024-11-01_p1.json", bad)
    q = read(tmp_path).quarantine.sort("origin")
    assert q.select("reason", "account_key").rows() == [
        ("bad_number", "openai:proj_abc"),
        ("negative_quantity", "openai:key_abc"),
        ("bad_number", None),
    ]


# ---------------------------------------------------------------- identity: every grouping field, bucket start and end


@pytest.mark.parametrize(
    "field, other",
    [
        ("batch", True),
        ("service_tier", "flex"),
        ("service_tier", "priority"),
        ("service_tier", "scale"),
        ("user_id", "user-xyz"),
        ("api_key_id", "key_xyz"),
        ("project_id", "proj_xyz"),
        ("model", "gpt-4o"),
        ("region", "eu"),  # a group-by field OpenAI might add: keyed without a code change
    ],
)
def test_two_results_differing_in_one_grouping_field_are_two_records(tmp_path, field, other):
    write_results(tmp_path, "2024-11-01_p1.json", [SPEC, SPEC | {field: other}])
    ev = read(tmp_path).events
    assert ev["record_id"].n_unique() == 2
    assert meters(ev)["input_tokens"] == 2 * 2500
    if field != "model":
        assert sorted({json.loads(d).get(field) for d in ev["dimensions"]}, key=str) == sorted(
            [SPEC.get(field), other], key=str
        )


def test_a_restated_count_in_an_unknown_numeric_field_does_not_make_a_new_record(tmp_path):
    write_results(tmp_path, "2024-11-01_p1.json", [SPEC | {"input_video_tokens": 5}])
    write_results(tmp_path, "2024-11-01_p2.json", [SPEC | {"input_video_tokens": 7}])
    assert read(tmp_path).events["record_id"].n_unique() == 1


def test_the_bucket_end_is_part_of_the_key_and_the_group_key_has_no_time():
    day = {"start_time": 1730419200, "end_time": 1730505600}
    hour = {"start_time": 1730419200, "end_time": 1730422800}
    a, b = openai_usage._parse(day, SPEC, "r"), openai_usage._parse(hour, SPEC, "r")
    assert a["natural_key"] != b["natural_key"] and a["group_key"] == b["group_key"]
    assert openai_usage._parse(day, SPEC | {"batch": True}, "r")["group_key"] != a["group_key"]


def test_the_cookbooks_mid_day_first_bucket_inside_a_full_day_export_is_billed_once(tmp_path):
    # The cookbook asked for "30 days ago from now": its first bucket is 2025-01-11 17:31 -> 2025-01-12 00:00,
    # inside our fetcher's full day 2025-01-11 00:00 -> 2025-01-12 00:00 for the same group.
    land(
        tmp_path,
        "usage_completions_cookbook_midday_start.json",
        "openai/usage/completions/cookbook_export.json",
    )
    land(
        tmp_path,
        "usage_completions_full_day_2025-01-11.json",
        "openai/usage/completions/2025-01-11_p1.json",
    )
    r = read(tmp_path, date(2025, 1, 1), date(2025, 2, 1))
    by_day = dict(
        r.events.filter(pl.col("meter") == "input_tokens")
        .group_by("day")
        .agg(pl.sum("quantity"))
        .iter_rows()
    )
    # 2025-01-11: the full day's 150,000 only (not + 141,201); 2025-01-12: the cookbook's 45,949
    assert by_day == {date(2025, 1, 11): 150000, date(2025, 1, 12): 45949}
    assert r.quarantine.select("reason", "origin").rows() == [
        ("overlapped_bucket", "openai/usage/completions/cookbook_export.json#data[0].results[0]")
    ]
    assert r.records_read == 3


def test_the_mid_day_bucket_and_the_full_day_are_two_different_records(tmp_path):
    land(
        tmp_path,
        "usage_completions_cookbook_midday_start.json",
        "openai/usage/completions/cookbook_export.json",
    )
    land(
        tmp_path,
        "usage_completions_full_day_2025-01-11.json",
        "openai/usage/completions/2025-01-11_p1.json",
    )
    r = read(tmp_path, date(2025, 1, 1), date(2025, 2, 1))
    # never one record with two quantities (a "conflict" that bills neither): different buckets, different keys
    assert r.events["record_id"].n_unique() + r.quarantine.height == 3 == r.records_read


# ---------------------------------------------------------------- billed by hand


def catalog(charges: list[dict]):
    return parse_catalog(
        {
            "issuer": ISSUER,
            "plans": {"payg": {"name": "Pay as you go", "charges": charges}},
            "customers": {
                "acme": {
                    "name": "Acme",
                    "subscriptions": [{"plan": "payg", "from": "2024-01-01"}],
                    "keys": ["openai:proj_abc"],
                }
            },
        }
    )


def invoice_subtotal(
    landing: Path, cat, month: str = "2024-11", start: date = NOV, end: date = DEC
) -> Decimal:
    r = openai_usage.read(landing, start, end)
    usage, _ = normalize([r.events], [r.quarantine], cat)
    documents = build_documents(rate_month(usage, cat, month).lines, cat, month)
    (acme,) = [d for d in documents if d["customer_id"] == "acme"]
    return Decimal(acme["subtotal"])


def test_a_month_of_the_specs_example_and_a_realtime_session_invoiced_to_the_cent(tmp_path):
    land(
        tmp_path,
        "usage_completions_page_spec_example.json",
        "openai/usage/completions/2024-11-01_p1.json",
    )
    land(
        tmp_path,
        "usage_completions_result_spec_example.json",
        "openai/usage/completions/2024-11-01_p2.json",
    )
    land(
        tmp_path,
        "usage_completions_realtime_cached_audio.json",
        "openai/usage/completions/2024-11-02_p1.json",
    )
    # The spec page is ungrouped (no project): nobody's. proj_abc = the spec's result example + the realtime day.
    # per 1K tokens:   spec example            realtime               total     amount
    # text in   0.50   2,500                   1,200                  3,700  -> 1.85
    # cached    0.20   1,500                     800                  2,300  -> 0.46
    # write     0.60     200                       0                    200  -> 0.12
    # audio in  4.00     300                   4,000                  4,300  -> 17.20
    # cached au 0.40     100                   9,000                  9,100  -> 3.64
    # image in  1.00     200                       0                    200  -> 0.20
    # cached im 0.50     200                       0                    200  -> 0.10
    # text out  2.00     800                     600                  1,400  -> 2.80
    # audio out 8.00     100                   2,400                  2,500  -> 20.00
    # image out 4.00     100                       0                    100  -> 0.40
    # requests  0.01 each  5                      40                     45  -> 0.45
    # 1.85 + 0.46 + 0.12 + 17.20 + 3.64 + 0.20 + 0.10 + 2.80 + 20.00 + 0.40 + 0.45 = 47.22
    assert invoice_subtotal(tmp_path, catalog(TOKEN_PLAN)) == Decimal("47.22")


def test_batch_and_service_tier_are_dimensions_a_plan_prices(tmp_path):
    results = [SPEC, SPEC | {"batch": True}, SPEC | {"service_tier": "flex"}]
    write_results(tmp_path, "2024-11-01_p1.json", results)
    plan = [
        per_1k("out-batch", "output_tokens", "1.00", dimensions={"batch": "true"}),
        per_1k(
            "out-flex",
            "output_tokens",
            "1.50",
            dimensions={"batch": "false", "service_tier": "flex"},
        ),
        per_1k(
            "out-default",
            "output_tokens",
            "2.00",
            dimensions={"batch": "false", "service_tier": "default"},
        ),
    ]
    # each result has 800 text output tokens: batch 0.80 + flex 1.20 + default 1.60 = 3.60
    assert invoice_subtotal(tmp_path, catalog(plan)) == Decimal("3.60")


def test_images_characters_and_audio_seconds_are_meters_a_plan_can_price(tmp_path):
    for endpoint in ("images", "audio_speeches", "audio_transcriptions", "moderations"):
        land(
            tmp_path,
            f"usage_{endpoint}_result_spec_example.json",
            f"openai/usage/{endpoint}/2024-11-01_p1.json",
        )
    plan = [
        {
            "id": "images",
            "meter": "images",
            "unit_price": "0.04",
            "dimensions": {"size": "1024x1024"},
        },
        {"id": "tts", "meter": "characters", "unit_price": "0.02"},
        {"id": "whisper", "meter": "audio_seconds", "unit_price": "0.006"},
        {
            "id": "moderation",
            "meter": "input_tokens",
            "unit_price": "0.001",
            "dimensions": {"endpoint": "moderations"},
        },
    ]
    # spec examples: 2 images x 0.04 = 0.08; 45 characters x 0.02 = 0.90; 10 seconds x 0.006 = 0.06;
    # 20 moderation tokens x 0.001 = 0.02; total 1.06
    assert invoice_subtotal(tmp_path, catalog(plan)) == Decimal("1.06")
    ev = read(tmp_path).events
    assert (
        dict(
            zip(
                ev["meter"],
                ev["dimensions"].map_elements(lambda d: json.loads(d)["endpoint"], pl.String),
                strict=True,
            )
        )["audio_seconds"]
        == "audio_transcriptions"
    )


def test_the_fetcher_asks_for_every_documented_group_by_field():
    assert openai_api.USAGE_GROUP_BY["completions"] == (
        "project_id",
        "user_id",
        "api_key_id",
        "model",
        "batch",
        "service_tier",
    )
    assert openai_api.USAGE_GROUP_BY["images"][-2:] == ("size", "source")
    assert set(openai_api.USAGE_ENDPOINTS) <= set(openai_api.USAGE_GROUP_BY)
