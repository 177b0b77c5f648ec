"""CSV formula injection (OWASP "CSV Injection"): every CSV we write shows hostile text as text.

A spreadsheet runs a cell beginning with ``=``, ``+``, ``-``, ``@``, tab or CR as a formula; our
reports carry text outsiders control (a gateway request's ``model``, catalog ids), so such cells
are written with a leading single quote. Numbers stay numbers, and our own reader of the reports
(``runner._summarize``) reads them unchanged.
"""

from __future__ import annotations

import csv
import json
import os
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.csv_files import MoneyColumns, neutralised, restore, restore_expr, write_csv

HOSTILE_MODEL = '=HYPERLINK("http://x","y")'


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_every_formula_trigger_in_a_string_cell_is_prefixed_with_a_quote(tmp_path):
    frame = pl.DataFrame(
        {
            "customer_id": [
                "-2-3",
                "@SUM(1+1)",
                "+1+1",
                "\tcmd",
                "\rcmd",
                "=1+1",
                "acme",
                None,
                "'=x",
            ],
            "plan_id": ["payg"] * 9,
        }
    )
    write_csv(frame, tmp_path / "out.csv")
    got = [r["customer_id"] for r in read_rows(tmp_path / "out.csv")]
    assert got == ["'-2-3", "'@SUM(1+1)", "'+1+1", "'\tcmd", "'\rcmd", "'=1+1", "acme", "", "''=x"]


def test_numbers_stay_numbers_whether_numeric_columns_or_decimal_strings(tmp_path):
    frame = pl.DataFrame(
        {
            "amount": [Decimal("-1.00"), Decimal("2.50")],  # a Decimal column: never touched
            "quantity": [-5, 7],  # an integer column: never touched
            "raw": [
                "-1.00",
                "+5",
            ],  # text that is exactly a number: a spreadsheet reads a number, nothing runs
            "expr": [
                "-1+2",
                "-cmd|' /C calc'!A0",
            ],  # text that starts like a number but is a formula
        },
        schema={
            "amount": pl.Decimal(12, 2),
            "quantity": pl.Int64,
            "raw": pl.String,
            "expr": pl.String,
        },
    )
    write_csv(frame, tmp_path / "out.csv")
    rows = read_rows(tmp_path / "out.csv")
    assert [(r["amount"], r["quantity"], r["raw"]) for r in rows] == [
        ("-1.00", "-5", "-1.00"),
        ("2.50", "7", "+5"),
    ]
    assert [r["expr"] for r in rows] == ["'-1+2", "'-cmd|' /C calc'!A0"]


def test_restore_gives_back_the_original_text_exactly(tmp_path):
    originals = ["=1+1", "'=x", "''@y", "acme", "-1.00", "'plain", None]
    write_csv(pl.DataFrame({"n": range(len(originals)), "text": originals}), tmp_path / "out.csv")
    assert [restore(r["text"]) or None for r in read_rows(tmp_path / "out.csv")] == originals
    back = pl.read_csv(tmp_path / "out.csv", infer_schema=False).select(restore_expr("text"))
    assert back["text"].to_list() == originals


def test_catalog_ids_and_categorical_columns_are_neutralised_too():
    frame = pl.DataFrame(
        {"customer_id": ["=evil"], "plan_id": ["@plan"]},
        schema={"customer_id": pl.String, "plan_id": pl.Categorical},
    )
    assert neutralised(frame).rows() == [("'=evil", "'@plan")]


def test_the_file_appears_whole_or_not_at_all_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "report.csv"
    target.write_text("old,contents\n")
    with monkeypatch.context() as patch:

        def disk_full(self, fh):
            fh.write(b"half a rep")
            raise OSError("disk full")

        patch.setattr(pl.DataFrame, "write_csv", disk_full)
        with pytest.raises(OSError, match="disk full"):
            write_csv(pl.DataFrame({"a": ["x"]}), target)
    assert target.read_text() == "old,contents\n"
    write_csv(pl.DataFrame({"a": ["new"]}), target)
    assert target.read_text() == "a\nnew\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # a report, not a 0600 temp file


