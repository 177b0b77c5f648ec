"""Month-to-date statements: the spend so far is the draft invoice of the days so far, to the cent."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from pypdf import PdfReader

from billing_pipeline import sources
from billing_pipeline.alerts import daily_spend
from billing_pipeline.alerts.rules import limit_alerts
from billing_pipeline.catalog import load_catalog, parse_catalog
from billing_pipeline.catalog.model import Credit
from billing_pipeline.defs.alerts import with_alert_resources
from billing_pipeline.defs.partitions import daily_partitions
from billing_pipeline.defs.resources import CatalogResource, resources_from_env
from billing_pipeline.defs.statements import month_to_date_statements
from billing_pipeline.demo.generator import write_demo
from billing_pipeline.documents.invoice import build_documents
from billing_pipeline.documents.statement import (
    allocate,
    build_statements,
    held_customers,
    statement_json,
)
from billing_pipeline.money import fmt_money, fmt_quantity
from billing_pipeline.rating import rate_month
from billing_pipeline.rendering.statement_pdf import StatementRenderer, statement_context
from billing_pipeline.schema import USAGE_SCHEMA, conform, model_family_expr
from billing_pipeline.usage import normalize
from billing_pipeline_tests.support.rating import CATALOG as RATING_CATALOG
from billing_pipeline_tests.support.usage import usage_frame, usage_row

MONTH = "2026-10"
HALFWAY = dt.date(2026, 10, 15)
CENT = Decimal("0.01")
TOTALS = ("subtotal", "tax", "credits_applied", "total")


# ---------------------------------------------------------------- the demo month, read without Dagster


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo month's attributed usage, with a prepaid credit grant for one customer that an
    earlier month already drew from (so credits carry over as they would at month-end)."""
    root = tmp_path_factory.mktemp("statement_demo")
    write_demo(root / "landing", root / "catalog.yaml", month=MONTH)
    catalog = load_catalog(root / "catalog.yaml")
    start, end = dt.date(2026, 10, 1), dt.date(2026, 11, 1)
    reads = [read(root / "landing", start, end) for read in sources.SOURCES.values()]
    usage, _ = normalize([r.events for r in reads], [r.quarantine for r in reads], catalog)
    first = sorted(catalog.customers)[0]
    granted = catalog.customers[first].model_copy(
        update={"credits": [Credit.model_validate({"amount": "1500.00", "from": "2026-01-01"})]}
    )
    catalog = catalog.model_copy(update={"customers": {**catalog.customers, first: granted}})
    used = {first: {0: Decimal("400.00")}}
    return {
        "root": root,
        "usage": usage,
        "catalog": catalog,
        "credits_used": used,
        "credit_customer": first,
        "statements": build_statements(usage, catalog, HALFWAY, used),
    }


def draft_invoices(
    usage: pl.DataFrame, catalog, last_day: dt.date, credits_used
) -> dict[str, dict]:
    """The normal month-end path on the usage that arrived up to ``last_day``."""
    lines = rate_month(usage.filter(pl.col("day") <= last_day), catalog, MONTH).lines
    return {d["customer_id"]: d for d in build_documents(lines, catalog, MONTH, credits_used)}


def test_halfway_statement_totals_equal_the_draft_invoice_for_the_same_days(demo):
    invoices = draft_invoices(demo["usage"], demo["catalog"], HALFWAY, demo["credits_used"])
    statements = {s["customer_id"]: s for s in demo["statements"]}
    assert statements.keys() == invoices.keys() and len(statements) > 10
    for cid, invoice in invoices.items():
        spend = statements[cid]["spend_so_far"]
        assert [spend[k] for k in TOTALS] == [invoice[k] for k in TOTALS], cid
    # the comparison covers tax and credits, not only subtotals
    assert any(Decimal(i["tax"]) > 0 for i in invoices.values())
    assert Decimal(invoices[demo["credit_customer"]]["credits_applied"]) > 0


def test_with_no_more_usage_a_later_statement_shows_the_same_totals(demo):
    cut = demo["usage"].filter(pl.col("day") <= HALFWAY)
    later = {
        s["customer_id"]: s["spend_so_far"]
        for s in build_statements(cut, demo["catalog"], dt.date(2026, 10, 31), demo["credits_used"])
    }
    for st in demo["statements"]:
        assert [later[st["customer_id"]][k] for k in TOTALS] == [
            st["spend_so_far"][k] for k in TOTALS
        ]


