"""The provider price book imported from LiteLLM's real price list (a file in the repo's shared data)."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from billing_pipeline.catalog.litellm import per_million, price_book_from_litellm
from billing_pipeline.catalog.model import PriceBookEntry
from billing_pipeline.cli import main

LITELLM = Path(__file__).resolve().parents[2] / "shared/data/external/litellm_model_prices_and_context_window.json"
pytestmark = pytest.mark.skipif(not LITELLM.is_file(), reason=f"{LITELLM} not present")
DAY = dt.date(2026, 10, 1)


def price(entries, model, meter, dimensions=None) -> Decimal:
    (hit,) = [e for e in entries if e["models"] == [model] and e["meter"] == meter and e.get("dimensions") == dimensions]
    return Decimal(hit["unit_price"])


def test_gpt_4o_costs_2_50_input_and_10_output_per_million_tokens_and_half_in_batch():
    entries, _ = price_book_from_litellm(LITELLM, ["openai"], DAY)
    assert price(entries, "gpt-4o", "input_tokens") == Decimal("2.50")
    assert price(entries, "gpt-4o", "output_tokens") == Decimal("10")
    assert price(entries, "gpt-4o", "cached_input_tokens") == Decimal("1.25")
    assert price(entries, "gpt-4o", "input_tokens", {"service_tier": "batch"}) == Decimal("1.25")


def test_claude_cache_writes_are_priced_per_lifetime():
    entries, _ = price_book_from_litellm(LITELLM, ["anthropic"], DAY)
    assert price(entries, "claude-sonnet-4-5", "cache_write_tokens") == Decimal("3.75")
    assert price(entries, "claude-sonnet-4-5", "cache_write_tokens", {"cache_ttl": "1h"}) == Decimal("6")
    assert {e["provider"] for e in entries} == {"anthropic"}


def test_prices_go_through_their_decimal_string_never_the_binary_float():
    assert per_million(2.5e-06, "x") == "2.50"
    assert per_million(1.1e-07, "x") == "0.11"  # Decimal(1.1e-07) would be 0.1099999...


def test_import_prices_writes_a_price_book_the_catalog_accepts_and_records_the_sha256(tmp_path):
    out = tmp_path / "price_book.yaml"
    result = CliRunner().invoke(main, ["import-prices", "--litellm", str(LITELLM), "--providers", "openai,anthropic",
                                       "--out", str(out), "--from", "2026-10-01"])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert f"# sha256 {hashlib.sha256(LITELLM.read_bytes()).hexdigest()}" in text
    entries = yaml.safe_load(text)["price_book"]
    assert entries and all(PriceBookEntry.model_validate(e).from_ == DAY for e in entries)


def test_an_unreadable_price_list_exits_2_naming_the_file(tmp_path):
    bad = tmp_path / "prices.json"
    bad.write_text("{not json")
    result = CliRunner().invoke(main, ["import-prices", "--litellm", str(bad), "--providers", "openai",
                                       "--out", str(tmp_path / "o.yaml")])
    assert result.exit_code == 2 and str(bad) in result.output
