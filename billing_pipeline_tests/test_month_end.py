"""Month-end end to end: the demo month through Dagster, checked against an independent oracle."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from billing_pipeline.money import fmt_money
from billing_pipeline.runner import run_month_end
from billing_pipeline_tests.oracle import expected_invoice
from billing_pipeline_tests.support.pdf_text import page_one_summary

MONTH = "2026-10"
# One customer per plan, plus reverse charge + true-up and a mid-month start, and Pinnacle, billed
# cost-plus from its LiteLLM proxy's spend logs.
SUBJECTS = ["umbrella", "globex", "acme", "blackmesa", "dunder", "pinnacle"]


def _no_float(value: str):
    raise AssertionError(f"float {value} in invoice JSON")


def load_invoice(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"), parse_float=_no_float)


@pytest.fixture(scope="module")
def demo(demo_month, tmp_path_factory) -> dict:
    """The session's demo month, plus a second run of the same month on a copy of it."""
    invoices = demo_month.out / MONTH / "invoices"
    first_json = {p.name: p.read_bytes() for p in sorted(invoices.glob("*.json"))}
    rerun = demo_month.copy_to(tmp_path_factory.mktemp("rerun"))
    pdfs_before = pdf_files(rerun.out / MONTH / "invoices")
    second = run_month_end(MONTH, rerun.landing, rerun.catalog, rerun.out)
    second_json = {
        p.name: p.read_bytes() for p in sorted((rerun.out / MONTH / "invoices").glob("*.json"))
    }
    return {
        "landing": demo_month.landing,
        "catalog": demo_month.catalog,
        "out": demo_month.out,
        "first": demo_month.summary,
        "second": second,
        "first_json": first_json,
        "second_json": second_json,
        "invoices": invoices,
        "demo_month": demo_month,
        "second_pdfs": (pdfs_before, pdf_files(rerun.out / MONTH / "invoices")),
    }