def test_credits_remaining_is_the_grant_less_earlier_months_and_this_months_draw(demo):
    st = next(s for s in demo["statements"] if s["customer_id"] == demo["credit_customer"])
    applied = Decimal(st["spend_so_far"]["credits_applied"])
    assert Decimal(st["credits_remaining"]) == Decimal("1500.00") - Decimal("400.00") - applied


def test_breakdowns_add_up_to_the_spend_so_far(demo):
    usage = demo["usage"].filter(pl.col("day") <= HALFWAY)
    for st in demo["statements"]:
        spend = st["spend_so_far"]
        usage_charges = Decimal(spend["usage_charges"])
        for name in ("by_model", "by_day", "by_token_type"):
            assert sum(Decimal(r["amount"]) for r in st[name]) == usage_charges, (
                st["customer_id"],
                name,
            )
        assert usage_charges + sum(Decimal(o["amount"]) for o in st["other_charges"]) == Decimal(
            spend["subtotal"]
        )
        charged = [
            sum(r["quantity"] for r in st[name]) for name in ("by_model", "by_day", "by_token_type")
        ]
        assert charged[0] == charged[1] == charged[2]
        assert [r["day"] for r in st["by_day"]] == [f"2026-10-{d:02d}" for d in range(1, 16)]
        mine = usage.filter(pl.col("customer_id") == st["customer_id"])
        assert sum(r["quantity"] for r in st["by_project"]) == mine["quantity"].sum()
        assert {r["account_key"] for r in st["by_project"]} == set(
            mine["account_key"].unique().to_list()
        )
        assert sum(st["units_by_meter"].values()) == mine["quantity"].sum()


def test_amounts_are_split_by_largest_remainder_in_whole_cents():
    assert allocate(Decimal("0.10"), [1, 1, 1], "USD") == [
        Decimal("0.04"),
        Decimal("0.03"),
        Decimal("0.03"),
    ]
    assert allocate(Decimal("1.00"), [1, 2], "USD") == [
        Decimal("0.33"),
        Decimal("0.67"),
    ]  # 0.333.., 0.666..
    assert allocate(Decimal("-0.05"), [1, 1], "USD") == [Decimal("-0.03"), Decimal("-0.02")]
    assert allocate(Decimal("7"), [1, 1, 1, 1], "JPY") == [
        Decimal(2),
        Decimal(2),
        Decimal(2),
        Decimal(1),
    ]
    with pytest.raises(ValueError, match="not a whole number"):
        allocate(Decimal("0.005"), [1], "USD")


# ---------------------------------------------------------------- small catalogs, numbers computed here


def small_catalog(charge: dict, **customer) -> object:
    return parse_catalog(
        {
            "issuer": {"name": "Example AI GmbH"},
            "plans": {"p": {"name": "Plan", "charges": [charge]}},
            "customers": {
                "acme": {
                    "name": "Acme",
                    "subscriptions": [{"plan": "p", "from": "2026-01-01"}],
                    "keys": ["gateway:acme"],
                    **customer,
                }
            },
        }
    )


def output_usage(per_day: dict[dt.date, int]) -> pl.DataFrame:
    frame = pl.DataFrame(
        [
            {
                "event_id": f"e{d}",
                "record_id": f"e{d}",
                "source": "gateway_log",
                "provider": "openai",
                "account_key": "gateway:acme",
                "customer_id": "acme",
                "model": "gpt-4o",
                "meter": "output_tokens",
                "dimensions": "{}",
                "quantity": q,
                "start": dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC),
                "end": dt.datetime(d.year, d.month, d.day, 1, tzinfo=dt.UTC),
                "origin": f"t:{d}",
                "day": d,
            }
            for d, q in per_day.items()
        ]
    ).with_columns(model_family_expr().alias("model_family"))
    return conform(frame, USAGE_SCHEMA)


def test_projection_rates_the_run_rate_month_through_the_graduated_tiers():
    tier_1, tier_2 = Decimal("0.00001"), Decimal("0.000004")
    catalog = small_catalog(
        {
            "id": "out",
            "meter": "output_tokens",
            "pricing": "graduated",
            "tiers": [
                {"up_to": 1_000_000, "unit_price": str(tier_1)},
                {"up_to": None, "unit_price": str(tier_2)},
            ],
        },
        tax={"rate": "0.19"},
    )
    day, per_day = dt.date(2026, 10, 7), 123_457
    (st,) = build_statements(
        output_usage({dt.date(2026, 10, d): per_day for d in range(1, 8)}), catalog, day
    )
    so_far = 7 * per_day
    month_units = (Decimal(so_far) * 31 / 7).quantize(Decimal(1), ROUND_HALF_UP)
    subtotal = (
        min(month_units, 1_000_000) * tier_1 + max(month_units - 1_000_000, 0) * tier_2
    ).quantize(CENT, ROUND_HALF_UP)
    tax = (subtotal * Decimal("0.19")).quantize(CENT, ROUND_HALF_UP)
    projection = st["projection"]
    assert (
        Decimal(projection["subtotal"]),
        Decimal(projection["tax"]),
        Decimal(projection["total"]),
    ) == (subtotal, tax, subtotal + tax)
    linear = (Decimal(st["spend_so_far"]["subtotal"]) * 31 / 7).quantize(CENT, ROUND_HALF_UP)
    assert (
        subtotal < linear
    )  # the second tier is cheaper: a straight line would overstate the month
    assert projection["method"].startswith("run_rate_rerated")


