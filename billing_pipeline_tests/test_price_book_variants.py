"""What providers charge us for batch, priority and long-context usage: the price book imported
from LiteLLM keys its variants on the dimensions the readers emit, so each usage row is costed
at its own variant's price (README "Provider price book")."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import yaml
from pydantic import ValidationError

from billing_pipeline.catalog import Catalog, PriceBookEntry, parse_catalog
from billing_pipeline.catalog.litellm import price_book_from_litellm
from billing_pipeline.reconcile.provider_cost import provider_cost
from billing_pipeline.sources import SOURCES
from billing_pipeline.usage import normalize

DATA = Path(__file__).resolve().parent / "data/providers/litellm"
DAY = dt.date(2026, 10, 5)
START, END = 1791158400, 1791244800  # 2026-10-05T00:00:00Z, 2026-10-06T00:00:00Z


def imported(*files: str, providers=("openai", "anthropic")):
    entries = []
    for name in files:
        entries += price_book_from_litellm(DATA / name, list(providers), dt.date(2026, 10, 1))[0]
    return entries


def catalog(price_book: list[dict]) -> Catalog:
    return parse_catalog(
        {
            "issuer": {"name": "Us"},
            "plans": {"p": {"name": "P", "charges": []}},
            "customers": {
                "acme": {
                    "name": "Acme",
                    "subscriptions": [{"plan": "p", "from": "2026-10-01"}],
                    "keys": ["openai:proj_abc", "anthropic:apikey_01Rj2N8S"],
                }
            },
            "price_book": price_book,
        }
    )


def openai_result(batch: bool, tier: str) -> dict:
    """One Usage API completions result (PROVIDER_FORMATS.md shape): 1M input, 100k output."""
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": 1_000_000,
        "output_tokens": 100_000,
        "num_model_requests": 10,
        "input_cached_tokens": 0,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "project_id": "proj_abc",
        "model": "gpt-4o-2024-08-06",
        "batch": batch,
        "service_tier": tier,
        "user_id": None,
        "api_key_id": None,
    }


def anthropic_result(tier: str, window: str) -> dict:
    """One usage_report/messages result (PROVIDER_FORMATS.md shape): 1M input, 100k output."""
    return {
        "api_key_id": "apikey_01Rj2N8S",
        "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
        "model": "claude-sonnet-4-5",
        "service_tier": tier,
        "context_window": window,
        "inference_geo": "global",
        "uncached_input_tokens": 1_000_000,
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
        "cache_read_input_tokens": 0,
        "output_tokens": 100_000,
        "server_tool_use": {"web_search_requests": 0},
    }


def write_landing(root: Path) -> None:
    openai = root / "openai/usage/completions"
    openai.mkdir(parents=True)
    (openai / "2026-10-05_p1.json").write_text(
        json.dumps(
            {
                "object": "page",
                "has_more": False,
                "next_page": None,
                "data": [
                    {
                        "object": "bucket",
                        "start_time": START,
                        "end_time": END,
                        "results": [
                            openai_result(False, "default"),
                            openai_result(True, "default"),
                            openai_result(False, "priority"),
                        ],
                    }
                ],
            }
        )
    )
    anthropic = root / "anthropic/usage_report"
    anthropic.mkdir(parents=True)
    (anthropic / "2026-10-05_p1.json").write_text(
        json.dumps(
            {
                "data": [
                    {
                        "starting_at": "2026-10-05T00:00:00Z",
                        "ending_at": "2026-10-06T00:00:00Z",
                        "results": [
                            anthropic_result("standard", "0-200k"),
                            anthropic_result("standard", "200k-1M"),
                            anthropic_result("batch", "0-200k"),
                        ],
                    }
                ],
                "has_more": False,
                "next_page": None,
            }
        )
    )


def costs(tmp_path: Path, cat: Catalog) -> dict[tuple[str, str], Decimal]:
    write_landing(tmp_path)
    reads = [
        SOURCES[s](tmp_path, DAY, DAY + dt.timedelta(days=1))
        for s in ("openai_usage_api", "anthropic_usage_report")
    ]
    assert all(r.quarantine.height == 0 for r in reads)
    usage, _ = normalize([r.events for r in reads], [r.quarantine for r in reads], cat)
    cost = provider_cost(usage, cat)
    assert set(cost.filter(pl.col("meter") != "requests")["cost_basis"]) == {"price_book"}
    per = cost.group_by("provider", "meter").agg(pl.col("cost").sum())
    return {(p, m): Decimal(str(c)) for p, m, c in per.iter_rows() if m != "requests"}


def test_batch_priority_and_long_context_usage_are_each_costed_at_their_own_litellm_price(tmp_path):
    cat = catalog(
        imported("model_prices_subset.json")
        + imported("claude_long_context.json", providers=("anthropic",))
    )
    got = costs(tmp_path, cat)
    # LiteLLM per token -> per 1M: gpt-4o input 2.5e-06 = 2.50, batch 1.25e-06 = 1.25,
    # priority 4.25e-06 = 4.25; output 1e-05 = 10, batch 5e-06 = 5, priority 1.7e-05 = 17.
    # Each OpenAI result: 1,000,000 input and 100,000 output tokens.
    openai_input = (
        Decimal("2.50") + Decimal("1.25") + Decimal("4.25")
    )  # default + batch + priority = 8.00
    openai_output = (
        Decimal(10) + Decimal(5) + Decimal(17)
    ) / 10  # 100k = 0.1M each: 1.00 + 0.50 + 1.70 = 3.20
    # claude-sonnet-4-5 input 3e-06 = 3.00, long context 6e-06 = 6.00, batch 1.5e-06 = 1.50;
    # output 1.5e-05 = 15, long context 2.25e-05 = 22.50, batch 7.5e-06 = 7.50
    anthropic_input = Decimal("3.00") + Decimal("6.00") + Decimal("1.50")  # 10.50
    anthropic_output = (
        Decimal(15) + Decimal("22.50") + Decimal("7.50")
    ) / 10  # 1.50 + 2.25 + 0.75 = 4.50
    assert got == {
        ("openai", "input_tokens"): openai_input,
        ("openai", "output_tokens"): openai_output,
        ("anthropic", "input_tokens"): anthropic_input,
        ("anthropic", "output_tokens"): anthropic_output,
    }
    assert (openai_input, openai_output, anthropic_input, anthropic_output) == (
        Decimal("8.00"),
        Decimal("3.20"),
        Decimal("10.50"),
        Decimal("4.50"),
    )


def test_without_the_variants_every_row_would_be_costed_at_the_plain_price(tmp_path):
    """The same usage against plain prices only (what import-prices kept before): batch, priority
    and long context all fall back to the default price, so the margin report was wrong by the
    difference (8.00 -> 7.50 OpenAI input, 10.50 -> 9.00 Anthropic input)."""
    plain = [
        e
        for e in imported("model_prices_subset.json")
        + imported("claude_long_context.json", providers=("anthropic",))
        if not e.get("dimensions")
    ]
    got = costs(tmp_path, catalog(plain))
    assert got[("openai", "input_tokens")] == 3 * Decimal("2.50")
    assert got[("anthropic", "input_tokens")] == 3 * Decimal("3.00")


def test_a_yaml_price_book_may_write_batch_true_bare_or_quoted():
    """``batch: true`` in YAML is a bool; the usage table writes the JSON true as the text "true"."""
    for text in ("batch: true", 'batch: "true"'):
        entry = yaml.safe_load(
            f"{{provider: openai, meter: input_tokens, dimensions: {{{text}}}, "
            f"unit_size: 1000000, unit_price: '1.25', from: 2026-10-01}}"
        )
        assert PriceBookEntry.model_validate(entry).dimensions == {"batch": "true"}


def test_a_price_book_entry_must_name_a_meter_a_reader_emits():
    with pytest.raises(ValidationError, match="unknown meter 'prompt_tokens'"):
        PriceBookEntry.model_validate(
            {
                "provider": "openai",
                "meter": "prompt_tokens",
                "unit_price": "1",
                "from": "2026-10-01",
            }
        )