def pdf_files(folder: Path) -> dict[str, tuple[int, int]]:
    """Each PDF's inode and modification time: a PDF written again (temp file + rename) gets a new
    inode, one left alone keeps both."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.pdf"))}


def test_month_end_writes_an_invoice_pdf_and_json_for_every_customer_with_usage(demo):
    pdfs = sorted(p.stem for p in demo["invoices"].glob("*.pdf"))
    jsons = sorted(p.stem for p in demo["invoices"].glob("*.json"))
    assert pdfs == jsons and len(jsons) >= 20
    assert (demo["out"] / MONTH / "reconciliation.csv").is_file()
    assert (demo["out"] / MONTH / "quarantine.csv").is_file()
    assert demo["first"].failed_checks == []
    assert demo["first"].invoices == len(jsons)


@pytest.mark.parametrize("customer", SUBJECTS)
def test_invoice_total_equals_an_independent_decimal_computation(demo, customer):
    expected = expected_invoice(demo["landing"], demo["catalog"], customer, MONTH)
    invoice = load_invoice(demo["invoices"] / f"{customer}.json")
    by_charge: dict[str, Decimal] = {}
    for line in invoice["lines"]:
        by_charge[line["charge_id"]] = by_charge.get(line["charge_id"], Decimal(0)) + Decimal(
            line["amount"]
        )
    expected_lines = {k: v for k, v in expected["lines"].items() if v}
    assert {k: v for k, v in by_charge.items() if v} == expected_lines
    assert Decimal(invoice["subtotal"]) == expected["subtotal"]
    assert Decimal(invoice["tax"]) == expected["tax"]
    assert Decimal(invoice["total"]) == expected["total"]


@pytest.mark.parametrize("customer", SUBJECTS)
def test_json_lines_sum_to_the_subtotal_and_subtotal_plus_tax_is_the_total(demo, customer):
    invoice = load_invoice(demo["invoices"] / f"{customer}.json")
    assert invoice["number"] is None and invoice["period"] == MONTH and invoice["currency"] == "USD"
    assert sum(Decimal(ln["amount"]) for ln in invoice["lines"]) == Decimal(invoice["subtotal"])
    assert Decimal(invoice["subtotal"]) + Decimal(invoice["tax"]) - Decimal(
        invoice["credits_applied"]
    ) == Decimal(invoice["total"])


@pytest.mark.parametrize("customer", SUBJECTS[:3])
def test_pdf_shows_customer_period_and_total(demo, customer):
    invoice = load_invoice(demo["invoices"] / f"{customer}.json")
    text = "\n".join(
        page.extract_text() for page in PdfReader(demo["invoices"] / f"{customer}.pdf").pages
    )
    assert invoice["customer"]["name"] in text
    assert "October 2026" in text
    assert fmt_money(Decimal(invoice["total"]), "USD") in text


def test_running_the_month_twice_gives_identical_invoice_json(demo):
    assert demo["second_json"] == demo["first_json"]
    assert demo["second"].revenue == demo["first"].revenue


def test_a_rerun_with_nothing_changed_renders_no_invoice_pdf_again(demo):
    before, after = demo["second_pdfs"]
    assert len(before) >= 20
    assert after == before


def test_late_usage_renders_again_only_the_draft_it_changes(demo, tmp_path):
    month = demo["demo_month"].copy_to(tmp_path)
    invoices = month.out / MONTH / "invoices"
    before, acme_before = pdf_files(invoices), load_invoice(invoices / "acme.json")
    late = {
        "request_id": "req_late_0001",
        "timestamp": "2026-10-31T23:58:00Z",
        "customer_key": "acme",
        "model": "mistral-large-2411",
        "usage": {"prompt_tokens": 2_000_000, "completion_tokens": 500_000},
    }
    with open(month.landing / "gateway" / "2026-10-31.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(late) + "\n")

    run_month_end(MONTH, month.landing, month.catalog, month.out)

    after = pdf_files(invoices)
    assert sorted(name for name in after if after[name] != before.get(name)) == ["acme.pdf"]
    acme = load_invoice(invoices / "acme.json")
    assert Decimal(acme["total"]) > Decimal(acme_before["total"])
    text = "\n".join(page.extract_text() for page in PdfReader(invoices / "acme.pdf").pages)
    assert fmt_money(Decimal(acme["total"]), "USD") in text


def test_page_one_of_every_invoice_opens_with_the_json_total_and_its_sections(demo):
    """What a customer sees first: the total (estimated, on a draft) equals the JSON's, and one
    subtotal per section, named for what it bills, adding up to the JSON's subtotal."""
    for path in sorted(demo["invoices"].glob("*.json")):
        invoice = load_invoice(path)
        page_one = PdfReader(path.with_suffix(".pdf")).pages[0].extract_text()
        label, amount = page_one_summary(page_one)
        assert (label, amount) == ("ESTIMATED TOTAL", fmt_money(Decimal(invoice["total"]), "USD"))
        sections = invoice["sections"]
        assert sum(Decimal(s["amount"]) for s in sections) == Decimal(invoice["subtotal"])
        titles = [s["title"] for s in sections]
        assert not {"internal", "aws", "openai"} & set(titles), path.name
        for s in sections:
            assert f"{s['title']} {fmt_money(Decimal(s['amount']), 'USD')}" in " ".join(
                page_one.split()
            )


def test_gpu_time_is_shown_in_gpu_hours_and_outcomes_under_their_own_name(demo):
    acme = load_invoice(demo["invoices"] / "acme.json")
    gpu = next(ln for ln in acme["lines"] if ln["meter"] == "gpu_seconds")
    assert (gpu["quantity"], gpu["unit"], gpu["unit_size"]) == (1_575_000, "GPU-seconds", 3600)
    text = " ".join(
        " ".join(page.extract_text().split())
        for page in PdfReader(demo["invoices"] / "acme.pdf").pages
    )
    assert "437.5 GPU-hours $2.40 per GPU-hour $1,050.00" in text  # 1,575,000 s / 3,600
    assert "1,575,000 GPU-seconds at $2.40 per GPU-hour = $1,050.00" in text  # the exact seconds
    assert "GPU compute $1,050.00" in text and "Outcomes $1,440.00" in text
    assert "internal" not in text


def test_reconciliation_csv_writes_money_in_cents_and_the_exact_cost_beside_it(demo):
    with open(demo["out"] / MONTH / "reconciliation.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames[:11] == [  # the existing columns, in their places
        "customer_id",
        "provider",
        "model",
        "quantity",
        "revenue",
        "cost",
        "margin",
        "margin_pct",
        "flags",
        "reported_tokens",
        "at_stake",
    ]
    assert reader.fieldnames[11:] == ["cost_exact", "margin_exact"]
    for row in rows:
        for name in ("revenue", "cost", "margin"):
            assert re.fullmatch(r"-?\d+\.\d\d", row[name]), (name, row[name])
        for name in ("cost", "margin"):
            exact = Decimal(row[f"{name}_exact"])
            assert Decimal(row[name]) == exact.quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert any(len(r["cost_exact"].split(".")[1]) > 2 for r in rows)  # sub-cent provider cost


