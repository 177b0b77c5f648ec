"""The cost calculator: the same engine as month-end on hypothetical usage."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import yaml
from click.testing import CliRunner

from billing_pipeline.cli import main
from billing_pipeline_tests.support.rating import CATALOG


@pytest.fixture
def catalog_file(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
    return path


def run(*args):
    return CliRunner().invoke(main, ["quote", *map(str, args)])


def test_quote_prints_each_line_with_its_explanation_and_the_total(catalog_file):
    result = run(
        "--catalog",
        catalog_file,
        "--plan",
        "payg",
        "--month",
        "2026-10",
        "--usage",
        "input_tokens:gpt-4o=1000000",
        "--usage",
        "output_tokens:gpt-4o-2024-08-06=200000",
    )
    assert result.exit_code == 0, result.output
    assert "1,000,000 input tokens of gpt-4o at $0.0025 per 1K = $2.50" in result.output
    assert result.output.splitlines()[-1].split() == ["total", "$4.50"]


def test_quote_json_has_the_invoice_structure_with_decimal_strings_only(catalog_file):
    result = run(
        "--catalog",
        catalog_file,
        "--plan",
        "enterprise",
        "--month",
        "2026-10",
        "--tax-rate",
        "0.19",
        "--usage",
        "input_tokens=900000",
        "--usage",
        "output_tokens=600000",
        "--json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output, parse_float=lambda s: pytest.fail(f"float {s} in quote JSON"))
    assert [(ln["charge_id"], ln["amount"]) for ln in doc["lines"]] == [
        ("base_fee", "500.00"),
        ("tokens", "25.00"),
        ("minimum_commitment", "975.00"),
    ]
    assert (doc["subtotal"], doc["tax"], doc["total"]) == ("1500.00", "285.00", "1785.00")
    assert Decimal(doc["total"]) == Decimal(doc["subtotal"]) + Decimal(doc["tax"]) - Decimal(
        doc["credits_applied"]
    )


def test_quote_reports_usage_the_plan_does_not_price_instead_of_dropping_it(catalog_file):
    result = run(
        "--catalog",
        catalog_file,
        "--plan",
        "payg",
        "--month",
        "2026-10",
        "--usage",
        "output_tokens:claude-sonnet-4-5=1000",
    )
    assert result.exit_code == 0
    assert "(not priced by this plan: 1,000 output_tokens of claude-sonnet-4-5)" in result.output
    as_json = json.loads(
        run(
            "--catalog",
            catalog_file,
            "--plan",
            "payg",
            "--month",
            "2026-10",
            "--usage",
            "output_tokens:claude-sonnet-4-5=1000",
            "--json",
        ).output
    )
    assert (as_json["lines"], as_json["subtotal"], as_json["total"]) == (
        [],
        "0.00",
        "0.00",
    )  # like any total


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plan", "gold", "--usage", "input_tokens=1"], "--plan 'gold': no such plan"),
        (["--plan", "payg", "--usage", "tokens=1"], "unknown meter 'tokens'"),
        (["--plan", "payg", "--usage", "input_tokens=lots"], "expected METER[:MODEL]"),
    ],
)
def test_bad_quote_arguments_exit_2_naming_the_argument(catalog_file, args, message):
    result = run("--catalog", catalog_file, "--month", "2026-10", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_an_invalid_catalog_exits_2_naming_the_file_and_the_path(tmp_path):
    bad = {
        **CATALOG,
        "plans": {
            "payg": {
                "name": "P",
                "charges": [{"id": "x", "meter": "input_tokens", "unit_price": 0.5}],
            }
        },
        "customers": {},
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    result = run("--catalog", path, "--plan", "payg", "--usage", "input_tokens=1")
    assert result.exit_code == 2
    assert (
        f"{path}: plans.payg.charges[0].unit_price: a float where a decimal string is required"
        in result.output
    )
