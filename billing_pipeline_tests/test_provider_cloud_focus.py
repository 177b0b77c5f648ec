"""FOCUS exports from Azure and GCP: their GPU VMs are recognised from the columns each cloud fills,
priced by GPU count from gpu_skus.py, and a re-delivered period replaces the earlier one (scenario 19).

Fixture: billing_pipeline_tests/data/providers/focus/landing/ (see SOURCES.md there):
- azure-focus/20261001-20261031/<runId>/part_0_0001.csv + manifest.json: two runs of a Cost
  Management FOCUS export; the later run (runInfo.submittedTime 2026-11-03) is the truth.
- gcp/focus-gcp_2026-10_<timestamp>.csv: two deliveries of a GCP FOCUS extract; no manifest, so
  the newer timestamp in the name wins.
"""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.sources import SOURCES, gpu_skus

FIXTURE = Path(__file__).parent / "data/providers/focus/landing"
OCT, NOV = date(2026, 10, 1), date(2026, 11, 1)
AZ = "cloud/focus/azure-focus/20261001-20261031"
AZ_OLD, AZ_NEW = (
    f"{AZ}/3b2f6c0e-1d4a-4e8b-9f7c-5a6d8e9f0a1b",
    f"{AZ}/7c9e1a2b-3d4f-4a5b-8c6d-7e8f9a0b1c2d",
)
GCP_OLD, GCP_NEW = (
    "cloud/focus/gcp/focus-gcp_2026-10_20261103T060000Z.csv",
    "cloud/focus/gcp/focus-gcp_2026-10_20261104T060000Z.csv",
)


def land(tmp_path: Path) -> Path:
    landing = tmp_path / "landing"
    shutil.copytree(FIXTURE, landing / "cloud/focus")
    return landing


def test_azure_and_gcp_gpu_vms_bill_once_per_period(tmp_path):
    read = SOURCES["focus"](land(tmp_path), OCT, NOV)
    got = {
        (p, json.loads(d)["gpu_type"], json.loads(d).get("instance_type")): q
        for p, d, q in read.events.select("provider", "dimensions", "quantity").rows()
    }
    assert got == {
        (
            "azure",
            "H100",
            "standard_nd96isr_h100_v5",
        ): 57_600,  # 2 h x 3600 x 8 H100 (the earlier run said 1 h)
        (
            "azure",
            "A100-80GB",
            "standard_nc24ads_a100_v4",
        ): 10_800,  # 3 h x 3600 x 1, size from the meter name
        (
            "gcp",
            "H100",
            None,
        ): 28_800,  # "Nvidia H100 80GB GPU" SKU: 8 GPU-hours x 3600 (the earlier extract said 4)
        ("gcp", "L4", None): 3_600,  # "Nvidia L4 GPU": 1 GPU-hour x 3600
    }
    assert set(read.events["account_key"]) == {'tags:{"customer":"acme"}'}
    superseded = read.quarantine.filter(reason="superseded_delivery")
    assert sorted(superseded["origin"]) == [f"{AZ_OLD}/part_0_0001.csv:1", f"{GCP_OLD}:1"]


def test_committed_rows_cost_the_effective_cost(tmp_path):
    read = SOURCES["focus"](land(tmp_path), OCT, NOV)
    cost = {
        json.loads(d)["gpu_type"] + ":" + p: c
        for p, d, c in read.events.select("provider", "dimensions", "reported_cost").rows()
    }
    assert cost["A100-80GB:azure"] == Decimal(
        "6.12"
    )  # reservation: BilledCost 0, EffectiveCost 6.12
    assert cost["H100:azure"] == Decimal("196.64")  # on demand: BilledCost, 2 h x 98.32


