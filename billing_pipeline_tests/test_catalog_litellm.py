"""The provider price book imported from LiteLLM's real price list (entries copied from it into
billing_pipeline_tests/data/providers/litellm/, see SOURCES.md there)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal
from pathlib import Path

import yaml
from click.testing import CliRunner

from billing_pipeline.catalog.litellm import per_million, price_book_from_litellm
from billing_pipeline.catalog.model import Catalog, PriceBookEntry
from billing_pipeline.cli import main
from billing_pipeline.quote.quote import parse_usage, quote

LITELLM = Path(__file__).resolve().parent / "data/providers/litellm/model_prices_subset.json"
DAY = dt.date(2026, 10, 1)


def price(entries, model, meter, dimensions=None) -> Decimal:
    (hit,) = [
        e
        for e in entries
        if e["models"] == [model] and e["meter"] == meter and e.get("dimensions") == dimensions
    ]
    return Decimal(hit["unit_price"])


def test_gpt_4o_costs_2_50_input_and_10_output_per_million_tokens_and_half_in_batch():
    entries, _ = price_book_from_litellm(LITELLM, ["openai"], DAY)
    assert price(entries, "gpt-4o", "input_tokens") == Decimal("2.50")
    assert price(entries, "gpt-4o", "output_tokens") == Decimal("10")
    assert price(entries, "gpt-4o", "cached_input_tokens") == Decimal("1.25")
    # OpenAI's Usage API marks batch results ``batch: true``: the batch price keys on that
    assert price(entries, "gpt-4o", "input_tokens", {"batch": "true"}) == Decimal("1.25")


def test_claude_cache_writes_are_priced_per_lifetime():
    entries, _ = price_book_from_litellm(LITELLM, ["anthropic"], DAY)
    assert price(entries, "claude-sonnet-4-5", "cache_write_tokens") == Decimal("3.75")
    assert price(
        entries, "claude-sonnet-4-5", "cache_write_tokens", {"cache_ttl": "1h"}
    ) == Decimal("6")
    assert {e["provider"] for e in entries} == {"anthropic"}


def test_prices_go_through_their_decimal_string_never_the_binary_float():
    assert per_million(2.5e-06, "x") == "2.50"
    assert per_million(1.1e-07, "x") == "0.11"  # Decimal(1.1e-07) would be 0.1099999...


def test_import_prices_writes_a_price_book_the_catalog_accepts_and_records_the_sha256(tmp_path):
    out = tmp_path / "price_book.yaml"
    result = CliRunner().invoke(
        main,
        [
            "import-prices",
            "--litellm",
            str(LITELLM),
            "--providers",
            "openai,anthropic",
            "--out",
            str(out),
            "--from",
            "2026-10-01",
        ],
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert f"# sha256 {hashlib.sha256(LITELLM.read_bytes()).hexdigest()}" in text
    entries = yaml.safe_load(text)["price_book"]
    assert entries and all(PriceBookEntry.model_validate(e).from_ == DAY for e in entries)


def test_an_unreadable_price_list_exits_2_naming_the_file(tmp_path):
    bad = tmp_path / "prices.json"
    bad.write_text("{not json")
    result = CliRunner().invoke(
        main,
        [
            "import-prices",
            "--litellm",
            str(bad),
            "--providers",
            "openai",
            "--out",
            str(tmp_path / "o.yaml"),
        ],
    )
    assert result.exit_code == 2 and str(bad) in result.output


LONG = Path(__file__).resolve().parent / "data/providers/litellm/claude_long_context.json"


def test_priority_flex_audio_and_image_prices_are_kept_with_the_dimensions_the_readers_emit():
    entries, _ = price_book_from_litellm(LITELLM, ["openai"], DAY)
    # hand-checked: Decimal(str(x)) x 1,000,000 for the float in the file
    assert price(entries, "gpt-4o", "input_tokens", {"service_tier": "priority"}) == Decimal(
        "4.25"
    )  # 4.25e-06
    assert price(entries, "gpt-4o", "cached_input_tokens", {"service_tier": "priority"}) == Decimal(
        "2.125"
    )  # 2.125e-06
    assert price(entries, "gpt-5", "input_tokens", {"service_tier": "flex"}) == Decimal(
        "0.625"
    )  # 6.25e-07
    assert price(entries, "gpt-5", "cached_input_tokens", {"batch": "true"}) == Decimal(
        "0.0625"
    )  # 6.25e-08
    audio = "gpt-4o-audio-preview-2024-12-17"
    assert price(entries, audio, "audio_input_tokens") == Decimal(
        "40"
    )  # input_cost_per_audio_token 4e-05
    assert price(entries, audio, "audio_output_tokens") == Decimal(
        "80"
    )  # output_cost_per_audio_token 8e-05
    assert price(entries, audio, "input_tokens") == Decimal(
        "2.50"
    )  # the text part keeps the text price
    assert price(entries, "gpt-realtime", "cached_audio_input_tokens") == Decimal("0.40")  # 4e-07
    assert price(entries, "gpt-realtime", "cached_image_input_tokens") == Decimal("0.50")  # 5e-07
    assert price(entries, "gpt-image-1.5", "image_input_tokens") == Decimal("8")  # 8e-06
    assert price(entries, "gpt-image-1.5", "image_input_tokens", {"batch": "true"}) == Decimal(
        "4"
    )  # 4e-06
    assert price(entries, "gpt-image-1.5", "image_output_tokens") == Decimal("32")  # 3.2e-05


def test_anthropic_long_context_and_batch_prices_key_on_the_usage_reports_context_window_and_tier():
    entries, _ = price_book_from_litellm(LONG, ["anthropic"], DAY)
    model = "claude-sonnet-4-5"
    assert price(entries, model, "input_tokens", {"context_window": "200k-1M"}) == Decimal(
        "6"
    )  # 6e-06
    assert price(entries, model, "output_tokens", {"context_window": "200k-1M"}) == Decimal(
        "22.50"
    )  # 2.25e-05
    assert price(entries, model, "input_tokens", {"service_tier": "batch"}) == Decimal(
        "1.50"
    )  # 1.5e-06
    assert price(
        entries, model, "cache_write_tokens", {"cache_ttl": "1h", "context_window": "200k-1M"}
    ) == Decimal("12")
    # the two-dimension entry comes after both one-dimension ones: the price book's last match wins
    order = [e.get("dimensions") for e in entries if e["meter"] == "cache_write_tokens"]
    assert order.index({"cache_ttl": "1h", "context_window": "200k-1M"}) > order.index(
        {"cache_ttl": "1h"}
    )
    assert order.index({"cache_ttl": "1h"}) > order.index(None)


def test_variants_no_reader_can_tell_apart_are_listed_as_skipped_not_guessed():
    skipped: list = []
    entries, _ = price_book_from_litellm(LITELLM, ["openai", "anthropic"], DAY, skipped)
    why = {(k, f): w for k, f, w in skipped}
    assert "272k" in why[("gpt-6-astra", "input_cost_per_token_above_272k_tokens")]
    assert "100k" in why[("claude-haiku-5-5", "input_cost_per_token_above_100k_tokens")]
    assert "_ultrafast" in why[("gpt-6-astra", "input_cost_per_token_ultrafast")]
    assert ("gpt-realtime", "cache_creation_input_audio_token_cost") in why
    assert not [
        e
        for e in entries
        if e["models"] == ["claude-haiku-5-5"] and "context_window" in (e.get("dimensions") or {})
    ]


def test_speech_characters_and_transcribed_seconds_are_priced_for_the_audio_endpoints_meters():
    entries, _ = price_book_from_litellm(LITELLM.with_name("audio_endpoints.json"), ["openai"], DAY)
    assert price(entries, "tts-1", "characters") == Decimal(
        "15"
    )  # input_cost_per_character 1.5e-05 per 1M characters
    assert price(entries, "whisper-1", "audio_seconds") == Decimal(
        "100"
    )  # input_cost_per_second 0.0001 per 1M seconds
    assert {e["unit_size"] for e in entries} == {1_000_000}


def _import(tmp_path, source: Path, out: Path, day: str, *previous: Path):
    args = ["import-prices", "--litellm", str(source), "--providers", "openai,anthropic"]
    args += ["--out", str(out), "--from", day]
    if previous:
        args += ["--previous", str(previous[0])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.output, yaml.safe_load(out.read_text())["price_book"]


def test_importing_again_keeps_the_price_book_current_with_a_change_dated_and_the_rest_untouched(
    tmp_path,
):
    first = tmp_path / "book_oct01.yaml"
    _, before = _import(tmp_path, LITELLM, first, "2026-10-01")
    # LiteLLM's list a fortnight later: gpt-4o input down from 2.5e-06 to 2e-06, nothing else
    changed = json.loads(LITELLM.read_text())
    changed["gpt-4o"]["input_cost_per_token"] = 2e-06
    later = tmp_path / "prices_oct15.json"
    later.write_text(json.dumps(changed))
    output, after = _import(tmp_path, later, tmp_path / "book.yaml", "2026-10-15", first)
    assert "1 price(s) changed on 2026-10-15" in output and "0 added" in output
    gpt_input = [
        PriceBookEntry.model_validate(e)
        for e in after
        if e["models"] == ["gpt-4o"] and e["meter"] == "input_tokens" and not e.get("dimensions")
    ]
    assert [(e.unit_price, e.from_, e.to) for e in gpt_input] == [
        (Decimal("2.50"), DAY, dt.date(2026, 10, 14)),
        (Decimal("2.00"), dt.date(2026, 10, 15), None),
    ]
    # every other price keeps its entry and its date: nothing else splits in October
    assert len(after) == len(before) + 1
    untouched = [e for e in after if PriceBookEntry.model_validate(e).from_ == DAY]
    assert len(untouched) == len(before)


def test_a_cost_plus_month_splits_where_the_imported_price_changed(tmp_path):
    first = tmp_path / "book_oct01.yaml"
    _import(tmp_path, LITELLM, first, "2026-10-01")
    changed = json.loads(LITELLM.read_text())
    changed["gpt-4o"]["input_cost_per_token"] = 2e-06
    later = tmp_path / "prices_oct15.json"
    later.write_text(json.dumps(changed))
    _, book = _import(tmp_path, later, tmp_path / "book.yaml", "2026-10-15", first)
    catalog = Catalog.model_validate(
        {
            "issuer": {"name": "R"},
            "plans": {
                "list": {
                    "name": "List",
                    "charges": [
                        {
                            "id": "tokens",
                            "meter": ["input_tokens", "output_tokens"],
                            "pricing": "cost_plus",
                            "markup": "0.25",
                        }
                    ],
                }
            },
            "customers": {},
            "price_book": book,
        }
    )
    # a quote prices at the month's first day: 1,000,000 gpt-4o input at 2.50 x 1.25 = 3.125
    # -> 3.13 (half up), labelled with its price period; claude's line is not split
    document = quote(
        catalog,
        "list",
        [
            parse_usage("input_tokens:gpt-4o=1000000"),
            parse_usage("output_tokens:claude-sonnet-4-5=1000"),
        ],
        "2026-10",
    )
    assert [(ln["description"], ln["amount"]) for ln in document["lines"]] == [
        ("Tokens (claude-sonnet-4-5)", "0.02"),  # 1,000 x 15/1M = 0.015 x 1.25 = 0.01875
        ("Tokens (gpt-4o) (Oct 1-14)", "3.13"),
    ]
