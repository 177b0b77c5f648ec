"""AWS CUR 2.0: GPU instance hours become GPU-seconds, Bedrock's one-line-per-token-type becomes
one meter per token type, and every other line is accounted for in quarantine."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl

from billing_pipeline.sources import SOURCES

DAY, NEXT = date(2026, 10, 5), date(2026, 10, 6)


def line(
    i,
    usage_type,
    amount,
    product="AmazonEC2",
    line_type="Usage",
    unit="Hrs",
    instance=None,
    cost="1.00",
    tags='{"user_customer": "acme"}',
    start="2026-10-05T00:00:00Z",
):
    return {
        "identity_line_item_id": f"id{i}",
        "line_item_line_item_type": line_type,
        "line_item_product_code": product,
        "line_item_usage_type": usage_type,
        "line_item_usage_amount": amount,
        "pricing_unit": unit,
        "line_item_usage_start_date": start,
        "line_item_usage_end_date": "2026-10-05T01:00:00Z",
        "line_item_resource_id": f"i-{i}",
        "line_item_unblended_cost": cost,
        "line_item_currency_code": "USD",
        "product_instance_type": instance,
        "product_region_code": "us-west-2",
        "resource_tags": tags,
    }


LINES = [
    line(1, "USW2-BoxUsage:p5.48xlarge", "1.5", instance="p5.48xlarge", cost="147.48"),
    line(2, "USW2-BoxUsage:g5.12xlarge", "2", line_type="SavingsPlanCoveredUsage", cost="11.34"),
    line(
        3, "USW2-ml.g5.xlarge-Training", "0.25", product="AmazonSageMaker", instance="ml.g5.xlarge"
    ),
    line(
        4,
        "USE1-Claude3.5Sonnet-input-tokens",
        "1200",
        product="AmazonBedrock",
        unit="tokens",
        cost="0.0036",
    ),
    line(
        5,
        "USE1-Claude3.5Sonnet-output-tokens",
        "300",
        product="AmazonBedrock",
        unit="tokens",
        cost="0.0045",
    ),
    line(
        6,
        "USE1-Claude3.5Sonnet-cache-read-input-token-count",
        "5",
        product="AmazonBedrock",
        unit="1K tokens",
    ),
    line(
        7,
        "USE1-Claude3.5Sonnet-cache-write-input-token-count",
        "700",
        product="AmazonBedrock",
        unit="tokens",
    ),
    line(8, "USW2-BoxUsage:m5.large", "24", instance="m5.large"),
    line(9, "", "0", line_type="Tax", cost="12.00"),
    line(10, "USW2-BoxUsage:p4d.24xlarge", "-1", instance="p4d.24xlarge"),
    line(11, "USW2-BoxUsage:p4d.24xlarge", "1", instance="p4d.24xlarge", tags="not a map"),
]


def write_csv(landing, rows, name="cur_2026-10.csv"):
    folder = landing / "cloud/aws_cur"
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows, schema={k: pl.String for k in rows[0]}).write_csv(folder / name)


def by_meter(events):
    return {
        (m, json.loads(d).get("instance_type") or json.loads(d).get("usage_type")): q
        for m, d, q in events.select("meter", "dimensions", "quantity").rows()
    }


def test_gpu_hours_become_gpu_seconds_and_bedrock_keeps_every_token_type(tmp_path):
    write_csv(tmp_path, LINES)
    read = SOURCES["aws_cur"](tmp_path, DAY, NEXT)
    assert by_meter(read.events) == {
        ("gpu_seconds", "p5.48xlarge"): 1.5 * 3600 * 8,
        ("gpu_seconds", "g5.12xlarge"): 2 * 3600 * 4,
        ("gpu_seconds", "g5.xlarge"): 900,
        ("input_tokens", "USE1-Claude3.5Sonnet-input-tokens"): 1200,
        ("output_tokens", "USE1-Claude3.5Sonnet-output-tokens"): 300,
        (
            "cached_input_tokens",
            "USE1-Claude3.5Sonnet-cache-read-input-token-count",
        ): 5000,  # 1K-token unit
        ("cache_write_tokens", "USE1-Claude3.5Sonnet-cache-write-input-token-count"): 700,
    }
    bedrock = read.events.filter(pl.col("provider") == "aws_bedrock")
    assert set(bedrock["model"]) == {"Claude3.5Sonnet"}
    assert set(read.events["account_key"]) == {'tags:{"customer":"acme"}'}
    p5 = read.events.filter(pl.col("origin") == "cloud/aws_cur/cur_2026-10.csv:1").row(
        0, named=True
    )
    assert (
        p5["reported_cost"] == Decimal("147.48")
        and json.loads(p5["dimensions"])["gpu_type"] == "H100"
    )
    assert p5["start"] == datetime(2026, 10, 5, tzinfo=UTC)


def test_lines_that_are_not_billable_usage_are_quarantined_with_reasons(tmp_path):
    write_csv(tmp_path, LINES)
    read = SOURCES["aws_cur"](tmp_path, DAY, NEXT)
    assert dict(read.quarantine.select("origin", "reason").rows()) == {
        "cloud/aws_cur/cur_2026-10.csv:8": "not_gpu_sku",  # m5.large: compute without a GPU
        "cloud/aws_cur/cur_2026-10.csv:9": "tax_line",
        "cloud/aws_cur/cur_2026-10.csv:10": "negative_quantity",
        "cloud/aws_cur/cur_2026-10.csv:11": "missing_field",
    }
    assert (
        read.events["origin"].n_unique() + read.quarantine.height == len(LINES) == read.records_read
    )


def test_parquet_map_tags_and_tag_columns_attribute_the_same_way(tmp_path):
    rows = [line(1, "USW2-BoxUsage:p5.48xlarge", "1", instance="p5.48xlarge")]
    frame = (
        pl.DataFrame(rows, schema={k: pl.String for k in rows[0]})
        .drop("resource_tags")
        .with_columns(
            pl.lit("2026-10-05T00:00:00")
            .str.to_datetime()
            .dt.replace_time_zone("UTC")
            .alias("line_item_usage_start_date"),
            pl.Series(
                "resource_tags",
                [[{"key": "user_customer", "value": "acme"}, {"key": "user_team", "value": "ml"}]],
            ),
        )
    )
    (tmp_path / "cloud/aws_cur").mkdir(parents=True)
    frame.write_parquet(tmp_path / "cloud/aws_cur/cur_2026-10.parquet")
    write_csv(
        tmp_path,
        [
            {k: v for k, v in rows[0].items() if k != "resource_tags"}
            | {"resource_tags_user_customer": "acme", "resource_tags_user_team": "ml"}
        ],
        name="cur_cols_2026-10.csv",
    )
    read = SOURCES["aws_cur"](tmp_path, DAY, NEXT)
    assert read.quarantine.height == 0
    assert read.events["account_key"].to_list() == ['tags:{"customer":"acme","team":"ml"}'] * 2
    assert read.events["quantity"].to_list() == [28800, 28800]


def test_the_same_export_twice_yields_the_same_event_ids(tmp_path):
    write_csv(tmp_path, LINES)
    first = SOURCES["aws_cur"](tmp_path, DAY, NEXT).events
    second = SOURCES["aws_cur"](tmp_path, DAY, NEXT).events
    assert first.equals(second) and first["event_id"].is_unique().all()