def test_each_rejected_row_names_its_rule_and_field(tmp_path):
    read = SOURCES["focus"](land(tmp_path), OCT, NOV)
    got = {
        o: (r, f)
        for o, r, f in read.quarantine.select("origin", "reason", "field").rows()
        if not o.startswith((AZ_OLD, GCP_OLD))
    }
    assert got == {
        f"{AZ_NEW}/part_0_0001.csv:3": (
            "not_instance_time",
            "ServiceName",
        ),  # bandwidth of the H100 VM
        f"{AZ_NEW}/part_0_0001.csv:4": ("not_gpu_sku", "x_SkuDetails"),  # Standard_D4s_v5
        f"{AZ_NEW}/part_0_0001.csv:5": (
            "unknown_gpu_sku",
            "x_SkuDetails",
        ),  # an ND GB200 v6 size not in the table
        f"{AZ_NEW}/part_0_0001.csv:6": (
            "not_usage_charge",
            "ChargeCategory",
        ),  # reservation Purchase
        f"{GCP_NEW}:2": ("not_instance_time", "ServiceName"),  # A3 Instance Core of the GPU VM
        f"{GCP_NEW}:3": ("not_instance_time", "ServiceName"),  # A3 Instance Ram of the GPU VM
        f"{GCP_NEW}:5": (
            "unknown_gpu_sku",
            "ChargeDescription",
        ),  # "Nvidia B300 GPU": no table entry yet
        f"{GCP_NEW}:6": ("not_gpu_service", "ServiceName"),  # Cloud Storage
    }
    kinds = dict(read.quarantine.select("reason", "kind").unique().rows())
    assert (
        kinds["unknown_gpu_sku"] == "money_at_risk"
        and kinds["not_instance_time"] == kinds["superseded_delivery"] == "not_billable"
    )
    assert set(read.quarantine["account_key"]) == {'tags:{"customer":"acme"}'}
    # conservation: Azure 6 + 1 rows, GCP 6 + 1 rows = 14 read, 4 billed
    assert read.records_read == 14 == read.events["origin"].n_unique() + read.quarantine.height


def test_the_azure_run_the_newest_manifest_names_wins_whatever_the_file_times(tmp_path):
    landing = land(tmp_path)
    (
        landing / AZ_OLD / "part_0_0001.csv"
    ).touch()  # the older run's file written last: the manifest still decides
    read = SOURCES["focus"](landing, OCT, NOV)
    assert (
        read.events.filter(pl.col("provider") == "azure")["quantity"].sum() == 68_400
    )  # 57,600 + 10,800


@pytest.mark.parametrize(
    "size, gpu_type, gpus",
    [
        ("Standard_ND96isr_H100_v5", "H100", 8),
        ("Standard_NC24ads_A100_v4", "A100-80GB", 1),
        ("a3-highgpu-8g", "H100", 8),
        ("a2-highgpu-1g", "A100", 1),
        ("g2-standard-4", "L4", 1),
        ("p5.48xlarge", "H100", 8),
        ("g5.xlarge", "A10G", 1),
        ("BM.GPU.H100.8", "H100", 8),
    ],
)
def test_the_gpu_table_names_each_cloud_s_sizes(size, gpu_type, gpus):
    found = pl.select(gpu_skus.size_expr([pl.lit(f"usage of {size} in a region")])).item()
    assert gpu_skus.GPU_SIZES[found] == (gpu_type, gpus)


def test_gcp_machine_type_in_sku_details_bills_by_the_table(tmp_path):
    header = "ChargePeriodStart,ChargePeriodEnd,ChargeCategory,ChargeDescription,ConsumedQuantity,ConsumedUnit,BilledCost,ProviderName,ServiceName,ResourceId,SkuPriceDetails,Tags"
    rows = [
        "2026-10-05 00:00:00,2026-10-05 01:00:00,Usage,VM instance,1,Hours,1.2,Google Cloud,Compute Engine,vm-1,"
        '"{""MachineType"": ""g2-standard-4""}","{""customer"": ""acme""}"',
        "2026-10-05 00:00:00,2026-10-05 01:00:00,Usage,VM instance,1,Hours,0.4,Google Cloud,Compute Engine,vm-2,"
        '"{""MachineType"": ""n2-standard-8""}","{""customer"": ""acme""}"',
    ]
    (tmp_path / "cloud/focus").mkdir(parents=True)
    (tmp_path / "cloud/focus/focus_2026-10.csv.gz").write_bytes(
        gzip.compress(("\n".join([header, *rows]) + "\n").encode())
    )
    read = SOURCES["focus"](tmp_path, OCT, NOV)
    assert read.events["quantity"].to_list() == [3600]  # 1 h x 3600 x 1 L4
    assert read.quarantine.select("reason", "field").rows() == [
        ("not_gpu_sku", "SkuPriceDetails")
    ]  # n2-standard-8


