"""Limit alerts and hard caps of customers whose month rating holds (money at risk): never $0.

rate_month leaves a held customer without lines, so its month-to-date spend cannot be summed.
Each reason has its rule (README "Alerts", "Hard caps"): an overflow is beyond any limit; a
negative_quantity customer is judged on its usage without the negative records (at most what it
owes); an unpriced_cost one on its usage without the unpriced records (at least what it owes);
a customer no figure can be stated for is named, never blocked automatically.

The month (evaluated on 2026-10-07), $1.00 = 100,000 output tokens on payg:
  acme      $1.00 a day, 7 days = $7.00; limit $10, cap $6    -> 50 %; blocked at $7.00
  globex    2^63 + 4 output tokens (quantity_overflow)        -> 50..100 %; blocked
  hooli     +800,000 and -100,000 tokens (negative_quantity)  -> at most $8.00: 50, 75 %; cap $9
  massive   2^62 - 1 tokens at $5,000,000 each (amount_overflow) -> no limit; blocked
  umbrella  500,000 gpt-4o tokens at list $10/M + 20 % = $6.00, 40,000 mistral-large tokens
            with no list price (unpriced_cost)                -> at least $6.00: 50 %; cap $5
  wayne     a negative record and unpriced tokens             -> no figure: named, not blocked
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
import sqlalchemy as sa

from billing_pipeline.alerts.outbox import I64_MAX
from billing_pipeline.alerts.rules import held_text
from billing_pipeline.alerts.run import HARD_CAPS_FILE, evaluate_day
from billing_pipeline.catalog import parse_catalog
from billing_pipeline_tests.support.alerts import catalog_document, october, usage
from billing_pipeline_tests.support.usage import usage_frame, usage_row

pytestmark = pytest.mark.usefixtures("receivers_on_loopback")

DAY = dt.date(2026, 10, 7)
NOW = dt.datetime(2026, 10, 8, 1, 0, tzinfo=dt.UTC)


def held_catalog():
    doc = catalog_document(hard_cap="6.00")
    doc["plans"]["whale"] = {
        "name": "Whale",
        "charges": [
            {"id": "out", "meter": "output_tokens", "unit_size": 1, "unit_price": "5000000.00"}
        ],
    }
    doc["plans"]["resale"] = {
        "name": "Resale",
        "charges": [
            {
                "id": "tokens",
                "name": "Tokens at list price",
                "meter": "output_tokens",
                "pricing": "cost_plus",
                "markup": "0.20",
            }
        ],
    }
    doc["price_book"] = [
        {
            "provider": "openai",
            "models": ["gpt-4o", "gpt-4o-20*"],
            "meter": "output_tokens",
            "unit_size": 1_000_000,
            "unit_price": "10.00",
            "from": "2024-01-01",
        }
    ]
    for cid, plan, fields in (
        ("globex", "payg", {"monthly_limit": "10.00", "hard_cap": "6.00"}),
        ("hooli", "payg", {"monthly_limit": "10.00", "hard_cap": "9.00"}),
        ("massive", "whale", {"hard_cap": "1000000.00"}),
        ("umbrella", "resale", {"monthly_limit": "10.00", "hard_cap": "5.00"}),
        ("wayne", "resale", {"monthly_limit": "10.00", "hard_cap": "0.01"}),
    ):
        doc["customers"][cid] = {
            "name": cid.title(),
            "subscriptions": [{"plan": plan, "from": "2026-01-01"}],
            "keys": [f"gateway:{cid}"],
            **fields,
        }
    return parse_catalog(doc)


def held_usage() -> pl.DataFrame:
    def row(n, cid, quantity, day=1, model="gpt-4o", provider="openai"):
        return usage_row(
            event_id=f"{cid}{n}",
            customer_id=cid,
            quantity=quantity,
            day=dt.date(2026, 10, day),
            model=model,
            provider=provider,
        )

    return usage_frame(
        [
            row(1, "globex", 2**63 - 1),
            row(2, "globex", 5, day=2),
            row(1, "hooli", 800_000),
            row(2, "hooli", -100_000, day=2),
            row(1, "massive", 2**62 - 1),
            row(1, "umbrella", 500_000),
            row(2, "umbrella", 40_000, day=3, model="mistral-large-2411", provider="mistral"),
            row(1, "wayne", 500_000),
            row(2, "wayne", -1, day=2),
            row(3, "wayne", 40_000, day=3, model="mistral-large-2411", provider="mistral"),
        ]
    )


def test_held_customers_are_alerted_and_capped_by_the_rule_of_their_reason(ledger, tmp_path):
    cat = held_catalog()
    month = pl.concat([usage(october(1, 7)), held_usage()])
    result = evaluate_day(month, cat, DAY, ledger.engine, tmp_path, now=NOW)

    assert sorted(a.alert_id for a in result.alerts) == [
        "limit:acme:2026-10:50",
        "limit:globex:2026-10:100",  # beyond any limit: every threshold
        "limit:globex:2026-10:50",
        "limit:globex:2026-10:75",
        "limit:globex:2026-10:90",
        "limit:hooli:2026-10:50",  # at most $8.00 of $10.00
        "limit:hooli:2026-10:75",
        "limit:umbrella:2026-10:50",  # at least $6.00 of $10.00
    ]  # wayne: no figure, no threshold counts as reached; massive has no limit
    hooli = next(a.payload for a in result.alerts if a.alert_id == "limit:hooli:2026-10:75")
    assert (hooli["spend_to_date"], hooli["percent_used"], hooli["projected_month_end"]) == (
        None,
        None,
        None,
    )  # no amount is stated as its spend
    assert {k: hooli["held"][k] for k in ("reason", "basis", "spend_bound")} == {
        "reason": "negative_quantity",
        "basis": "without_negative_records",
        "spend_bound": "8.00",
    }
    assert "at most $8.00 (its negative records not counted), 80.0 % of it" in hooli["message"]

    listed = json.loads((tmp_path / HARD_CAPS_FILE).read_text())
    assert [
        (c["customer_id"], c["spend_to_date"], c.get("held", {}).get("basis"))
        for c in listed["customers"]
    ] == [
        ("acme", "7.00", None),
        ("globex", None, "beyond_any_limit"),
        ("massive", None, "beyond_any_limit"),
        ("umbrella", None, "without_unpriced_usage"),
    ]  # hooli: at most $8.00 < its $9.00 cap; wayne: not blocked automatically
    assert [
        (h["customer_id"], h["reason"], h["basis"], h["spend_bound"], h["capped"])
        for h in listed["held"]
    ] == [
        ("globex", "quantity_overflow", "beyond_any_limit", None, True),
        ("hooli", "negative_quantity", "without_negative_records", "8.00", False),
        ("massive", "amount_overflow", "beyond_any_limit", None, True),
        ("umbrella", "unpriced_cost", "without_unpriced_usage", "6.00", True),
        ("wayne", "negative_quantity", "no_bound", None, False),
    ]
    assert listed["held"] == list(result.held)
    with ledger.engine.connect() as conn:
        assert conn.execute(
            sa.text("SELECT customer_id, spend_micros FROM hard_caps ORDER BY customer_id")
        ).all() == [
            ("acme", 7_000_000),
            ("globex", I64_MAX),  # beyond any amount the column holds
            ("massive", I64_MAX),
            ("umbrella", 6_000_000),  # its figure: at least $6.00
        ]
    wayne = held_text(listed["held"][-1])
    assert wayne.startswith("wayne: rating held (negative_quantity), usage charges not counted")
    assert "no figure can be stated; hard cap 0.01 USD: not blocked" in wayne


def test_held_customers_change_nothing_for_the_others(ledger, tmp_path):
    cat = held_catalog()
    alone = evaluate_day(usage(october(1, 7)), cat, DAY, ledger.engine, tmp_path / "a", now=NOW)
    together = evaluate_day(
        pl.concat([usage(october(1, 7)), held_usage()]),
        cat,
        DAY,
        ledger.engine,
        tmp_path / "b",
        now=NOW,
    )
    assert alone.held == ()
    assert [a.payload for a in together.alerts if a.customer_id == "acme"] == [
        a.payload for a in alone.alerts
    ]
    assert [r for r in together.over_cap if r["customer_id"] == "acme"] == alone.over_cap
    assert together.spend.equals(alone.spend)  # held customers have no daily spend, not $0
