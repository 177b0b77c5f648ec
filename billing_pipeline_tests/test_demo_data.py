"""The demo month: a valid catalog, every export format, reproducible bytes, and an oracle that
prices it. The oracle (``oracle.py``) is the engine's independent yardstick for end-to-end tests."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import statistics
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from billing_pipeline.catalog import load_catalog
from billing_pipeline.demo import landing_is_empty, write_demo
from billing_pipeline_tests.oracle import expected_invoice, price

MONTH = "2026-10"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path, object]:
    root = tmp_path_factory.mktemp("demo")
    summary = write_demo(root / "landing", root / "catalog.yaml", month=MONTH, seed=7)
    return root / "landing", root / "catalog.yaml", summary


def _digest(landing: Path, catalog: Path) -> dict[str, str]:
    files = {p.relative_to(landing).as_posix(): p for p in landing.rglob("*") if p.is_file()}
    files["<catalog>"] = catalog
    return {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in sorted(files.items())}


def test_demo_catalog_validates_with_enough_customers_and_plans(demo):
    _, catalog_path, summary = demo
    catalog = load_catalog(catalog_path)
    assert len(catalog.customers) >= 20 and summary.customers == len(catalog.customers)
    assert {"payg", "growth", "enterprise"} <= set(catalog.plans)
    assert catalog.issuer.vat_id == "DE123456789"
    assert catalog.plans["enterprise"].base_fee == Decimal("500.00")
    assert all(not c.credits for c in catalog.customers.values())
    text = catalog_path.read_text(encoding="utf-8")
    assert "&id" not in text  # no YAML anchors: a person edits this file


def test_same_seed_gives_identical_bytes_and_another_seed_differs(demo, tmp_path):
    landing, catalog_path, _ = demo
    write_demo(tmp_path / "a", tmp_path / "a.yaml", month=MONTH, seed=7)
    write_demo(tmp_path / "b", tmp_path / "b.yaml", month=MONTH, seed=8)
    assert _digest(tmp_path / "a", tmp_path / "a.yaml") == _digest(landing, catalog_path)
    assert _digest(tmp_path / "b", tmp_path / "b.yaml") != _digest(landing, catalog_path)


def test_demo_refuses_a_landing_zone_that_is_not_empty(demo, tmp_path):
    landing, _, _ = demo
    assert landing_is_empty(tmp_path / "missing") and landing_is_empty(tmp_path)
    assert not landing_is_empty(landing)
    with pytest.raises(FileExistsError):
        write_demo(landing, tmp_path / "c.yaml")


def test_every_source_format_is_present_and_small(demo):
    landing, _, summary = demo
    openai_pages = sorted((landing / "openai/usage/completions").glob("*.json"))
    assert len(openai_pages) == 2 * 31
    first = json.loads(openai_pages[0].read_text())
    second = json.loads(openai_pages[1].read_text())
    assert first["object"] == "page" and first["has_more"] and first["next_page"]
    assert not second["has_more"] and second["next_page"] is None
    result = first["data"][0]["results"][0]
    assert result["input_tokens"] >= result["input_cached_tokens"]
    assert len(list((landing / "anthropic/usage_report").glob("*_p1.json"))) == 31
    gateway = [
        json.loads(line)
        for p in sorted((landing / "gateway").glob("*.jsonl"))
        for line in p.read_text().splitlines()
    ]
    assert any("usage" in r for r in gateway)
    assert {r["customer_key"] for r in gateway if "usage" not in r} == {"piedpiper", "vandelay"}
    with (landing / f"cloud/focus/focus_{MONTH}.csv").open(newline="") as fh:
        focus = list(csv.DictReader(fh))
    for col in ("BilledCost", "EffectiveCost", "ListCost", "ChargePeriodStart", "Tags", "SkuId"):
        assert col in focus[0]
    assert sum("g5.4xlarge" in r["ChargeDescription"] for r in focus) > 1000
    assert any(r["ServiceCategory"] == "Storage" for r in focus)
    with (landing / f"outcomes/outcomes_{MONTH}.csv").open(newline="") as fh:
        assert any(r["outcome_type"] == "accepted_diagnosis" for r in csv.DictReader(fh))
    assert all(summary.rows.values())
    assert sum(p.stat().st_size for p in landing.rglob("*") if p.is_file()) < 5_000_000


def test_orphan_project_has_usage_but_no_customer(demo):
    landing, catalog_path, _ = demo
    keys = {
        k for c in yaml.safe_load(catalog_path.read_text())["customers"].values() for k in c["keys"]
    }
    assert "openai:proj_orphan" not in keys
    page = json.loads((landing / "openai/usage/completions/2026-10-10_p2.json").read_text())
    projects = {r["project_id"] for b in page["data"] for r in b["results"]}
    assert "proj_orphan" in projects


def test_cyberdyne_has_a_two_day_bot_run_spike(demo):
    landing, catalog_path, _ = demo
    catalog = load_catalog(catalog_path)
    projects = {
        k.split(":", 1)[1] for k in catalog.customers["cyberdyne"].keys if k.startswith("openai:")
    }
    per_day: dict[str, int] = {}
    for p in (landing / "openai/usage/completions").glob("*.json"):
        for b in json.loads(p.read_text())["data"]:
            for r in b["results"]:
                if r["project_id"] in projects:
                    day = p.name[:10]
                    per_day[day] = per_day.get(day, 0) + r["input_tokens"] + r["output_tokens"]
    median = statistics.median(per_day.values())
    spikes = sorted(d for d, v in per_day.items() if v > 6 * median)
    assert spikes == ["2026-10-20", "2026-10-21"]


@pytest.mark.parametrize("customer", ["acme", "globex", "umbrella"])
def test_oracle_prices_one_customer_of_each_plan(demo, customer):
    landing, catalog_path, _ = demo
    inv = expected_invoice(landing, catalog_path, customer, MONTH)
    assert inv["total"] > 0 and not set(inv["unpriced"]) - {"outcomes"}
    assert inv["subtotal"] == sum(inv["lines"].values())
    assert inv["tax"] == (inv["subtotal"] * Decimal("0.19")).quantize(
        Decimal("0.01")
    )  # all three are German
    assert inv["total"] == inv["subtotal"] + inv["tax"]


def test_demo_exercises_allowance_tiers_and_minimum_commitment(demo):
    landing, catalog_path, _ = demo
    inv = {
        c: expected_invoice(landing, catalog_path, c, MONTH)
        for c in ("acme", "weyland", "blackmesa", "dunder", "globex", "wonka", "wayne")
    }
    assert inv["acme"]["quantities"]["tokens"] > 300_000_000  # volume tier 3
    assert inv["acme"]["lines"]["diagnoses"] == Decimal("1440.00")
    assert inv["weyland"]["allowance_used"] < 1_000_000 and "tokens" not in inv["weyland"]["lines"]
    assert inv["blackmesa"]["lines"]["minimum_commitment"] > 0
    assert inv["dunder"]["lines"]["base_fee"] == Decimal("274.19")  # 17 of 31 days of 500.00
    assert "minimum_commitment" not in inv["dunder"]["lines"]
    assert inv["globex"]["quantities"]["output-graduated"] > 50_000_000  # crosses both tier edges
    assert inv["wonka"]["quantities"]["output-graduated"] < 10_000_000
    assert inv["wayne"]["tax"] == 0  # reverse charge


def test_oracle_pricing_rules_match_the_design_examples():
    per_unit = {"id": "x", "unit_size": 1000, "pricing": "per_unit", "unit_price": "0.04"}
    assert price(per_unit, 10_500) == Decimal("0.42")
    tiers = [
        {"up_to": 100, "unit_price": "1"},
        {"up_to": None, "unit_price": "0.5", "flat_fee": "3"},
    ]
    assert price({"id": "g", "pricing": "graduated", "tiers": tiers}, 100) == Decimal("100")
    assert price({"id": "g", "pricing": "graduated", "tiers": tiers}, 101) == Decimal("103.5")
    assert price({"id": "v", "pricing": "volume", "tiers": tiers}, 100) == Decimal("100")
    assert price({"id": "v", "pricing": "volume", "tiers": tiers}, 102) == Decimal("54")
    package = {"id": "p", "pricing": "package", "package_size": 1000, "package_price": "2.00"}
    assert price(package, 1001) == Decimal("4.00")


def test_the_demo_has_a_customer_billed_cost_plus_from_litellm_spend_logs(demo):
    landing, catalog_path, summary = demo
    catalog = load_catalog(catalog_path)
    pinnacle = catalog.customers["pinnacle"]
    assert pinnacle.keys == ["litellm:team:team-pinnacle"]
    charge = catalog.plans[pinnacle.subscriptions[0].plan].charges[0]
    assert (charge.pricing, charge.markup, charge.unit_fee) == (
        "cost_plus",
        Decimal("0.15"),
        Decimal("0.10"),
    )
    rows = json.loads((landing / f"litellm/spend_logs/spend_logs_{MONTH}.json").read_text())
    assert summary.rows["litellm_spend_logs"] == len(rows) > 300
    assert {r["team_id"] for r in rows} == {"team-pinnacle"}
    assert {r["status"] for r in rows} == {"success", "failure"}
    # gpt-4.1's list price is cut on the 15th: the price book ends the old price the day before
    gpt41 = [e for e in catalog.price_book if e.models and "gpt-4.1" in e.models]
    assert {(e.meter, e.to) for e in gpt41 if e.to} == {
        ("input_tokens", dt.date(2026, 10, 14)),
        ("output_tokens", dt.date(2026, 10, 14)),
    }
