"""A cloud export row whose usage amount or cost the readers cannot carry exactly is money at risk
on its own: it is quarantined with its file, row, field and reason, and every other row of the
export still bills. Never a crash of the whole read (a GPU-seconds product past 64 bits), never a
row billed as zero (a product too long for the default decimal context), never a cost that makes
later sums overflow.

The rows are the fixtures' own (data/providers/aws_cur/ and focus/, SOURCES.md there) with one
field changed. GPU-seconds = hours x 3600 x GPUs per instance; the ceiling is
files.MAX_RECORD_QUANTITY (10^15) per record, cloud_amounts.MAX_RECORD_COST (10^15) for a cost.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.sources import SOURCES
from billing_pipeline_tests.support.aws_cur import SECOND
from billing_pipeline_tests.support.aws_cur import land as land_cur

OCT, NOV = date(2026, 10, 1), date(2026, 11, 1)
CUR_PART = f"{SECOND}/cur2-gpu-00001.csv.gz"  # the current delivery's first part
CUR_ACME = 'tags:{"customer":"acme","team":"training"}'
FOCUS_FIXTURE = Path(__file__).parent / "data/providers/focus/landing"
AZURE_PART = (
    "cloud/focus/azure-focus/20261001-20261031/7c9e1a2b-3d4f-4a5b-8c6d-7e8f9a0b1c2d/part_0_0001.csv"
)
FOCUS_ACME = 'tags:{"customer":"acme"}'

# (amount as the export writes it, reason): each on a line that would otherwise bill
BAD_AMOUNTS = [
    ("1e14", "implausible_quantity"),  # x 3600 x 8 = 2.88e18 GPU-s: fits 64 bits, above 10^15
    ("1e18", "implausible_quantity"),  # 2.88e22: past 64 bits
    ("1e19", "implausible_quantity"),
    ("1e28", "implausible_quantity"),  # more digits than the default decimal context holds
    ("9.9e307", "implausible_quantity"),  # a finite double
    ("1e309", "bad_number"),  # past a double: not a finite number, as every reader says
    ("NaN", "bad_number"),
    ("Infinity", "bad_number"),
    ("-5", "negative_quantity"),
]


def rewrite_row(path: Path, row: int, field: str, value: str) -> None:
    """Set ``field`` of data row ``row`` (1 = first after the header) of a CSV, gzip or plain."""
    data = path.read_bytes()
    packed = path.name.endswith(".gz")
    rows = list(csv.reader(io.StringIO((gzip.decompress(data) if packed else data).decode())))
    rows[row][rows[0].index(field)] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    text = out.getvalue().encode()
    path.write_bytes(gzip.compress(text, mtime=0) if packed else text)


def cur_with(tmp_path: Path, row: int, field: str, value: str):
    landing = land_cur(tmp_path)
    rewrite_row(landing / CUR_PART, row, field, value)
    return SOURCES["aws_cur"](landing, OCT, NOV)


def focus_with(tmp_path: Path, row: int, field: str, value: str):
    landing = tmp_path / "landing"
    shutil.copytree(FOCUS_FIXTURE, landing / "cloud/focus")
    rewrite_row(landing / AZURE_PART, row, field, value)
    return SOURCES["focus"](landing, OCT, NOV)


def gpu_seconds(read) -> dict[str, int]:
    rows = read.events.select("dimensions", "quantity").rows()
    return {json.loads(d)["gpu_type"]: q for d, q in rows}


def held(read, origin: str) -> dict:
    [row] = read.quarantine.filter(pl.col("origin") == origin).to_dicts()
    return row


def assert_nothing_read_twice_or_lost(read) -> None:
    assert read.records_read == read.events["origin"].n_unique() + read.quarantine.height


# ---------------------------------------------------------------- AWS CUR 2.0


@pytest.mark.parametrize(("amount", "reason"), BAD_AMOUNTS)
def test_cur_gpu_hours_that_no_record_can_carry_hold_that_line_and_bill_the_rest(
    tmp_path, amount, reason
):
    # row 1: USW2-BoxUsage:p5.48xlarge, 8 H100 per instance, 1.5 Hrs in the fixture
    read = cur_with(tmp_path, 1, "line_item_usage_amount", amount)
    row = held(read, f"{CUR_PART}:1")
    assert (row["reason"], row["field"], row["kind"]) == (
        reason,
        "line_item_usage_amount",
        "money_at_risk",
    )
    assert amount in row["message"] and row["account_key"] == CUR_ACME
    # the other GPU lines of the delivery, untouched:
    # g5.12xlarge  2.0 h x 3600 x 4 A10G = 28,800 (Savings Plan covered)
    # p4d.24xlarge 1.0 h x 3600 x 8 A100 = 28,800 (Reserved Instance)
    assert gpu_seconds(read) == {"A10G": 28_800, "A100": 28_800}
    assert_nothing_read_twice_or_lost(read)


def test_cur_ceiling_is_exact_decimal_not_float(tmp_path):
    # 34722222222.222239 h x 28,800 = 1,000,000,000,000,000.4832 -> 10^15 GPU-s: bills
    read = cur_with(tmp_path, 1, "line_item_usage_amount", "34722222222.222239")
    assert gpu_seconds(read)["H100"] == 10**15
    # 34722222222.2222396 h x 28,800 = 1,000,000,000,000,000.50048 -> 10^15 + 1: held (a double
    # computes ...000.4 and would let it through)
    read = cur_with(tmp_path / "over", 1, "line_item_usage_amount", "34722222222.2222396")
    assert held(read, f"{CUR_PART}:1")["reason"] == "implausible_quantity"
    assert gpu_seconds(read) == {"A10G": 28_800, "A100": 28_800}


@pytest.mark.parametrize(
    ("row", "field", "cost", "reason"),
    [
        # 1e30 does not fit Decimal(38, 12); 1e25 fits, but ten of them overflow a sum
        (1, "line_item_unblended_cost", "1e30", "implausible_cost"),
        (1, "line_item_unblended_cost", "1e25", "implausible_cost"),
        (1, "line_item_unblended_cost", "-1e30", "implausible_cost"),
        (2, "savings_plan_savings_plan_effective_cost", "1e30", "implausible_cost"),
        (1, "line_item_unblended_cost", "NaN", "bad_number"),
        (1, "line_item_unblended_cost", "Infinity", "bad_number"),
    ],
)
def test_cur_cost_the_cost_column_cannot_carry_holds_that_line(tmp_path, row, field, cost, reason):
    read = cur_with(tmp_path, row, field, cost)
    got = held(read, f"{CUR_PART}:{row}")
    assert (got["reason"], got["field"], got["kind"]) == (reason, field, "money_at_risk")
    assert cost in got["message"]
    # 1.5 h x 3600 x 8 H100, 2 h x 3600 x 4 A10G, 1 h x 3600 x 8 A100; less the held line
    billed = {"H100": 43_200, "A10G": 28_800, "A100": 28_800}
    del billed["H100" if row == 1 else "A10G"]
    assert gpu_seconds(read) == billed
    costs = {
        json.loads(d)["gpu_type"]: c
        for d, c in read.events.select("dimensions", "reported_cost").rows()
    }
    expected = {"H100": Decimal("147.48"), "A10G": Decimal("7.0"), "A100": Decimal("19.22")}
    assert costs == {k: expected[k] for k in billed}
    assert_nothing_read_twice_or_lost(read)


# ---------------------------------------------------------------- FOCUS (Azure Cost Management)


@pytest.mark.parametrize(("amount", "reason"), BAD_AMOUNTS)
def test_focus_consumed_hours_that_no_record_can_carry_hold_that_row_and_bill_the_rest(
    tmp_path, amount, reason
):
    # row 1: Standard_ND96isr_H100_v5, 8 H100 per VM, 2 Hours in the fixture
    read = focus_with(tmp_path, 1, "ConsumedQuantity", amount)
    row = held(read, f"{AZURE_PART}:1")
    assert (row["reason"], row["field"], row["kind"]) == (
        reason,
        "ConsumedQuantity",
        "money_at_risk",
    )
    assert amount in row["message"] and row["account_key"] == FOCUS_ACME
    # the rest of the landing zone, untouched:
    # Azure NC24ads A100 v4  3 h x 3600 x 1 = 10,800
    # GCP "Nvidia H100 80GB GPU" 8 GPU-hours x 3600 = 28,800; "Nvidia L4 GPU" 1 x 3600 = 3,600
    got = {
        (p, json.loads(d)["gpu_type"]): q
        for p, d, q in read.events.select("provider", "dimensions", "quantity").rows()
    }
    assert got == {("azure", "A100-80GB"): 10_800, ("gcp", "H100"): 28_800, ("gcp", "L4"): 3_600}
    assert_nothing_read_twice_or_lost(read)


def test_focus_ceiling_is_exact_decimal_not_float(tmp_path):
    # the same hours on an 8-GPU Azure VM: 10^15 GPU-s bills, 10^15 + 1 is held
    read = focus_with(tmp_path, 1, "ConsumedQuantity", "34722222222.222239")
    assert read.events.filter(pl.col("provider") == "azure")["quantity"].sort().to_list() == [
        10_800,
        10**15,
    ]
    read = focus_with(tmp_path / "over", 1, "ConsumedQuantity", "34722222222.2222396")
    assert held(read, f"{AZURE_PART}:1")["reason"] == "implausible_quantity"


@pytest.mark.parametrize(
    ("row", "field", "cost", "reason"),
    [
        (1, "BilledCost", "1e30", "implausible_cost"),
        (1, "BilledCost", "1e25", "implausible_cost"),
        (
            2,
            "EffectiveCost",
            "1e30",
            "implausible_cost",
        ),  # committed row: EffectiveCost is its cost
        (1, "BilledCost", "NaN", "bad_number"),
        (1, "BilledCost", "-Infinity", "bad_number"),
    ],
)
def test_focus_cost_the_cost_column_cannot_carry_holds_that_row(tmp_path, row, field, cost, reason):
    read = focus_with(tmp_path, row, field, cost)
    got = held(read, f"{AZURE_PART}:{row}")
    assert (got["reason"], got["field"], got["kind"]) == (reason, field, "money_at_risk")
    assert cost in got["message"]
    azure = read.events.filter(pl.col("provider") == "azure")
    # the other Azure GPU row still bills, at its own cost: H100 2 h x 3600 x 8 = 57,600 at
    # BilledCost 196.64, or A100 3 h x 3600 x 1 = 10,800 at EffectiveCost 6.12
    expected = [(57_600, Decimal("196.64"))] if row == 2 else [(10_800, Decimal("6.12"))]
    assert azure.select("quantity", "reported_cost").rows() == expected
    assert_nothing_read_twice_or_lost(read)


def test_focus_unrounded_azure_cost_is_kept_to_twelve_places_and_bills(tmp_path):
    """Azure's cost files are not rounded: a cost with more decimals than the column's 12 changes
    by less than 10^-12 of a currency unit, so the row bills (holding every such row would hold
    every Azure month)."""
    read = focus_with(tmp_path, 1, "BilledCost", "196.6400000000001234")
    h100 = read.events.filter(pl.col("quantity") == 57_600)
    assert h100["reported_cost"].to_list() == [Decimal("196.640000000000")]
