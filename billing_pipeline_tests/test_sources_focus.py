"""FOCUS exports: only GPU instance time becomes gpu_seconds; every other row is reported."""

import json
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

from billing_pipeline.sources import SOURCES

SAMPLE = (
    Path(__file__).parent / "data/external/focus_1.0_sample_1000.csv"
)  # FinOps Foundation, CC BY 4.0
HEADER = "ChargePeriodStart,ChargePeriodEnd,ChargeCategory,ChargeDescription,ConsumedQuantity,ConsumedUnit,BilledCost,ProviderName,ServiceName,RegionId,ResourceId,SkuPriceId,Tags"
TAGS = '"{""customer"": ""acme""}"'


def write(landing, name, rows):
    folder = landing / "cloud/focus"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join([HEADER, *rows]) + "\n")
    return folder / name


def gpu(
    start="2026-10-05T10:00:00Z",
    end="2026-10-05T11:00:00Z",
    cat="Usage",
    desc="On Demand p5.48xlarge Instance Hour",
    qty="1.5",
    unit="Hours",
    res="i-1",
):
    return f"{start},{end},{cat},{desc},{qty},{unit},147.5,AWS,Amazon Elastic Compute Cloud,us-east-1,{res},SKU.1,{TAGS}"


def test_real_sample_g5_rows_become_gpu_seconds(tmp_path):
    (tmp_path / "cloud/focus").mkdir(parents=True)
    shutil.copy(SAMPLE, tmp_path / "cloud/focus" / SAMPLE.name)
    r = SOURCES["focus"](tmp_path, date(2024, 9, 1), date(2024, 10, 1))
    ev = r.events
    assert ev.height == 8 and set(ev["meter"]) == {"gpu_seconds"}
    assert {json.loads(d)["gpu_type"] for d in ev["dimensions"]} == {"A10G"}
    assert {json.loads(d)["instance_type"] for d in ev["dimensions"]} == {"g5.4xlarge"}
    # ConsumedQuantity is 1 hour on five rows and 0.296111 / 0.683889 / 0.303056 h on three.
    assert sorted(ev["quantity"]) == [1066, 1091, 2462, 3600, 3600, 3600, 3600, 3600]
    assert set(ev["provider"]) == {"aws"} and ev["account_key"][0].startswith(
        'tags:{"application":'
    )
    assert Decimal("1.624") in set(ev["reported_cost"])
    assert r.records_read == 1000 == ev.height + r.quarantine.height
    # each row says which rule rejected it: 966 other services, 21 VM sizes without a GPU (m5.large,
    # Azure D11 v2), 3 non-usage charges, and 2 g3.4xlarge rows: a GPU size not in the table is money at risk
    assert dict(r.quarantine.group_by("reason").len().rows()) == {
        "not_gpu_service": 966,
        "not_gpu_sku": 21,
        "not_usage_charge": 3,
        "unknown_gpu_sku": 2,
    }
    assert set(r.quarantine.filter(reason="unknown_gpu_sku")["kind"]) == {"money_at_risk"}
    assert set(r.quarantine.filter(reason="not_gpu_sku")["kind"]) == {"not_billable"}


def test_gpu_seconds_exact_and_non_usage_rows_reported(tmp_path):
    rows = [
        gpu(),
        gpu(
            res="i-2",
            desc="g6e.12xlarge Linux",
            qty="0.0001388",
            start="2026-10-05 12:00:00",
            end="2026-10-05 13:00:00",
        ),
        gpu(res="i-3", cat="Purchase"),
        gpu(res="i-4", desc="$0.40 per million SQS requests", unit="Requests"),
        gpu(res="i-5", qty="abc"),
        gpu(res="i-6", desc="p3.2xlarge"),
        gpu(res="i-7", qty="-1"),
        gpu(res="i-8", start="not a time"),
    ]
    write(tmp_path, "focus_2026-10.csv", rows)
    r = SOURCES["focus"](tmp_path, date(2026, 10, 1), date(2026, 11, 1))
    got = dict(zip(r.events["origin"], r.events["quantity"], strict=True))
    assert got == {
        "cloud/focus/focus_2026-10.csv:1": 43200,  # 1.5 h x 3600 x 8 H100
        "cloud/focus/focus_2026-10.csv:2": 2,
    }  # 0.0001388 h x 3600 x 4 = 1.99872 -> 2
    assert json.loads(r.events["dimensions"][0]) == {
        "gpu_type": "H100",
        "instance_type": "p5.48xlarge",
        "region": "us-east-1",
    }
    assert r.events["account_key"][0] == 'tags:{"customer":"acme"}'
    q = {
        o.rsplit(":", 1)[1]: (reason, field)
        for o, reason, field in r.quarantine.select("origin", "reason", "field").rows()
    }
    assert q == {
        "3": ("not_usage_charge", "ChargeCategory"),
        "4": ("not_gpu_service", "ServiceName"),
        "5": ("bad_number", "ConsumedQuantity"),
        "6": ("unknown_gpu_sku", "ChargeDescription"),
        "7": ("negative_quantity", "ConsumedQuantity"),
        "8": ("bad_timestamp", "ChargePeriodStart"),
    }
    assert r.quarantine.filter(reason="bad_timestamp")["day"][0] == date(2026, 10, 1)
    assert r.records_read == 8


def test_rows_go_to_their_charge_day_and_ids_survive_a_second_copy(tmp_path):
    p = write(
        tmp_path,
        "focus_2026-10.csv",
        [gpu(), gpu(res="i-9", start="2026-10-06T00:00:00Z", end="2026-10-06T01:00:00Z")],
    )
    shutil.copy(p, p.with_name("focus_2026-10_rerun.csv"))
    r = SOURCES["focus"](tmp_path, date(2026, 10, 5), date(2026, 10, 6))
    assert r.events.height == 2 and r.events["record_id"].n_unique() == 1
    assert r.quarantine.height == 0 and set(r.events["day"]) == {date(2026, 10, 5)}
