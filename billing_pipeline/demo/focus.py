"""FOCUS 1.0 rows for the demo, written like the real sample (``data/external/focus_1.0_sample_1000.csv``):
the sample's columns in its order, nulls as the bare string ``NULL``, numbers unquoted, text quoted,
timestamps ``YYYY-MM-DD HH:MM:SS`` (UTC, ChargePeriodEnd exclusive).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal

from billing_pipeline.demo.catalog import Profile

COLUMNS = [
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "Id",
    "ServiceName",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
]
NUMERIC = {
    "BilledCost",
    "ConsumedQuantity",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "ListCost",
    "PricingQuantity",
    "Id",
}

G5_PRICE = Decimal("1.624")  # On Demand Linux g5.4xlarge, us-east-1, per instance hour
G5_SKU = "4GQWNPC9K2PZAY97"


def _ts(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _cost(x: Decimal) -> str:
    return f"{x:.11f}"


def _instance_row(
    start: dt.datetime, hours: Decimal, instance: str, tags: dict | None, sub_account: str
) -> dict:
    cost = G5_PRICE * hours
    return {
        "AvailabilityZone": "us-east-1a",
        "BilledCost": _cost(cost),
        "ChargeCategory": "Usage",
        "ChargeClass": None,
        "ChargeDescription": "$1.624 per On Demand Linux g5.4xlarge Instance Hour",
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": _ts(start + dt.timedelta(hours=1)),
        "ChargePeriodStart": _ts(start),
        "ConsumedQuantity": f"{hours:.15f}",
        "ConsumedUnit": "Hours",
        "ContractedCost": _cost(cost),
        "ContractedUnitPrice": _cost(G5_PRICE),
        "EffectiveCost": _cost(cost),
        "ListCost": _cost(cost),
        "ListUnitPrice": "1.624",
        "PricingCategory": "Standard",
        "PricingQuantity": _cost(hours),
        "PricingUnit": "Hours",
        "RegionId": "us-east-1",
        "RegionName": "US East (N. Virginia)",
        "ResourceId": instance,
        "ResourceName": None,
        "ResourceType": "instance",
        "ServiceCategory": "Compute",
        "ServiceName": "Amazon Elastic Compute Cloud",
        "SkuId": G5_SKU,
        "SkuPriceId": f"{G5_SKU}.JRTCKXETXF.6YS6EN2CT7",
        "SubAccountId": sub_account,
        "SubAccountName": "Example AI Inference",
        "Tags": json.dumps(tags) if tags is not None else None,
        "_sort": (start, instance),
    }


def _storage_row(start: dt.datetime, gb_months: Decimal, tags: dict | None, bucket: str) -> dict:
    price = Decimal("0.023")
    cost = gb_months * price
    return {
        "AvailabilityZone": None,
        "BilledCost": _cost(cost),
        "ChargeCategory": "Usage",
        "ChargeClass": None,
        "ChargeDescription": "$0.023 per GB-Month of storage used",
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": _ts(start + dt.timedelta(hours=1)),
        "ChargePeriodStart": _ts(start),
        "ConsumedQuantity": f"{gb_months:.15f}",
        "ConsumedUnit": "GB-Mo",
        "ContractedCost": _cost(cost),
        "ContractedUnitPrice": _cost(price),
        "EffectiveCost": _cost(cost),
        "ListCost": _cost(cost),
        "ListUnitPrice": "0.023",
        "PricingCategory": "Standard",
        "PricingQuantity": _cost(gb_months),
        "PricingUnit": "GB-Mo",
        "RegionId": "us-east-1",
        "RegionName": "US East (N. Virginia)",
        "ResourceId": f"arn:aws:s3:::{bucket}",
        "ResourceName": None,
        "ResourceType": "bucket",
        "ServiceCategory": "Storage",
        "ServiceName": "Amazon Simple Storage Service",
        "SkuId": "WP9ANXZGBYYSGJEA",
        "SkuPriceId": "WP9ANXZGBYYSGJEA.JRTCKXETXF.PGHJ3S3EYE",
        "SubAccountId": "11353890204",
        "SubAccountName": "Example AI Inference",
        "Tags": json.dumps(tags) if tags is not None else None,
        "_sort": (start, bucket),
    }


def focus_rows(rng: random.Random, profiles: list[Profile], days: list[dt.date]) -> list[dict]:
    rows = []
    for p in profiles:
        if not p.gpu_instances:
            continue
        instances = [f"i-0{rng.getrandbits(64):016x}" for _ in range(p.gpu_instances)]
        tags = {"customer": p.id, "environment": "prod"}
        for d in days:
            if p.start is not None and d < p.start:
                continue
            if not p.gpu_every_day and d.weekday() >= 5:
                continue
            first = 0 if p.gpu_hours_per_day >= 24 else 8
            for n, inst in enumerate(instances):
                for h in range(first, first + p.gpu_hours_per_day):
                    start = dt.datetime(d.year, d.month, d.day, h)
                    last = h == first + p.gpu_hours_per_day - 1
                    # the second instance is stopped half-way through its last hour on Fridays
                    hours = (
                        Decimal("0.5") if (n == 1 and last and d.weekday() == 4) else Decimal("1")
                    )
                    rows.append(_instance_row(start, hours, inst, tags, "11353890204"))
    # GPU hours nobody is tagged for: reported as unattributed, never billed
    research = f"i-0{rng.getrandbits(64):016x}"
    for h in range(9, 15):
        start = dt.datetime(days[2].year, days[2].month, days[2].day, h)
        rows.append(
            _instance_row(start, Decimal("1"), research, {"environment": "research"}, "11353890204")
        )
    # non-GPU rows: reported, not billed
    rows.append(
        _storage_row(
            dt.datetime(days[0].year, days[0].month, days[0].day, 0),
            Decimal("120.5"),
            {"customer": "acme", "environment": "prod"},
            "acme-artifacts",
        )
    )
    rows.append(
        _storage_row(
            dt.datetime(days[0].year, days[0].month, days[0].day, 0),
            Decimal("42.25"),
            None,
            "example-ai-logs",
        )
    )
    rows.append(
        _storage_row(
            dt.datetime(days[14].year, days[14].month, days[14].day, 0),
            Decimal("8"),
            {"customer": "gringotts"},
            "gringotts-batch",
        )
    )
    rows.sort(key=lambda r: r["_sort"])
    first_id = rng.randrange(1_000_000, 2_000_000)
    for i, r in enumerate(rows):
        r["Id"] = str(first_id + i)
    return rows


def _cell(column: str, value: str | None) -> str:
    if value is None:
        return "NULL"
    if column in NUMERIC:
        return value
    return '"' + value.replace('"', '""') + '"'


def write_focus_csv(rows: list[dict], days: list[dt.date]) -> str:
    first = days[0]
    nxt = days[-1] + dt.timedelta(days=1)
    common = {
        "BillingAccountId": "1234567890123",
        "BillingAccountName": "Example AI GmbH",
        "BillingCurrency": "USD",
        "BillingPeriodStart": f"{first.isoformat()} 00:00:00",
        "BillingPeriodEnd": f"{nxt.isoformat()} 00:00:00",
        "InvoiceIssuerName": "Amazon Web Services, Inc.",
        "ProviderName": "AWS",
        "PublisherName": "Amazon Web Services, Inc.",
    }
    out = [",".join(f'"{c}"' for c in COLUMNS)]
    for r in rows:
        merged = {**common, **r}
        out.append(",".join(_cell(c, merged.get(c)) for c in COLUMNS))
    return "\n".join(out) + "\n"
