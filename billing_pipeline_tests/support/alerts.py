"""Alert test data: a pay-as-you-go catalog where acme has a $10.00 monthly limit and a webhook,
and daily usage at 100,000 output tokens = $1.00."""

from __future__ import annotations

import datetime as dt

import polars as pl

from billing_pipeline.catalog import parse_catalog
from billing_pipeline_tests.support.usage import usage_frame, usage_row


def catalog(url: str = "http://127.0.0.1:9/hook", **acme):
    """acme on payg with a $10.00 monthly limit and a webhook to ``url`` (``acme`` overrides its
    fields); initech on payg without either."""
    return parse_catalog(catalog_document(url, **acme))


def catalog_document(url: str = "http://127.0.0.1:9/hook", **acme) -> dict:
    """``catalog``'s document, as a catalog.yaml would hold it."""
    return {
        "issuer": {"name": "Example AI GmbH"},
        "plans": {
            "payg": {
                "name": "Pay as you go",
                "charges": [
                    {
                        "id": "out",
                        "meter": "output_tokens",
                        "unit_size": 1000,
                        "unit_price": "0.010",
                    }
                ],
            }
        },
        "customers": {
            "acme": {
                "name": "Acme",
                "subscriptions": [{"plan": "payg", "from": "2026-01-01"}],
                "keys": ["gateway:acme"],
                "monthly_limit": "10.00",
                "webhook": {
                    "url": url,
                    "secret_env": "BILLING_WEBHOOK_SECRET_ACME",
                    "allow_http": True,
                },
                **acme,
            },
            "initech": {
                "name": "Initech",
                "subscriptions": [{"plan": "payg", "from": "2026-01-01"}],
                "keys": ["gateway:initech"],
            },
        },
    }


def usage(per_day: dict[dt.date, int], customer: str = "acme") -> pl.DataFrame:
    """Output tokens per day: 100,000 tokens = $1.00 on the payg plan above."""
    return usage_frame(
        usage_row(
            event_id=f"{customer}{d}", customer_id=customer, quantity=q, day=d, origin=f"t:{d}"
        )
        for d, q in per_day.items()
    )


def october(first: int, last: int, tokens: int = 100_000) -> dict[dt.date, int]:
    """``tokens`` output tokens on each day of October from ``first`` to ``last``."""
    return {dt.date(2026, 10, d): tokens for d in range(first, last + 1)}


def steady() -> dict[dt.date, int]:
    """$1 a day from mid-September to the end of October: no spikes, only the limit."""
    return {dt.date(2026, 9, d): 100_000 for d in range(16, 31)} | october(1, 31)


def hourly(per_hour: dict[dt.datetime, int], customer: str = "acme") -> pl.DataFrame:
    """Output tokens per hour, each in one request that started on the hour: 100,000 tokens =
    $1.00 on the payg plan above."""
    return usage_frame(
        usage_row(
            event_id=f"{customer}{h.isoformat()}",
            customer_id=customer,
            quantity=q,
            day=h.date(),
            start=h,
            end=h,
            origin=f"t:{h.isoformat()}",
        )
        for h, q in per_hour.items()
    )


def every_hour(first: dt.datetime, hours: int, tokens: int) -> dict[dt.datetime, int]:
    """``tokens`` output tokens in each of ``hours`` hours from ``first`` on."""
    return {first + dt.timedelta(hours=i): tokens for i in range(hours)}
