"""Rating test data: a catalog with a pay-as-you-go plan (acme) and a hybrid enterprise plan
(initech, from mid-October), and October usage rows written by hand."""

from __future__ import annotations

import datetime as dt

import polars as pl

from billing_pipeline_tests.support.usage import usage_frame, usage_row

CATALOG = {
    "issuer": {"name": "Example AI GmbH"},
    "plans": {
        "payg": {
            "name": "Pay as you go",
            "charges": [
                {
                    "id": "gpt4o-in",
                    "meter": "input_tokens",
                    "models": ["gpt-4o", "gpt-4o-20*"],
                    "unit_size": 1000,
                    "unit_price": "0.0025",
                },
                {
                    "id": "gpt4o-out",
                    "meter": "output_tokens",
                    "models": ["gpt-4o", "gpt-4o-20*"],
                    "unit_size": 1000,
                    "unit_price": "0.010",
                },
            ],
        },
        "enterprise": {
            "name": "Enterprise",
            "base_fee": "500.00",
            "minimum_commitment": "1000.00",
            "allowance": {"quantity": 1_000_000, "meters": ["input_tokens", "output_tokens"]},
            "charges": [
                {
                    "id": "tokens",
                    "meter": ["input_tokens", "output_tokens"],
                    "unit_size": 1000,
                    "pricing": "volume",
                    "tiers": [
                        {"up_to": 1_000_000, "unit_price": "0.05"},
                        {"up_to": None, "unit_price": "0.03"},
                    ],
                }
            ],
        },
    },
    "customers": {
        "acme": {
            "name": "Acme",
            "subscriptions": [{"plan": "payg", "from": "2026-01-01"}],
            "keys": ["openai:proj_a"],
        },
        "initech": {
            "name": "Initech",
            "subscriptions": [{"plan": "enterprise", "from": "2026-10-16"}],
            "keys": ["openai:proj_i"],
        },
    },
}


def usage(rows: list[tuple]) -> pl.DataFrame:
    """rows: (customer_id, model, meter, quantity, day-of-October, hour)."""
    return usage_frame(
        usage_row(
            event_id=f"e{i}",
            record_id=f"r{i}",
            source="test",
            account_key=None,
            customer_id=c,
            model=m,
            meter=meter,
            quantity=q,
            day=dt.date(2026, 10, d),
            start=dt.datetime(2026, 10, d, h, tzinfo=dt.UTC),
            origin=f"test:{i}",
        )
        for i, (c, m, meter, q, d, h) in enumerate(rows)
    )


def lines_of(rated, customer):
    """charge_id -> ``customer``'s line of the rated month."""
    return {
        r["charge_id"]: r for r in rated.lines.filter(pl.col("customer_id") == customer).to_dicts()
    }