def test_unattributed_usage_is_costed_and_reported_not_dropped(demo):
    with open(demo["out"] / MONTH / "reconciliation.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    orphans = [r for r in rows if not r["customer_id"]]
    assert orphans and all("unattributed" in r["flags"] for r in orphans)
    assert sum(Decimal(r["cost_exact"]) for r in orphans) == demo["first"].unattributed_cost > 0


MALFORMED = {
    # format: (relative file to append to / create, text, expected reason)
    "openai": (
        "openai/usage/completions/2026-10-07_p9.json",
        json.dumps(
            {
                "object": "page",
                "has_more": False,
                "next_page": None,
                "data": [
                    {
                        "object": "bucket",
                        "start_time": 1791331200,
                        "end_time": 1791417600,
                        "results": [
                            {
                                "object": "organization.usage.completions.result",
                                "input_tokens": -5,
                                "output_tokens": 10,
                                "num_model_requests": 1,
                                "project_id": "proj_acme",
                                "model": "gpt-4o",
                            }
                        ],
                    }
                ],
            }
        ),
        "negative_quantity",
    ),
    "anthropic": (
        "anthropic/usage_report/2026-10-07_p9.json",
        json.dumps(
            {
                "data": [
                    {
                        "starting_at": "yesterday",
                        "ending_at": "2026-10-08T00:00:00Z",
                        "results": [
                            {
                                "api_key_id": "apikey_x",
                                "model": "claude-sonnet-4-5",
                                "uncached_input_tokens": 5,
                                "output_tokens": 5,
                            }
                        ],
                    }
                ],
                "has_more": False,
                "next_page": None,
            }
        ),
        "bad_timestamp",
    ),
    "gateway": (
        "gateway/2026-10-07.jsonl",
        '{"request_id": "req_broken", "timestamp": \n',
        "bad_json_line",
    ),
    "outcomes": (
        "outcomes/outcomes_2026-10.csv",
        "out_bad,acme,accepted_diagnosis,not-a-time\n",
        "bad_timestamp",
    ),
}


def test_a_malformed_row_in_each_format_is_quarantined_and_the_month_still_bills(demo, tmp_path):
    landing = tmp_path / "landing"
    shutil.copytree(demo["landing"], landing)
    for relative, text, _ in MALFORMED.values():
        path = landing / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    focus = next((landing / "cloud" / "focus").glob("*.csv"))
    lines = focus.read_text(encoding="utf-8").splitlines(keepends=True)
    header = next(csv.reader([lines[0]]))
    bad = next(
        row
        for row in csv.reader(lines[1:])
        if "Instance Hour" in row[header.index("ChargeDescription")]
    )
    bad[header.index("ConsumedQuantity")] = "NaN"
    with open(focus, "a", encoding="utf-8", newline="") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL).writerow(bad)

    summary = run_month_end(MONTH, landing, demo["catalog"], tmp_path / "out")

    with open(tmp_path / "out" / MONTH / "quarantine.csv", newline="") as fh:
        quarantined = list(csv.DictReader(fh))
    for name, (relative, _, reason) in MALFORMED.items():
        hits = [
            q for q in quarantined if q["origin"].startswith(relative) and q["reason"] == reason
        ]
        assert hits, f"{name}: no {reason} row from {relative}"
        assert hits[0]["message"]
    focus_rel = str(focus.relative_to(landing))
    assert any(
        q["origin"].startswith(focus_rel) and q["field"] == "ConsumedQuantity" for q in quarantined
    )
    assert summary.failed_checks == []
    assert summary.invoices == demo["first"].invoices
    assert summary.quarantined == demo["first"].quarantined + len(MALFORMED) + 1


