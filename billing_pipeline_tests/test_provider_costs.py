"""The providers' published cost pages, read line by line into dollars, meter and dimensions:
Anthropic's amount is a decimal string in cents, OpenAI's line_item is parsed into model + meter
(+ priority, batch, long context), an unknown line item is listed and never guessed into a model
name, and an unreadable cost line is quarantined as kind ``cost`` with the account it names."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from billing_pipeline.schema import KIND_COST, METERS
from billing_pipeline.sources import provider_costs
from billing_pipeline.sources.provider_costs import LineItem, parse_line_item

FIXTURES = Path(__file__).parent / "data" / "providers"
WORKSPACE = "anthropic:wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ"


def landing(tmp_path: Path, *files: tuple[str, str]) -> Path:
    """Copy fixtures (source path under providers/, landing folder) as undated pages."""
    for fixture, folder in files:
        target = tmp_path / folder
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / fixture, target / Path(fixture).name)
    return tmp_path


def anthropic_costs(tmp_path: Path):
    root = landing(tmp_path, ("anthropic/cost_report.json", "anthropic/cost_report"))
    return provider_costs.read(root, date(2025, 8, 1), date(2025, 8, 2))


def openai_costs(tmp_path: Path):
    root = landing(
        tmp_path,
        ("openai_costs/costs_by_line_item.json", "openai/costs"),
        ("openai_costs/costs_spec_example.json", "openai/costs"),
    )
    return provider_costs.read(root, date(2024, 11, 1), date(2025, 2, 1))


# ---------------------------------------------------------------- Anthropic cost_report


def test_anthropic_cents_become_dollars_line_by_line_with_meter_and_dimensions(tmp_path):
    read = anthropic_costs(tmp_path)
    assert read.quarantine.height == 0 and read.records_read == 10 and read.unparsed.height == 0
    got = [
        (r["meter"], json.loads(r["dimensions"]), r["amount"])
        for r in read.costs.iter_rows(named=True)
    ]
    std = {"service_tier": "standard", "context_window": "0-200k", "inference_geo": "global"}
    # amount is cents as a decimal string: dollars = cents / 100, by hand
    assert got == [
        ("input_tokens", std, Decimal("1.2378912")),  # "123.78912" (the published example)
        ("output_tokens", std, Decimal("0.505")),  # "50.5"
        ("cached_input_tokens", std, Decimal("0.0075")),  # "0.75"
        ("cache_write_tokens", std | {"cache_ttl": "5m"}, Decimal("0.0625")),  # "6.25"
        (
            "cache_write_tokens",
            std | {"cache_ttl": "1h"},
            Decimal("0.125"),
        ),  # "12.5": the 1-hour write
        (
            "input_tokens",
            std | {"service_tier": "batch"},
            Decimal("0.6189456"),
        ),  # "61.89456": batch line
        ("input_tokens", std | {"context_window": "200k-1M"}, Decimal("5")),  # "500": long context
        ("input_tokens", std | {"inference_geo": "us"}, Decimal("0.1")),  # "10": US-only inference
        ("web_search_requests", {}, Decimal("1")),  # "100"
        (None, {"tool": "code_execution"}, Decimal("0.05")),  # "5"
    ]
    # 1.2378912 + 0.505 + 0.0075 + 0.0625 + 0.125 + 0.6189456 + 5 + 0.1 + 1 + 0.05 = 8.7068368
    assert read.costs["amount"].sum() == Decimal("8.7068368")
    assert (
        read.costs["cost_id"].is_unique().all()
    )  # lines differing in one grouping field stay apart
    assert set(read.costs["account_key"]) == {WORKSPACE} and set(read.costs["currency"]) == {"USD"}
    assert set(read.costs["end"]) == {datetime(2025, 8, 2, tzinfo=UTC)}
    tiers = read.costs.filter(meter="input_tokens")["service_tier"].to_list()
    assert tiers == ["standard", "batch", "standard", "standard"]


def test_an_anthropic_token_type_we_do_not_know_is_listed_not_mapped(tmp_path):
    page = json.loads((FIXTURES / "anthropic/cost_report.json").read_text())
    page["data"][0]["results"][0]["token_type"] = "cache_creation.ephemeral_24h_input_tokens"
    (tmp_path / "anthropic/cost_report").mkdir(parents=True)
    (tmp_path / "anthropic/cost_report/cost_report.json").write_text(json.dumps(page))
    read = provider_costs.read(tmp_path, date(2025, 8, 1), date(2025, 8, 2))
    assert read.unparsed.select("token_type", "meter", "amount").rows() == [
        ("cache_creation.ephemeral_24h_input_tokens", None, Decimal("1.2378912"))
    ]
    assert read.costs.height == 10  # kept: the money is still the provider's word


def test_an_unreadable_cost_line_is_quarantined_as_cost_with_its_account(tmp_path):
    page = json.loads((FIXTURES / "anthropic/cost_report.json").read_text())
    page["data"][0]["results"][1]["amount"] = 50.5  # a number, not the documented string of cents
    (tmp_path / "anthropic/cost_report").mkdir(parents=True)
    (tmp_path / "anthropic/cost_report/2025-08-01_p1.json").write_text(json.dumps(page))
    (tmp_path / "anthropic/cost_report/2025-08-01_p2.json").write_text(
        '{"data": ['
    )  # truncated page
    read = provider_costs.read(tmp_path, date(2025, 8, 1), date(2025, 8, 2))
    assert sorted(read.quarantine.select("reason", "account_key", "kind").rows(), key=str) == [
        ("bad_number", WORKSPACE, KIND_COST),
        ("unreadable_file", None, KIND_COST),
    ]
    assert read.records_read == 9 + 2 == read.costs.height + read.quarantine.height


def test_a_page_with_a_byte_order_mark_is_read(tmp_path):
    (tmp_path / "anthropic/cost_report").mkdir(parents=True)
    raw = (FIXTURES / "anthropic/cost_report.json").read_bytes()
    (tmp_path / "anthropic/cost_report/2025-08-01_p1.json").write_bytes(b"\xef\xbb\xbf" + raw)
    read = provider_costs.read(tmp_path, date(2025, 8, 1), date(2025, 8, 2))
    assert read.costs.height == 10 and read.quarantine.height == 0


# ---------------------------------------------------------------- OpenAI Costs API


@pytest.mark.parametrize(
    ("line_item", "expected"),
    [
        ("gpt-4o-2024-08-06, input", LineItem("gpt-4o-2024-08-06", "input_tokens", "input")),
        (
            "gpt-4o-mini-2024-07-18, cached input",
            LineItem("gpt-4o-mini-2024-07-18", "cached_input_tokens", "cached input"),
        ),
        ("gpt-4o-2024-08-06, output", LineItem("gpt-4o-2024-08-06", "output_tokens", "output")),
        (
            "gpt-4o-audio-preview audio, input",
            LineItem("gpt-4o-audio-preview", "audio_input_tokens", "input"),
        ),
        (
            "gpt-4o-audio-preview audio, output",
            LineItem("gpt-4o-audio-preview", "audio_output_tokens", "output"),
        ),
        (
            "gpt-4o-audio-preview audio, cached input",
            LineItem("gpt-4o-audio-preview", "cached_audio_input_tokens", "cached input"),
        ),
        ("gpt-image-1 image, input", LineItem("gpt-image-1", "image_input_tokens", "input")),
        ("gpt-image-1 text, input", LineItem("gpt-image-1", "input_tokens", "input")),
        (
            "priority | gpt-5, output, long context",
            LineItem(
                "gpt-5",
                "output_tokens",
                "output",
                {"service_tier": "priority", "context_window": "long"},
            ),
        ),
        (
            "gpt-4o-mini, batch input",
            LineItem("gpt-4o-mini", "input_tokens", "batch input", {"service_tier": "batch"}),
        ),
        (
            "evals | gpt-4o-mini-2024-07-18, input",
            LineItem("gpt-4o-mini-2024-07-18", "input_tokens", "input", {"surface": "evals"}),
        ),
        ("ft-gpt-4o-2024-08-06, input", LineItem("ft-gpt-4o-2024-08-06", "input_tokens", "input")),
        (
            "web search tool calls",
            LineItem(None, "web_search_requests", None, {"tool": "web_search"}),
        ),
        ("file search tool calls", LineItem(None, None, None, {"tool": "file_search"})),
        (
            "assistants api | file search",
            LineItem(None, None, None, {"surface": "assistants api", "tool": "file_search"}),
        ),
        ("code interpreter sessions", LineItem(None, None, None, {"tool": "code_interpreter"})),
        ("input_tokens", LineItem(None, "input_tokens")),  # the spec's CostsResult example
        (None, LineItem()),  # not grouped by line item: the day's total
    ],
)
def test_every_documented_line_item_form_gives_model_meter_and_dimensions(line_item, expected):
    assert parse_line_item(line_item) == expected
    assert expected.meter is None or expected.meter in METERS


@pytest.mark.parametrize(
    "line_item",
    [
        "gpt-realtime-2025-08-28, audio input",  # token part we do not know
        "gpt-4o-2024-08-06, images",
        "gpt-4o, input, short context",  # qualifier we do not know
        "flexible | gpt-4o, input",  # prefix we do not know
        "some new product",  # no comma, not a known tool line
        "gpt 4o, input",  # a model part with a space is not a model id
    ],
)
def test_an_unknown_line_item_is_not_guessed_into_a_model(line_item):
    assert parse_line_item(line_item) == LineItem(parsed=False)


def test_openai_cost_pages_are_dollars_per_line_and_unknown_forms_are_listed(tmp_path):
    read = openai_costs(tmp_path)
    assert read.quarantine.height == 0 and read.records_read == 1 + 4 + 14
    rows = {(r["line_item"], r["account_key"]): r for r in read.costs.iter_rows(named=True)}
    # amount.value is dollars already: Decimal(str(value)), by hand from the pages
    assert rows[(None, None)]["amount"] == Decimal("0.06")  # the spec example, not grouped
    assert rows[(None, None)]["start"] == datetime(2024, 11, 1, tzinfo=UTC)
    file_search = [r for (li, _), r in rows.items() if li == "assistants api | file search"]
    assert sorted(r["amount"] for r in file_search) == [Decimal("0.000003"), Decimal("0.000271")]
    priority = rows[("priority | gpt-5-2025-08-07, output, long context", "openai:proj_abc")]
    assert (
        priority["model"],
        priority["meter"],
        priority["service_tier"],
        json.loads(priority["dimensions"]),
        priority["amount"],
        priority["quantity"],
    ) == (
        "gpt-5-2025-08-07",
        "output_tokens",
        "priority",
        {"service_tier": "priority", "context_window": "long"},
        Decimal("1.5"),
        Decimal(50000),
    )
    web = rows[("web search tool calls", "openai:proj_abc")]
    assert (web["model"], web["meter"], web["amount"]) == (
        None,
        "web_search_requests",
        Decimal("0.25"),
    )
    assert rows[("input_tokens", "openai:proj_abc")]["quantity_unit"] == "tokens"
    # unknown forms: kept with their money, model and meter null, flagged and listed
    assert sorted(read.unparsed.select("line_item", "model", "meter", "amount").rows()) == [
        ("gpt-4o-2024-08-06, images", None, None, Decimal("0.05")),
        ("gpt-realtime-2025-08-28, audio input", None, None, Decimal("0.32")),
    ]
    # 2025-01-12 by hand: 0.028607 + 0.06 + 2.1125 + 0.5 + 3.1 + 0.04 + 0.08 + 1.5 + 0.25 + 0.25 + 0.1 + 0.03
    #                      + 0.32 + 0.05 = 8.421107
    jan12 = read.costs.filter(day=date(2025, 1, 12))
    assert jan12["amount"].sum() == Decimal("8.421107")


def test_an_openai_amount_that_is_not_money_is_quarantined_as_cost_with_its_project(tmp_path):
    page = json.loads((FIXTURES / "openai_costs/costs_by_line_item.json").read_text())
    page["data"][1]["results"][2]["amount"]["value"] = "lots"
    page["data"][1]["results"][3]["quantity"] = "many"
    (tmp_path / "openai/costs").mkdir(parents=True)
    (tmp_path / "openai/costs/costs.json").write_text(json.dumps(page))
    read = provider_costs.read(tmp_path, date(2025, 1, 1), date(2025, 2, 1))
    assert read.quarantine.select("field", "reason", "account_key", "kind").rows() == [
        ("data[1].results[2].amount.value", "bad_number", "openai:proj_abc", KIND_COST),
        ("data[1].results[3].quantity", "bad_number", "openai:proj_abc", KIND_COST),
    ]
    assert read.records_read == 4 + 14 == read.costs.height + read.quarantine.height


def test_a_cost_page_read_twice_counts_once_and_a_changed_amount_is_named(tmp_path):
    folder = tmp_path / "anthropic/cost_report"
    folder.mkdir(parents=True)
    raw = (FIXTURES / "anthropic/cost_report.json").read_text()
    (folder / "2025-08-01_p1.json").write_text(raw)
    (folder / "2025-08-01_p1_copy.json").write_text(
        raw.replace('"amount": "50.5"', '"amount": "52.5"')
    )
    read = provider_costs.read(tmp_path, date(2025, 8, 1), date(2025, 8, 2))
    assert read.costs.height == 10 and read.costs["amount"].sum() == Decimal(
        "8.7068368"
    )  # as if read once
    reasons = read.quarantine["reason"].to_list()
    assert reasons.count("duplicate") == 9 and reasons.count("conflicting_cost") == 1
    [conflict] = read.quarantine.filter(reason="conflicting_cost").rows(named=True)
    assert "0.505" in conflict["message"] and "0.525" in conflict["message"]  # 50.5 and 52.5 cents
    assert set(read.quarantine["kind"]) == {KIND_COST} and read.records_read == 20


def test_a_cost_page_whose_next_page_is_missing_is_quarantined_as_cost(tmp_path):
    folder = tmp_path / "anthropic/cost_report"
    folder.mkdir(parents=True)
    page = json.loads((FIXTURES / "anthropic/cost_report.json").read_text())
    page |= {"has_more": True, "next_page": "page_MjAyNS0wNS0xNFQwMDowMDowMFo="}  # as published
    (folder / "2025-08-01_p1.json").write_text(json.dumps(page))
    read = provider_costs.read(tmp_path, date(2025, 8, 1), date(2025, 8, 2))
    assert read.quarantine.select("origin", "reason", "kind").rows() == [
        ("anthropic/cost_report/2025-08-01_p1.json", "missing_next_page", KIND_COST)
    ]
    assert "2025-08-01_p2.json" in read.quarantine["message"][0]
    assert read.costs.height == 10  # the lines that did arrive are read
    (folder / "2025-08-01_p2.json").write_text(
        json.dumps({"data": [], "has_more": False, "next_page": None})
    )
    assert provider_costs.read(tmp_path, date(2025, 8, 1), date(2025, 8, 2)).quarantine.height == 0
