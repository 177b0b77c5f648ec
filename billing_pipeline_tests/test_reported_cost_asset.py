"""The providers' own cost pages reach reconciliation through a daily asset, nothing lost."""

from __future__ import annotations

import json
from decimal import Decimal

import dagster as dg

from billing_pipeline.defs.ingestion import REPORTED_COST_CHECK, provider_reported_cost
from billing_pipeline.defs.resources import CatalogResource, LandingZone, PolarsParquetIOManager

DAY = "2026-10-05"


def page(results: list[dict]) -> dict:
    return {
        "object": "page",
        "has_more": False,
        "next_page": None,
        "data": [
            {
                "object": "bucket",
                "start_time": 1791158400,
                "end_time": 1791244800,
                "results": results,
            }
        ],
    }


def test_cost_pages_become_dollar_lines_and_an_unreadable_amount_is_reported(tmp_path):
    costs = tmp_path / "landing" / "openai" / "costs"
    costs.mkdir(parents=True)
    (costs / f"{DAY}_p1.json").write_text(
        json.dumps(
            page(
                [
                    {
                        "object": "organization.costs.result",
                        "amount": {"value": 2.1125, "currency": "usd"},
                        "line_item": "gpt-4o-2024-08-06, input",
                        "project_id": "proj_a",
                    },
                    {
                        "object": "organization.costs.result",
                        "amount": {"value": 0.05, "currency": "usd"},
                        "line_item": "gpt-4o-2024-08-06, images",
                        "project_id": "proj_a",
                    },
                    {
                        "object": "organization.costs.result",
                        "amount": {"value": "lots", "currency": "usd"},
                        "line_item": "gpt-4o-2024-08-06, output",
                        "project_id": "proj_a",
                    },
                ]
            )
        )
    )
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        json.dumps(
            {
                "issuer": {"name": "Example AI GmbH"},
                "plans": {},
                "customers": {
                    "acme": {"name": "Acme", "subscriptions": [], "keys": ["openai:proj_a"]}
                },
            }
        )
    )
    result = dg.materialize(
        [provider_reported_cost],
        partition_key=DAY,
        resources={
            "landing": LandingZone(path=str(tmp_path / "landing")),
            "catalog": CatalogResource(path=str(catalog)),
            "io_manager": PolarsParquetIOManager(base_dir=str(tmp_path / "storage")),
        },
    )
    lines = result.output_for_node("provider_reported_cost", "provider_reported_cost")
    # The unreadable amount is kept for the month's quarantine.csv: kind cost, naming whose it is.
    [unread] = result.output_for_node(
        "provider_reported_cost", "provider_cost_quarantine"
    ).to_dicts()
    assert (unread["kind"], unread["account_key"], unread["customer_id"]) == (
        "cost",
        "openai:proj_a",
        "acme",
    )
    assert lines["amount"].to_list() == [Decimal("2.1125"), Decimal("0.05")]
    assert lines.select("model", "meter", "line_item_parsed").rows() == [
        ("gpt-4o-2024-08-06", "input_tokens", True),
        (None, None, False),
    ]  # an unknown form: kept, not guessed
    materialization = next(
        m
        for m in result.asset_materializations_for_node("provider_reported_cost")
        if m.asset_key == dg.AssetKey("provider_reported_cost")
    )
    assert materialization.metadata["unparsed_line_items"].value == 1
    assert materialization.metadata["unparsed"].value == "gpt-4o-2024-08-06, images"
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == REPORTED_COST_CHECK and not check.passed
    assert check.metadata["quarantined"].value == 1
