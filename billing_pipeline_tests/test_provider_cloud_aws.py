"""AWS CUR 2.0 exactly as Data Exports lays it out: a billing period re-delivered in two parts with a
manifest, Savings Plan and Reserved Instance usage at their effective cost, and every line that is
not GPU time accounted for with the rule that rejected it (RELIABILITY.md scenarios 18 and 19).

Fixture: billing_pipeline_tests/data/providers/aws_cur/ (see SOURCES.md there). The parts are kept
as plain CSV for review and gzipped into the landing zone by support/aws_cur.py, as AWS delivers
them (.csv.gz).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from billing_pipeline.sources import SOURCES
from billing_pipeline_tests.support.aws_cur import FIRST, FIXTURE, SECOND, land

OCT, NOV = date(2026, 10, 1), date(2026, 11, 1)
MANIFEST = "cloud/aws_cur/cur2-gpu/metadata/BILLING_PERIOD=2026-10/cur2-gpu-Manifest.json"
ACME = 'tags:{"customer":"acme","team":"training"}'


def reasons(read) -> dict[str, str]:
    return dict(read.quarantine.select("origin", "reason").rows())


def test_redelivered_period_in_two_parts_bills_gpu_time_once(tmp_path):
    read = SOURCES["aws_cur"](land(tmp_path), OCT, NOV)
    gpu = read.events.filter(pl.col("meter") == "gpu_seconds")
    by_type = {json.loads(d)["gpu_type"]: q for d, q in gpu.select("dimensions", "quantity").rows()}
    # only the re-delivery bills, whatever its new identity_line_item_id values say:
    # p5.48xlarge   1.5 h x 3600 x 8 H100 = 43,200 GPU-s (the first delivery said 1.0 h)
    # g5.12xlarge   2.0 h x 3600 x 4 A10G = 28,800 GPU-s (Savings Plan covered)
    # p4d.24xlarge  1.0 h x 3600 x 8 A100 = 28,800 GPU-s (Reserved Instance)
    assert by_type == {"H100": 43_200, "A10G": 28_800, "A100": 28_800}
    assert (
        gpu["quantity"].sum() == 100_800
    )  # 43,200 + 28,800 + 28,800, not + the 3 superseded lines
    assert set(gpu["origin"].str.extract(r"^(.*)/cur2-gpu-0000\d\.csv\.gz:\d+$", 1)) == {SECOND}
    assert set(gpu["account_key"]) == {ACME}
    superseded = read.quarantine.filter(pl.col("reason") == "superseded_delivery")
    assert superseded.height == 3 and set(superseded["origin"].str.extract(r"^(.*)/[^/]+$", 1)) == {
        FIRST
    }
    assert set(superseded["kind"]) == {"not_billable"} and set(superseded["account_key"]) == {ACME}


def test_savings_plan_and_reserved_usage_cost_the_effective_cost(tmp_path):
    read = SOURCES["aws_cur"](land(tmp_path), OCT, NOV)
    cost = {
        json.loads(d)["instance_type"]: c
        for d, c in read.events.select("dimensions", "reported_cost").rows()
    }
    assert cost == {
        "p5.48xlarge": Decimal("147.48"),  # on demand: line_item_unblended_cost 1.5 h x 98.32
        "g5.12xlarge": Decimal(
            "7.0"
        ),  # savings_plan_savings_plan_effective_cost 2 h x 3.50, not the 11.344 unblended
        "p4d.24xlarge": Decimal("19.22"),  # reservation_effective_cost, not the 0.0 unblended
    }


def test_every_other_line_names_the_rule_that_rejected_it(tmp_path):
    read = SOURCES["aws_cur"](land(tmp_path), OCT, NOV)
    part1, part2 = f"{SECOND}/cur2-gpu-00001.csv.gz", f"{SECOND}/cur2-gpu-00002.csv.gz"
    got = {o: r for o, r in reasons(read).items() if not o.startswith(FIRST)}
    assert got == {
        f"{part1}:3": "savings_plan_negation",  # SavingsPlanNegation of the g5 line
        f"{part1}:5": "not_instance_time",  # data transfer out of the p5 instance
        f"{part1}:6": "tax_line",
        f"{part2}:1": "not_gpu_service",  # S3 storage
        f"{part2}:2": "not_gpu_sku",  # m5.large
        f"{part2}:3": "unknown_gpu_sku",  # p6-b200.48xlarge: GPU-looking, not in the table
        f"{part2}:4": "not_usage_charge",  # Credit
        f"{part2}:5": "not_usage_charge",  # SavingsPlanRecurringFee
    }
    q = read.quarantine
    fields = dict(q.select("reason", "field").unique().rows())
    assert (
        fields["savings_plan_negation"]
        == fields["tax_line"]
        == fields["not_usage_charge"]
        == "line_item_line_item_type"
    )
    assert (
        fields["not_gpu_service"] == "line_item_product_code"
        and fields["not_gpu_sku"] == "product_instance_type"
    )
    unknown = q.filter(reason="unknown_gpu_sku").row(0, named=True)
    assert (
        unknown["kind"] == "money_at_risk"
        and unknown["account_key"] == ACME
        and "p6-b200.48xlarge" in unknown["message"]
    )
    assert set(q.filter(reason="not_gpu_sku")["kind"]) == {"not_billable"}
    # conservation: 6 + 5 lines in the re-delivery, 3 in the superseded delivery = 14 read
    assert read.records_read == 14 == read.events["origin"].n_unique() + q.height


def test_without_a_manifest_the_newest_delivery_wins(tmp_path):
    landing = land(tmp_path, manifest=False)
    read = SOURCES["aws_cur"](landing, OCT, NOV)
    assert read.events.filter(pl.col("meter") == "gpu_seconds")["quantity"].sum() == 100_800
    # and when the earlier folder is touched last, mtime alone decides: it becomes the truth
    for part in (landing / FIRST).iterdir():
        os.utime(part, (1_800_000_000,) * 2)
    read = SOURCES["aws_cur"](landing, OCT, NOV)
    # 1.0 h x 3600 x 8 (p5) + 2 h x 3600 x 4 (g5) + 1 h x 3600 x 8 (p4d) = 28,800 + 28,800 + 28,800
    assert read.events["quantity"].sum() == 86_400
    assert (
        read.quarantine.filter(reason="superseded_delivery").height == 11
    )  # both parts of the other delivery


def test_a_part_the_manifest_names_but_that_never_arrived_is_money_at_risk(tmp_path):
    landing = land(tmp_path)
    (landing / SECOND / "cur2-gpu-00002.csv.gz").unlink()
    read = SOURCES["aws_cur"](landing, OCT, NOV)
    missing = read.quarantine.filter(reason="missing_manifest_file").row(0, named=True)
    assert (
        missing["origin"] == MANIFEST
        and missing["kind"] == "money_at_risk"
        and "cur2-gpu-00002.csv.gz" in missing["message"]
    )
    assert (
        read.events.filter(pl.col("meter") == "gpu_seconds")["quantity"].sum() == 100_800
    )  # part 1 still read


def test_truncated_gzip_is_an_unreadable_file_never_a_partial_read(tmp_path):
    landing = land(tmp_path)
    part = landing / SECOND / "cur2-gpu-00001.csv.gz"
    part.write_bytes(part.read_bytes()[:-40])
    read = SOURCES["aws_cur"](landing, OCT, NOV)
    bad = read.quarantine.filter(pl.col("origin") == f"{SECOND}/cur2-gpu-00001.csv.gz").row(
        0, named=True
    )
    assert bad["reason"] == "unreadable_file" and bad["kind"] == "money_at_risk"
    assert not read.events["origin"].str.starts_with(f"{SECOND}/cur2-gpu-00001").any()


def test_bom_and_crlf_csv_read_like_the_clean_file(tmp_path):
    flat = tmp_path / "flat/cloud/aws_cur"
    flat.mkdir(parents=True)
    text = (
        FIXTURE
        / "cur2-gpu/data/BILLING_PERIOD=2026-10/8f3c2a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f/cur2-gpu-00001.csv"
    ).read_text()
    (flat / "cur_2026-10.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    read = SOURCES["aws_cur"](tmp_path / "flat", OCT, NOV)
    assert read.events.filter(pl.col("meter") == "gpu_seconds")["quantity"].sum() == 100_800
    assert "unreadable_file" not in set(read.quarantine["reason"])


def test_flat_files_with_a_delivery_timestamp_replace_each_other(tmp_path):
    flat = tmp_path / "cloud/aws_cur"
    flat.mkdir(parents=True)
    part = FIXTURE / "cur2-gpu/data/BILLING_PERIOD=2026-10"
    shutil.copy(
        part / "2c9d4e1f-6a7b-4c8d-9e0f-1a2b3c4d5e6f/cur2-gpu-00001.csv",
        flat / "cur_2026-10_20261103T030000Z-00001.csv",
    )
    shutil.copy(
        part / "8f3c2a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f/cur2-gpu-00001.csv",
        flat / "cur_2026-10_20261104T030000Z-00001.csv",
    )
    shutil.copy(
        part / "8f3c2a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f/cur2-gpu-00002.csv",
        flat / "cur_2026-10_20261104T030000Z-00002.csv",
    )
    os.utime(
        flat / "cur_2026-10_20261103T030000Z-00001.csv", (1_900_000_000,) * 2
    )  # the name's timestamp beats mtime
    read = SOURCES["aws_cur"](tmp_path, OCT, NOV)
    assert read.events.filter(pl.col("meter") == "gpu_seconds")["quantity"].sum() == 100_800
    assert read.quarantine.filter(reason="superseded_delivery").height == 3


@pytest.mark.parametrize("month", [date(2026, 9, 1), date(2026, 12, 1)])
def test_a_billing_period_outside_the_window_is_not_read(tmp_path, month):
    nxt = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    read = SOURCES["aws_cur"](land(tmp_path), month, nxt)
    assert read.records_read == 0


def test_overwrite_mode_a_stale_part_the_manifest_no_longer_names_is_superseded(tmp_path):
    # "overwrite" delivery: the parts sit directly in the period folder; yesterday's delivery had two
    # parts, today's has one, so yesterday's -00002 is still lying there. The manifest says which is current.
    landing = tmp_path / "landing"
    period = landing / "cloud/aws_cur/cur2-gpu/data/BILLING_PERIOD=2026-10"
    period.mkdir(parents=True)
    second = FIXTURE / "cur2-gpu/data/BILLING_PERIOD=2026-10/8f3c2a6e-5b1d-4c7a-9e2f-0a1b2c3d4e5f"
    (period / "cur2-gpu-00001.csv.gz").write_bytes(
        gzip.compress((second / "cur2-gpu-00001.csv").read_bytes())
    )
    (period / "cur2-gpu-00002.csv.gz").write_bytes(
        gzip.compress((second / "cur2-gpu-00002.csv").read_bytes())
    )
    meta = landing / "cloud/aws_cur/cur2-gpu/metadata/BILLING_PERIOD=2026-10"
    meta.mkdir(parents=True)
    (meta / "cur2-gpu-Manifest.json").write_text(
        json.dumps(
            {
                "executionId": "0d1e2f3a-4b5c-4d6e-8f7a-9b0c1d2e3f4a",
                "exportArn": "arn:aws:bcm-data-exports:us-east-1:111122223333:export/cur2-gpu",
                "columns": [],
                "additionalOutputFiles": [],
                "dataFiles": [
                    "s3://acme-billing-exports/cur/cur2-gpu/data/BILLING_PERIOD=2026-10/cur2-gpu-00001.csv.gz"
                ],
            }
        )
    )
    read = SOURCES["aws_cur"](landing, OCT, NOV)
    assert (
        read.events.filter(pl.col("meter") == "gpu_seconds")["quantity"].sum() == 100_800
    )  # all GPU lines are in part 1
    stale = read.quarantine.filter(pl.col("origin").str.contains("00002"))
    assert stale.height == 5 and set(stale["reason"]) == {
        "superseded_delivery"
    }  # not read as S3/m5/p6/credit/fee