def test_a_hostile_gateway_model_reaches_reconciliation_csv_as_text(tmp_path):
    """End to end: one gateway request whose ``model`` is a formula, through the month-end."""
    from billing_pipeline.runner import run_month_end

    landing = tmp_path / "landing"
    (landing / "gateway").mkdir(parents=True)
    line = {
        "request_id": "req-1",
        "timestamp": "2026-10-05T13:02:11Z",
        "customer_key": "acme",
        "provider": "openai",
        "model": HOSTILE_MODEL,
        "usage": {"prompt_tokens": 2000, "completion_tokens": 2000, "total_tokens": 4000},
    }
    (landing / "gateway" / "2026-10-05.jsonl").write_text(json.dumps(line) + "\n")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "issuer: {name: Example AI GmbH}\n"
        "plans:\n  payg: {name: Pay as you go, charges: [\n"
        '    {id: out, meter: output_tokens, unit_size: 1000, unit_price: "0.010"},\n'
        '    {id: in, meter: input_tokens, unit_size: 1000, unit_price: "0.005"}]}\n'
        'customers:\n  acme: {name: Acme, subscriptions: [{plan: payg, from: "2026-01-01"}], keys: ["gateway:acme"]}\n'
    )
    summary = run_month_end("2026-10", landing, catalog, tmp_path / "out")
    rows = read_rows(tmp_path / "out" / "2026-10" / "reconciliation.csv")
    assert [r["model"] for r in rows] == ["'" + HOSTILE_MODEL]
    assert restore(rows[0]["model"]) == HOSTILE_MODEL
    # 2 x 1,000 output tokens x $0.010 + 2 x 1,000 input tokens x $0.005 = $0.02 + $0.01 = $0.03, no provider cost
    assert Decimal(rows[0]["revenue"]) == Decimal("0.03") and summary.revenue == Decimal("0.03")
    assert summary.provider_cost == Decimal("0")  # runner._summarize read the file back


def test_money_is_written_at_the_currencys_minor_unit_with_the_exact_amount_beside_it(tmp_path):
    """A spreadsheet shows 9.35, not 9.350000000000; reconciling to the last digit reads
    cost_exact. Yen have no minor unit; a negative amount is a number, not a formula."""
    cost = [Decimal("9.350000000000"), Decimal("1234.560000000000"), Decimal("-438.826251800000")]
    frame = pl.DataFrame(
        {
            "customer_id": ["acme", "tanaka", "globex"],
            "cost": cost,
            "flags": ["", "", "negative_margin"],
            "revenue": [Decimal("12.5"), Decimal("1300"), None],
        },
        schema_overrides={"cost": pl.Decimal(38, 12), "revenue": pl.Decimal(38, 12)},
    )
    money = MoneyColumns(
        ("cost", "revenue"), exact=("cost",), currency=pl.Series(["USD", "JPY", "EUR"])
    )
    path = write_csv(frame, tmp_path / "reconciliation.csv", money)
    assert path.read_text().splitlines() == [
        "customer_id,cost,flags,revenue,cost_exact",  # existing columns in place, exact appended
        'acme,9.35,"",12.50,9.35',  # polars quotes an empty string, not a null
        'tanaka,1235,"",1300,1234.56',
        "globex,-438.83,negative_margin,,-438.8262518",
    ]


def test_one_currency_per_row_is_required_when_currencies_are_given_per_row(tmp_path):
    frame = pl.DataFrame({"cost": [Decimal("1.005")]})
    with pytest.raises(ValueError, match="2 currencies for 1 rows"):
        write_csv(
            frame, tmp_path / "x.csv", MoneyColumns(("cost",), currency=pl.Series(["USD"] * 2))
        )