def test_percentage_of_the_monthly_limit_is_the_one_the_limit_alerts_report():
    catalog = small_catalog(
        {"id": "out", "meter": "output_tokens", "unit_size": 1000, "unit_price": "0.010"},
        monthly_limit="10.00",
    )
    day, per_day = dt.date(2026, 10, 8), 123_456
    usage = output_usage({dt.date(2026, 10, d): per_day for d in range(1, 9)})
    (st,) = build_statements(usage, catalog, day)
    charges = (Decimal(8 * per_day) / 1000 * Decimal("0.010")).quantize(CENT, ROUND_HALF_UP)
    expected = (charges / Decimal(10) * 100).quantize(Decimal("0.1"), ROUND_HALF_UP)
    assert (st["monthly_limit"], Decimal(st["limit_used_pct"])) == ("10.00", expected)
    alerts = limit_alerts(daily_spend(usage, catalog, day), catalog, day)
    assert {a.payload["percent_used"] for a in alerts} == {st["limit_used_pct"]}


def test_statement_json_has_only_decimal_strings_never_floats(demo):
    def no_float(text):
        raise AssertionError(f"float in statement JSON: {text}")

    for st in demo["statements"]:
        json.loads(statement_json(st), parse_float=no_float)
        assert Decimal(st["spend_so_far"]["total"]) == Decimal(
            st["spend_so_far"]["subtotal"]
        ) + Decimal(st["spend_so_far"]["tax"]) - Decimal(st["spend_so_far"]["credits_applied"])


def test_the_pdf_shows_the_customer_and_the_total_so_far(demo):
    st = demo["statements"][0]
    text = "".join(
        page.extract_text()
        for page in PdfReader(io.BytesIO(StatementRenderer().render_pdf(st))).pages
    )
    assert st["customer"]["name"] in text
    assert fmt_money(Decimal(st["spend_so_far"]["total"]), st["currency"]) in text
    assert "Month-to-date statement" in text


def test_statements_render_the_same_bytes_without_the_footnote_rules(demo):
    trimmed = StatementRenderer()
    assert trimmed.user_agent is not None
    weasyprints_own = StatementRenderer()
    weasyprints_own.user_agent = None  # WeasyPrint's whole user-agent stylesheet
    st = demo["statements"][0]
    assert trimmed.render_pdf(st) == weasyprints_own.render_pdf(st)


def test_customer_text_is_escaped_in_the_statement_html(demo):
    st = {
        **demo["statements"][0],
        "customer": {**demo["statements"][0]["customer"], "name": "<b>Evil</b>"},
    }
    html = StatementRenderer().render_html(st)
    assert "&lt;b&gt;Evil&lt;/b&gt;" in html and "<b>Evil</b>" not in html


# ---------------------------------------------------------------- the Dagster asset


def test_a_day_partition_reads_only_its_month_up_to_its_day_and_writes_json_html_pdf(
    demo, tmp_path
):
    resources = with_alert_resources(resources_from_env(tmp_path))
    catalog_path = Path(demo["root"]) / "catalog.yaml"  # the demo catalog (no added credits)
    resources["catalog"] = CatalogResource(path=str(catalog_path))
    store = Path(resources["io_manager"].base_dir) / "usage_events"
    store.mkdir(parents=True)
    usage = demo["usage"]
    for (day,), frame in usage.group_by("day"):  # the whole month is there, days after the 15th too
        frame.write_parquet(store / f"{day.isoformat()}.parquet")
    usage_events = dg.AssetSpec(
        "usage_events", partitions_def=daily_partitions
    )  # read from the files above
    result = dg.materialize(
        [usage_events, month_to_date_statements],
        partition_key=HALFWAY.isoformat(),
        resources=resources,
    )
    assert result.success
    folder = tmp_path / "out" / MONTH / "statements" / HALFWAY.isoformat()
    invoices = draft_invoices(usage, load_catalog(catalog_path), HALFWAY, None)
    assert {p.stem for p in folder.glob("*.json")} == set(invoices)
    for cid, invoice in invoices.items():
        st = json.loads((folder / f"{cid}.json").read_text())
        assert [st["spend_so_far"][k] for k in TOTALS] == [invoice[k] for k in TOTALS]
        assert st["by_day"][-1]["day"] == HALFWAY.isoformat()
        assert (folder / f"{cid}.html").exists() and (
            folder / f"{cid}.pdf"
        ).read_bytes().startswith(b"%PDF")
    metadata = result.asset_materializations_for_node("month_to_date_statements")[0].metadata
    assert metadata["customers"].value == len(invoices)


