"""The real third-party data the tests read lives in the repository (data/external/, each file's
license and source in SOURCES.md there), so a clean clone runs these tests instead of skipping."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path

import yaml
from click.testing import CliRunner

from billing_pipeline.catalog.model import PriceBookEntry
from billing_pipeline.cli import main

EXTERNAL = Path(__file__).resolve().parent / "data" / "external"
LITELLM = EXTERNAL / "litellm_model_prices_and_context_window.json"  # BerriAI/litellm, MIT
SUBSET = Path(__file__).resolve().parent / "data/providers/litellm/model_prices_subset.json"


def test_every_external_file_is_described_with_its_license_and_sha256():
    sources = (EXTERNAL / "SOURCES.md").read_text(encoding="utf-8")
    files = sorted(p for p in EXTERNAL.iterdir() if p.name != "SOURCES.md")
    assert [p.name for p in files] == [
        "focus_1.0_sample_1000.csv",
        "litellm_model_prices_and_context_window.json",
    ]
    for path in files:
        assert f"## {path.name}" in sources
        assert hashlib.sha256(path.read_bytes()).hexdigest() in sources, (
            f"{path.name} changed: update SOURCES.md"
        )
    assert "CC BY 4.0" in sources and "MIT" in sources


def test_the_litellm_fixture_entries_are_copied_unchanged_from_the_real_list():
    real = json.loads(LITELLM.read_text(encoding="utf-8"))
    subset = json.loads(SUBSET.read_text(encoding="utf-8"))
    assert {key: real[key] for key in subset} == subset


def test_the_whole_real_price_list_imports_into_a_price_book_the_catalog_accepts(tmp_path):
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
    entries = yaml.safe_load(out.read_text(encoding="utf-8"))["price_book"]
    assert len(entries) > 500  # thousands of models in the file; every priced openai/anthropic one
    assert all(PriceBookEntry.model_validate(e) for e in entries)

    def price(model, meter):
        (hit,) = [
            e
            for e in entries
            if e["models"] == [model] and e["meter"] == meter and not e.get("dimensions")
        ]
        return Decimal(hit["unit_price"])

    # The file prices per token; the price book per 1,000,000 tokens:
    assert price("gpt-4o", "input_tokens") == Decimal("2.50")  # 2.5e-06 x 1,000,000
    assert price("gpt-4o", "output_tokens") == Decimal("10")  # 1e-05 x 1,000,000
    assert price("claude-sonnet-4-5", "cache_write_tokens") == Decimal(
        "3.75"
    )  # 3.75e-06 x 1,000,000
    assert price("claude-sonnet-4-5", "cached_input_tokens") == Decimal("0.30")  # 3e-07 x 1,000,000