def test_cli_run_exits_2_with_one_line_reason_on_missing_inputs(tmp_path, demo):
    cli = [
        sys.executable,
        "-m",
        "billing_pipeline.cli",
        "run",
        "--month",
        MONTH,
        "--out",
        str(tmp_path / "o"),
    ]
    missing = subprocess.run(
        cli + ["--landing", str(tmp_path / "nope"), "--catalog", str(demo["catalog"])],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert (
        missing.stderr.strip().count("\n") == 0
        and "landing zone folder not found" in missing.stderr
    )

    bad_catalog = tmp_path / "bad.yaml"
    bad_catalog.write_text(
        "issuer: {name: X}\nplans: {p: {name: P, charges: [{id: a, meter: input_tokens, "
        "unit_price: 0.5}]}}\ncustomers: {}\n"
    )
    invalid = subprocess.run(
        cli + ["--landing", str(demo["landing"]), "--catalog", str(bad_catalog)],
        capture_output=True,
        text=True,
    )
    assert invalid.returncode == 2
    assert (
        "plans.p.charges[0].unit_price: a float where a decimal string is required"
        in invalid.stderr
    )

    bad_month = subprocess.run(
        cli[:4]
        + [
            "--month",
            "2026-13",
            "--out",
            str(tmp_path / "o"),
            "--landing",
            str(demo["landing"]),
            "--catalog",
            str(demo["catalog"]),
        ],
        capture_output=True,
        text=True,
    )
    assert bad_month.returncode == 2 and "YYYY-MM" in bad_month.stderr


def test_pinnacle_pays_the_list_price_of_its_litellm_requests_plus_15_percent_and_a_fee(demo):
    """The demo's cost-plus customer, checked by hand: its proxy's spend log export, the list
    prices per 1M tokens written out here, x 1.15, + $0.10 per 1M tokens, one rounding per line."""
    rows = json.loads((demo["landing"] / "litellm/spend_logs/spend_logs_2026-10.json").read_text())
    billed = [r for r in rows if r["status"] == "success"]  # failed requests are not billed
    assert len(billed) < len(rows)
    # list prices per 1M tokens (the demo's price book): input, cached input, cache write, output
    gpt41 = {True: ("2.00", "0.50", "0", "8.00"), False: ("1.60", "0.50", "0", "6.40")}
    prices = {
        "claude-sonnet-4-5": ("3.00", "0.30", "3.75", "15.00"),
        "mistral-large": ("2.00", "0", "0", "6.00"),
    }
    lines: dict[str, list[Decimal]] = {}  # line -> [list cost in $ x 1M, tokens]
    for r in billed:
        usage = r["metadata"]["usage_object"]
        details = usage.get("prompt_tokens_details") or {}
        cached, write = details.get("cached_tokens", 0), details.get("cache_creation_tokens", 0)
        tokens = (
            usage["prompt_tokens"] - cached - write,
            cached,
            write,
            usage["completion_tokens"],
        )
        if r["model"].startswith("gpt-4.1"):  # the price cut of the 15th splits its line
            before = int(r["startTime"][8:10]) < 15
            line, price = f"gpt-4.1 {'before' if before else 'after'}", gpt41[before]
        else:
            line = "claude-sonnet-4-5" if r["model"].startswith("claude") else "mistral-large"
            price = prices[line]
        cost = sum(Decimal(q) * Decimal(p) for q, p in zip(tokens, price, strict=True))
        acc = lines.setdefault(line, [Decimal(0), Decimal(0)])
        acc[0] += cost
        acc[1] += sum(tokens)
    amounts = {
        line: ((cost * Decimal("1.15") + units * Decimal("0.10")) / 1_000_000).quantize(
            Decimal("0.01"), rounding="ROUND_HALF_UP"
        )
        for line, (cost, units) in lines.items()
    }
    invoice = load_invoice(demo["invoices"] / "pinnacle.json")
    assert {ln["description"]: Decimal(ln["amount"]) for ln in invoice["lines"]} == {
        "Tokens at list price + 15 % (claude-sonnet-4-5)": amounts["claude-sonnet-4-5"],
        "Tokens at list price + 15 % (mistral-large)": amounts["mistral-large"],
        "Tokens at list price + 15 % (gpt-4.1) (Oct 1-14)": amounts["gpt-4.1 before"],
        "Tokens at list price + 15 % (gpt-4.1) (Oct 15-31)": amounts["gpt-4.1 after"],
    }
    assert Decimal(invoice["total"]) == sum(amounts.values())  # US customer: no tax
    assert all(ln["pricing"] == "cost_plus" for ln in invoice["lines"])