def test_cloud_fixtures_rate_to_a_hand_computed_invoice(tmp_path):
    """CUR 2.0 and FOCUS fixtures together, through normalize and rating, on a tiny catalog."""
    from billing_pipeline.catalog import parse_catalog
    from billing_pipeline.rating.engine import rate_month
    from billing_pipeline.usage import normalize
    from billing_pipeline_tests.support import aws_cur

    landing = land(tmp_path)
    shutil.copytree(aws_cur.land(tmp_path / "cur") / "cloud/aws_cur", landing / "cloud/aws_cur")
    per_hour = {"H100": "4.00", "A10G": "1.50", "A100": "3.00", "A100-80GB": "3.50", "L4": "0.80"}
    catalog = parse_catalog(
        {
            "issuer": {"name": "Example AI GmbH"},
            "plans": {
                "gpu": {
                    "name": "GPU hours",
                    "charges": [
                        {
                            "id": f"gpu-{t.lower()}",
                            "name": f"{t} GPU hours",
                            "meter": "gpu_seconds",
                            "dimensions": {"gpu_type": t},
                            "unit_size": 3600,
                            "pricing": "per_unit",
                            "unit_price": price,
                        }
                        for t, price in per_hour.items()
                    ],
                }
            },
            "customers": {
                "acme": {
                    "name": "Acme AI Ltd",
                    "subscriptions": [{"plan": "gpu", "from": date(2026, 1, 1), "to": None}],
                    "tags": {"customer": "acme"},
                }
            },
        }
    )
    reads = [SOURCES[s](landing, OCT, NOV) for s in ("aws_cur", "focus")]
    usage, _ = normalize([r.events for r in reads], [r.quarantine for r in reads], catalog)
    lines = rate_month(usage, catalog, "2026-10").lines.filter(pl.col("customer_id") == "acme")
    # H100:      CUR p5 43,200 s + Azure ND 57,600 s + GCP 28,800 s = 129,600 s = 36 h x 4.00 = 144.00
    # A10G:      CUR g5 (Savings Plan) 28,800 s = 8 h x 1.50 = 12.00
    # A100:      CUR p4d (Reserved Instance) 28,800 s = 8 h x 3.00 = 24.00
    # A100-80GB: Azure NC24ads 10,800 s = 3 h x 3.50 = 10.50
    # L4:        GCP 3,600 s = 1 h x 0.80 = 0.80
    # subtotal 144.00 + 12.00 + 24.00 + 10.50 + 0.80 = 191.30 (the superseded deliveries would add 8 h of H100 etc.)
    assert sum(Decimal(a) for a in lines["amount"]) == Decimal("191.30")
    by_charge: dict[str, Decimal] = {}
    for charge, amount in zip(
        lines["charge_id"], lines["amount"], strict=True
    ):  # H100 shows one line per provider/size
        by_charge[charge] = by_charge.get(charge, Decimal(0)) + Decimal(amount)
    assert by_charge == {
        "gpu-h100": Decimal("144.00"),
        "gpu-a10g": Decimal("12.00"),
        "gpu-a100": Decimal("24.00"),
        "gpu-a100-80gb": Decimal("10.50"),
        "gpu-l4": Decimal("0.80"),
    }
