"""OpenAI's published usage result, delivered the ways real deliveries go wrong, through the whole
month-end (`run`, then `issue`): what can still be read bills to the cent, and what could carry
money and cannot be read holds issuing, named (RELIABILITY.md 2, 13, 18).

The result is the spec's grouped example (fixtures: data/providers/openai/variants/, SOURCES.md).
Hand-computed invoice for proj_abc (acme) at support/openai_usage.py's TOKEN_PLAN, per 1K tokens:
text in 2,500 x 0.50 = 1.25; cached 1,500 x 0.20 = 0.30; cache write 200 x 0.60 = 0.12;
audio in 300 x 4.00 = 1.20; cached audio 100 x 0.40 = 0.04; image in 200 x 1.00 = 0.20;
cached image 200 x 0.50 = 0.10; text out 800 x 2.00 = 1.60; audio out 100 x 8.00 = 0.80;
image out 100 x 4.00 = 0.40; requests 5 x 0.01 = 0.05. Total $6.06.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from billing_pipeline.cli import main
from billing_pipeline.demo.catalog import ISSUER
from billing_pipeline_tests.support.openai_usage import TOKEN_PLAN

DATA = Path(__file__).parent / "data" / "providers" / "openai"
VARIANTS = DATA / "variants"
MONTH = "2024-11"
FOLDER = "openai/usage/completions"
SPEC_TOTAL = "6.06"


@pytest.fixture
def month(tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "issuer": ISSUER,
                "plans": {"payg": {"name": "Pay as you go", "charges": TOKEN_PLAN}},
                "customers": {
                    "acme": {
                        "name": "Acme",
                        "subscriptions": [{"plan": "payg", "from": "2024-01-01"}],
                        "keys": ["openai:proj_abc"],
                    }
                },
            }
        ),
        encoding="utf-8",
    )
    return tmp_path / "landing", catalog, tmp_path / "out"


def land(landing: Path, source: Path, name: str, mtime: int | None = None) -> None:
    target = landing / FOLDER / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    if mtime is not None:
        os.utime(target, (mtime, mtime))


def month_end(landing, catalog, out):
    ran = CliRunner().invoke(
        main,
        [
            "run",
            "--month",
            MONTH,
            "--landing",
            str(landing),
            "--catalog",
            str(catalog),
            "--out",
            str(out),
        ],
        catch_exceptions=False,
    )
    issued = CliRunner().invoke(
        main,
        ["issue", "--month", MONTH, "--out", str(out), "--catalog", str(catalog)],
        catch_exceptions=False,
    )
    return ran, issued


def subtotal(out: Path) -> str:
    return json.loads((out / MONTH / "invoices" / "acme.json").read_text())["subtotal"]


@pytest.mark.parametrize("variant", ["bom_p1.json", "crlf_p1.json", "gzip_p1.json.gz"])
def test_a_bom_crlf_or_gzip_delivery_bills_like_the_plain_page(month, variant):
    landing, catalog, out = month
    land(
        landing,
        VARIANTS / variant,
        "2024-11-01_p1.json" + (".gz" if variant.endswith(".gz") else ""),
    )
    ran, issued = month_end(landing, catalog, out)
    assert ran.exit_code == 0, ran.output
    assert subtotal(out) == SPEC_TOTAL
    assert issued.exit_code == 0 and "INV-" in issued.output


def test_a_truncated_page_holds_the_month_and_issue_refuses_it(month):
    landing, catalog, out = month
    land(landing, VARIANTS / "truncated_p1.json", "2024-11-01_p1.json")
    ran, issued = month_end(landing, catalog, out)
    assert ran.exit_code == 1
    assert f"{FOLDER}/2024-11-01_p1.json (unreadable_file)" in ran.output
    assert issued.exit_code == 1 and "money at risk holds the whole month" in issued.output


def test_a_page_whose_successor_is_missing_bills_its_own_records_and_holds_the_month(month):
    landing, catalog, out = month
    land(landing, VARIANTS / "has_more_p1.json", "2024-11-01_p1.json")
    ran, issued = month_end(landing, catalog, out)
    assert ran.exit_code == 1 and "(missing_next_page)" in ran.output
    assert subtotal(out) == SPEC_TOTAL
    assert issued.exit_code == 1


def test_a_restated_export_is_billed_and_the_first_version_kept_for_audit(month):
    """1,000 more text input tokens x $0.50/1K = $0.50 more: $6.56."""
    landing, catalog, out = month
    land(
        landing,
        DATA / "usage_completions_result_spec_example.json",
        "2024-11-01_p1.json",
        mtime=1_730_520_000,
    )
    land(
        landing,
        VARIANTS / "restated_p1.json",
        "2024-11-01_redelivered_p1.json",
        mtime=1_730_606_400,
    )
    ran, issued = month_end(landing, catalog, out)
    assert ran.exit_code == 0, ran.output
    assert subtotal(out) == "6.56"
    with open(out / MONTH / "restated_usage.csv", newline="", encoding="utf-8") as fh:
        [row] = list(csv.DictReader(fh))
    assert row["old_origin"].startswith(f"{FOLDER}/2024-11-01_p1.json#")
    assert row["new_origin"].startswith(f"{FOLDER}/2024-11-01_redelivered_p1.json#")
    assert "input_tokens=2500" in row["old"] and "input_tokens=3500" in row["new"]
    assert issued.exit_code == 0


def spec_result() -> dict:
    return json.loads((DATA / "usage_completions_result_spec_example.json").read_text())


def with_result(**changes) -> dict:
    page = spec_result()
    page["data"][0]["results"][0].update(changes)
    return page


def twice_in_one_file() -> dict:
    page = spec_result()
    other = copy.deepcopy(page["data"][0]["results"][0])
    other["num_model_requests"] = 6
    page["data"][0]["results"].append(other)
    return page


MONEY_AT_RISK = {
    "negative_quantity": with_result(output_image_tokens=-100),
    "bad_number": with_result(output_tokens="1000"),
    "inconsistent_breakdown": with_result(input_text_tokens=2600),
    "implausible_quantity": with_result(input_tokens=9223372036854775807),
    "conflict_in_file": twice_in_one_file(),
}


@pytest.mark.parametrize("reason", sorted(MONEY_AT_RISK))
def test_each_money_at_risk_reason_holds_the_customer_it_names_and_issue_refuses_it(month, reason):
    landing, catalog, out = month
    (landing / FOLDER).mkdir(parents=True)
    (landing / FOLDER / "2024-11-01_p1.json").write_text(json.dumps(MONEY_AT_RISK[reason]))
    ran, issued = month_end(landing, catalog, out)
    assert ran.exit_code == 1, ran.output
    assert f"({reason})" in ran.output and "customers acme" in ran.output
    with open(out / MONTH / "quarantine.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["reason"] == reason]
    assert rows and {(r["kind"], r["customer_id"]) for r in rows} == {("money_at_risk", "acme")}
    assert (
        issued.exit_code == 1 and "customers acme" in issued.output and "INV-" not in issued.output
    )
