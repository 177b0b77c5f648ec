"""Prepaid credits test data: acme2 buys requests at $1.00 each (no base fee, so every dollar is
usage) and holds one $100.00 grant; taxed is the same at 19 % tax."""

from __future__ import annotations

import datetime as dt

import polars as pl

from billing_pipeline.catalog import parse_catalog
from billing_pipeline.documents.invoice import build_documents
from billing_pipeline.ledger.ledger import Ledger
from billing_pipeline.rating import rate_month
from billing_pipeline.schema import USAGE_SCHEMA

CORRECTIONS = parse_catalog(
    {
        "issuer": {"name": "I"},
        "plans": {
            "r": {
                "name": "Requests",
                "charges": [{"id": "requests", "meter": "requests", "unit_price": "1.00"}],
            }
        },
        "customers": {
            "acme2": {
                "name": "A",
                "subscriptions": [{"plan": "r", "from": "2026-01-01"}],
                "credits": [{"amount": "100.00", "from": "2026-01-01"}],
            },
            "taxed": {
                "name": "T",
                "tax": {"rate": "0.19"},
                "subscriptions": [{"plan": "r", "from": "2026-01-01"}],
                "credits": [{"amount": "100.00", "from": "2026-01-01"}],
            },
        },
    }
)


def requests(customer: str, month: str, count: int) -> pl.DataFrame:
    """One usage row: ``customer``'s ``count`` requests on the 5th of ``month``."""
    start = dt.datetime.fromisoformat(f"{month}-05T00:00:00+00:00")
    return pl.DataFrame(
        [
            {
                "event_id": f"{customer}{month}{count}",
                "record_id": f"{customer}{month}{count}",
                "source": "test",
                "provider": "openai",
                "account_key": None,
                "customer_id": customer,
                "model": "gpt-4o",
                "model_family": "gpt-4o",
                "meter": "requests",
                "dimensions": "{}",
                "quantity": count,
                "start": start,
                "end": start + dt.timedelta(hours=1),
                "origin": "test",
                "day": start.date(),
            }
        ],
        schema=USAGE_SCHEMA,
    )


def month_end_with(ledger: Ledger, month: str, customer: str, count: int) -> dict:
    """Month-end for one customer's ``count`` requests: draws after earlier months, saves drafts."""
    lines = rate_month(requests(customer, month, count), CORRECTIONS, month).lines
    (doc,) = build_documents(lines, CORRECTIONS, month, credits_used=ledger.credits_used(month))
    ledger.save_drafts(month, [doc])
    return doc
