"""Long identifiers stay on the page: an 80-character API key and model name (and plan name),
billed through the real pipeline, wrap inside their table cells on the invoice, the statement and
the finance summary instead of running off the page (checked from the PDF: every text run inside
the page box)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from billing_pipeline.catalog import parse_catalog
from billing_pipeline.documents.invoice import build_documents
from billing_pipeline.documents.statement import build_statements
from billing_pipeline.rating import rate_month
from billing_pipeline.reconcile import metering_drift, provider_cost, reconcile
from billing_pipeline.reconcile.summary import SummaryRenderer, summary_context
from billing_pipeline.rendering.pdf import InvoiceRenderer
from billing_pipeline.rendering.statement_pdf import StatementRenderer
from billing_pipeline.schema import USAGE_SCHEMA, conform, model_family_expr
from billing_pipeline_tests.support.pdf_text import runs_outside_the_page, text_runs

MONTH = "2026-10"
# No hyphen or space: nothing to break a line at but the CSS's leave to break anywhere.
LONG_MODEL = "acme_health.clinical_notes_summariser_v17_finetuned_from_llama_3_1_405b_instruct"
LONG_KEY = "openai:proj_acme_health_clinical_notes_production_eu_west_discharge_letters_0001"
LONG_PLAN = "Pay as you go for clinical documentation, EU data residency and priority support"
CATALOG = {
    "issuer": {"name": "Example AI GmbH"},
    "plans": {
        "payg": {
            "name": LONG_PLAN,
            "charges": [
                {"id": "in", "meter": "input_tokens", "unit_size": 1000, "unit_price": "0.0025"},
                {"id": "out", "meter": "output_tokens", "unit_size": 1000, "unit_price": "0.010"},
            ],
        }
    },
    "customers": {
        "acme": {
            "name": "Acme Health",
            "subscriptions": [{"plan": "payg", "from": "2026-01-01"}],
            "keys": [LONG_KEY, "gateway:acme"],
        }
    },
    "price_book": [  # bought dearer than sold: the finance summary flags the long model
        {
            "provider": "openai",
            "models": ["*"],
            "meter": meter,
            "unit_size": 1_000_000,
            "unit_price": price,
            "from": "2024-01-01",
        }
        for meter, price in (("input_tokens", "5.00"), ("output_tokens", "20.00"))
    ],
}


def usage(rows: list[tuple], source: str) -> pl.DataFrame:
    """rows: (account_key, model, meter, quantity, day-of-October), all acme's."""
    frame = pl.DataFrame(
        [
            {
                "event_id": f"{source}{i}",
                "record_id": f"{source}{i}",
                "source": source,
                "provider": "openai",
                "account_key": key,
                "customer_id": "acme",
                "model": model,
                "meter": meter,
                "dimensions": "{}",
                "quantity": q,
                "start": dt.datetime(2026, 10, d, tzinfo=dt.UTC),
                "end": dt.datetime(2026, 10, d, 1, tzinfo=dt.UTC),
                "origin": f"{source}:{i}",
                "day": dt.date(2026, 10, d),
            }
            for i, (key, model, meter, q, d) in enumerate(rows)
        ]
    ).with_columns(model_family_expr().alias("model_family"))
    return conform(frame, USAGE_SCHEMA)


@pytest.fixture(scope="module")
def month():
    catalog = parse_catalog(CATALOG)
    billed = usage(
        [
            (key, model, meter, q, d)
            for d in (3, 9, 14)
            for key, model in ((LONG_KEY, LONG_MODEL), ("gateway:acme", "gpt-4o"))
            for meter, q in (("input_tokens", 2_400_000), ("output_tokens", 600_000))
        ],
        "gateway_log",
    )
    reported = usage(  # the provider counts more for the long key: metering drift on the long model
        [(LONG_KEY, LONG_MODEL, "output_tokens", 2_500_000, 14)], "openai_usage_api"
    )
    return catalog, billed, reported


def assert_on_the_page(pdf: bytes, *names: str) -> None:
    runs = text_runs(pdf)
    assert runs, "no text found: the check would pass on anything"
    shown = "".join("".join(r.text.split()) for r in runs)
    for name in names:  # wrapped, but all there
        assert name in shown
    outside = runs_outside_the_page(pdf)
    assert outside == [], "text outside the page:\n" + "\n".join(
        f"page {r.page}: x {r.x0:.0f}..{r.x1:.0f}, y {r.y:.0f}: {r.text!r}" for r in outside
    )


def test_the_invoice_wraps_an_80_character_model_name_inside_the_page(month):
    catalog, billed, _ = month
    (doc,) = build_documents(rate_month(billed, catalog, MONTH).lines, catalog, MONTH)
    assert len(LONG_MODEL) == 80 and any(ln["model"] == LONG_MODEL for ln in doc["lines"])
    assert len(LONG_PLAN) == 80
    assert_on_the_page(InvoiceRenderer().render_pdf(doc), LONG_MODEL, "".join(LONG_PLAN.split()))


def test_the_statement_wraps_an_80_character_key_and_model_name_inside_the_page(month):
    catalog, billed, _ = month
    (statement,) = build_statements(billed, catalog, dt.date(2026, 10, 15))
    assert len(LONG_KEY) == 80
    assert_on_the_page(StatementRenderer().render_pdf(statement), LONG_KEY, LONG_MODEL)


def test_the_finance_summary_wraps_an_80_character_model_name_inside_the_page(month, tmp_path):
    catalog, billed, reported = month
    drift = metering_drift(billed, reported, catalog, MONTH)
    table = reconcile(
        rate_month(billed, catalog, MONTH).lines, provider_cost(billed, catalog), drift
    )
    assert table.filter(pl.col("model") == LONG_MODEL)["flags"].item() == (
        "negative_margin,metering_drift"
    )
    paths = SummaryRenderer().write(summary_context(table, MONTH, drift), tmp_path)
    assert_on_the_page(paths["pdf"].read_bytes(), LONG_MODEL)