def test_cli_statement_exits_2_with_a_one_line_reason_on_a_missing_landing_zone(demo, tmp_path):
    from click.testing import CliRunner

    from billing_pipeline.cli import main

    result = CliRunner().invoke(
        main,
        [
            "statement",
            "--date",
            "2026-10-15",
            "--landing",
            str(tmp_path / "nope"),
            "--catalog",
            str(demo["root"] / "catalog.yaml"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2
    assert "landing zone folder not found" in result.output and not (tmp_path / "out").exists()


def test_by_model_shows_each_rows_units_so_gpu_seconds_are_not_read_as_gpu_hours(demo):
    """A GPU line's model row is named after its charge ('A10G GPU hours') but counts seconds."""
    st = next(
        s for s in demo["statements"] if any(r["unit"] == "GPU-seconds" for r in s["by_model"])
    )
    shown = {r["name"]: r["quantity"] for r in statement_context(st)["by_model"]}
    for row in st["by_model"]:
        assert shown[row["model"]] == f"{fmt_quantity(row['quantity'])} {row['unit']}"
    assert any(q.endswith(" GPU-seconds") for q in shown.values())
    assert any(q.endswith(" tokens") for q in shown.values())


# ---------------------------------------------------------------- held customers (money at risk)
# RELIABILITY.md 18: rate_month holds a customer whose month it cannot rate exactly and drops all
# of its lines. Before, such a customer's statement was missing (pay as you go) or showed its fixed
# lines alone (initech's would say 1,258.06: the prorated base fee and the commitment true-up), a
# false, too-low spend with no word of why.

HELD_DAY = dt.date(2026, 10, 20)


def held_catalog() -> dict:
    """The rating catalog (acme pay as you go, initech enterprise from the 16th), each customer
    with a monthly limit of 100.00."""
    raw = copy.deepcopy(RATING_CATALOG)
    for customer in raw["customers"].values():
        customer["monthly_limit"] = "100.00"
    return raw


def held_month() -> tuple[object, pl.DataFrame, pl.DataFrame]:
    """(catalog, usage, acme's usage alone): acme clean, initech with a negative correction record
    on the 19th."""
    rows = [
        ("acme", "input_tokens", 400_000, 1),
        ("acme", "output_tokens", 100_000, 2),
        ("initech", "input_tokens", 600_000, 17),
        ("initech", "output_tokens", 300_000, 18),
        ("initech", "output_tokens", -5, 19),
    ]
    usage = usage_frame(
        usage_row(event_id=f"e{i}", customer_id=c, meter=m, quantity=q, day=dt.date(2026, 10, d))
        for i, (c, m, q, d) in enumerate(rows)
    )
    return parse_catalog(held_catalog()), usage, usage.filter(pl.col("customer_id") == "acme")


def test_a_held_customers_statement_says_why_and_states_no_amount():
    catalog, usage, _ = held_month()
    statements = {s["customer_id"]: s for s in build_statements(usage, catalog, HELD_DAY)}
    st = statements["initech"]
    assert st["held"]["reason"] == "negative_quantity"
    assert "negative quantities" in st["held"]["detail"] and "initech" in st["held"]["detail"]
    # no amount built from the lines rating left: null, never 0 or the fixed fees alone
    for field in (
        "spend_so_far",
        "other_charges",
        "by_model",
        "by_token_type",
        "by_day",
        "usage_by_day",
        "projection",
        "allowance",
        "allowance_remaining",
        "credits",
        "credits_remaining",
        "limit_used_pct",
        "lines",
    ):
        assert st[field] is None, field
    # what the usage itself says is still shown: units used, net of the negative record
    assert st["units_by_meter"] == {"input_tokens": 600_000, "output_tokens": 299_995}
    assert st["by_project"] == [
        {
            "account_key": "gateway:initech",
            "quantity": 899_995,
            "units": {"input_tokens": 600_000, "output_tokens": 299_995},
        }
    ]
    assert (st["plan"], st["monthly_limit"], st["as_of"]) == (
        {"id": "enterprise", "name": "Enterprise"},
        "100.00",
        "2026-10-20",
    )
    assert json.loads(statement_json(st))["held"] == st["held"]


def test_the_other_customers_statements_are_the_same_as_without_the_held_one():
    catalog, usage, acme_alone = held_month()
    alone = next(
        s for s in build_statements(acme_alone, catalog, HELD_DAY) if s["customer_id"] == "acme"
    )
    with_held = {s["customer_id"]: s for s in build_statements(usage, catalog, HELD_DAY)}
    assert with_held["acme"] == alone and alone["held"] is None
    # 400,000 input tokens x 0.0025 / 1,000 + 100,000 output tokens x 0.010 / 1,000; 2.00 of 100.00
    spend = alone["spend_so_far"]
    assert (spend["usage_charges"], spend["total"], alone["limit_used_pct"]) == (
        "2.00",
        "2.00",
        "2.0",
    )


def test_a_held_statements_pdf_shows_the_notice_and_units_and_no_amount_but_the_limit():
    catalog, usage, _ = held_month()
    st = next(s for s in build_statements(usage, catalog, HELD_DAY) if s["held"])
    text = " ".join(
        page.extract_text()
        for page in PdfReader(io.BytesIO(StatementRenderer().render_pdf(st))).pages
    )
    flat = " ".join(text.split())
    assert "Your usage this month is under review: usage records with a negative quantity." in flat
    assert "Amounts will be shown once it is resolved." in flat
    assert re.findall(r"\$[\d,]+\.\d\d", flat) == ["$100.00"]  # the monthly limit, nothing else
    assert "600,000" in flat and "299,995" in flat
    assert "Initech" in flat and "Month-to-date statement" in flat


def test_a_customer_whose_projected_month_alone_is_held_keeps_its_spend_and_no_projection():
    """2^62 tokens on the 1st fit; the run rate to the 31st (31 x 2^62) does not: the projection
    says why instead of silently staying at the first day's figure."""
    catalog = parse_catalog(RATING_CATALOG)
    usage = usage_frame(
        [
            usage_row(event_id="big", meter="input_tokens", quantity=2**62),
            usage_row(event_id="small", meter="output_tokens", quantity=1000),
        ]
    )
    st = next(
        s
        for s in build_statements(usage, catalog, dt.date(2026, 10, 1))
        if s["customer_id"] == "acme"
    )
    # 2^62 x 0.0025 / 1,000 = 11,529,215,046,068.46976 -> .47; 1,000 x 0.010 / 1,000 = 0.01
    assert (st["held"], st["spend_so_far"]["total"]) == (None, "11529215046068.48")
    assert st["projection"] is None and st["projection_held"]["reason"] == "quantity_overflow"
    assert held_customers([st]) == {"acme": "projection: quantity_overflow"}


def test_the_day_asset_writes_held_statements_and_names_them_in_its_metadata(tmp_path):
    _, usage, _ = held_month()
    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(held_catalog()))
    resources = with_alert_resources(resources_from_env(tmp_path))
    resources["catalog"] = CatalogResource(path=str(catalog_path))
    store = Path(resources["io_manager"].base_dir) / "usage_events"
    store.mkdir(parents=True)
    for d in range(1, HELD_DAY.day + 1):  # every day ingested, most of them without usage
        day = dt.date(2026, 10, d)
        usage.filter(pl.col("day") == day).write_parquet(store / f"{day.isoformat()}.parquet")
    usage_events = dg.AssetSpec("usage_events", partitions_def=daily_partitions)
    result = dg.materialize(
        [usage_events, month_to_date_statements],
        partition_key=HELD_DAY.isoformat(),
        resources=resources,
    )
    assert result.success
    metadata = result.asset_materializations_for_node("month_to_date_statements")[0].metadata
    assert metadata["held_customers"].value == {"initech": "negative_quantity"}
    assert metadata["total_spend_so_far"].value == {"USD": "2.00"}  # acme's; initech has none
    table = result.output_for_node("month_to_date_statements")
    assert table.select("customer_id", "total", "held").rows() == [
        ("acme", "2.00", None),
        ("initech", None, "negative_quantity"),
    ]
    folder = tmp_path / "out" / MONTH / "statements" / HELD_DAY.isoformat()
    assert (
        json.loads((folder / "initech.json").read_text())["held"]["reason"] == "negative_quantity"
    )
    assert (folder / "initech.pdf").read_bytes().startswith(b"%PDF")
