"""Cost-plus prices: the provider's list price of the usage (the price book) plus a markup and an
optional fee, rounded once per line; usage the price book cannot price is held, never billed at
zero. Every expected amount is worked out by hand in the comments."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from billing_pipeline.catalog.model import Catalog
from billing_pipeline.documents.invoice import build_documents
from billing_pipeline.providers import model_family
from billing_pipeline.quote.quote import QuoteError, parse_usage, quote
from billing_pipeline.rating import rate_month
from billing_pipeline.rating.cost_plus import UNPRICED_COST
from billing_pipeline.reconcile.provider_cost import provider_cost
from billing_pipeline.runner import run_month_end
from billing_pipeline.schema import USAGE_SCHEMA

MONTH = "2026-10"
GPT = ["gpt-4o", "gpt-4o-20*"]
CLAUDE = ["claude-sonnet-4-5", "claude-sonnet-4-5-20*"]


def entry(provider, models, meter, price, start="2024-01-01", to=None, **dims) -> dict:
    e = {
        "provider": provider,
        "models": models,
        "meter": meter,
        "unit_size": 1_000_000,
        "unit_price": price,
        "from": start,
        "to": to,
    }
    if dims:
        e["dimensions"] = dims
    return e


PRICE_BOOK = [
    entry("openai", GPT, "input_tokens", "2.50", to="2026-10-14"),
    entry("openai", GPT, "input_tokens", "2.00", start="2026-10-15"),  # a cut on the 15th
    entry("openai", GPT, "cached_input_tokens", "1.25"),
    entry("openai", GPT, "output_tokens", "10.00"),
    entry("openai", GPT, "input_tokens", "1.25", batch="true"),
    entry("anthropic", CLAUDE, "input_tokens", "3.00"),
    entry("anthropic", CLAUDE, "output_tokens", "15.00"),
    entry("anthropic", CLAUDE, "cache_write_tokens", "3.75"),
]
TOKENS = ["input_tokens", "cached_input_tokens", "output_tokens"]


def catalog(*charges: dict, price_book=None, **plan) -> Catalog:
    return Catalog.model_validate(
        {
            "issuer": {"name": "Reseller GmbH"},
            "plans": {"resale": {"name": "Resale", "charges": list(charges), **plan}},
            "customers": {
                "c": {
                    "name": "C",
                    "subscriptions": [{"plan": "resale", "from": "2026-01-01"}],
                    "keys": ["k"],
                }
            },
            "price_book": PRICE_BOOK if price_book is None else price_book,
        }
    )


def list_plus(markup="0.20", meters=TOKENS, **fields) -> dict:
    return {
        "id": "tokens",
        "name": "Tokens at list price",
        "meter": meters,
        "pricing": "cost_plus",
        "markup": markup,
        **fields,
    }


def usage(*events: tuple) -> pl.DataFrame:
    """(day, meter, model, quantity[, provider[, dimensions]]) -> usage rows of customer c."""
    rows = []
    for i, (day, meter, model, quantity, *rest) in enumerate(events):
        provider = rest[0] if rest else ("anthropic" if model.startswith("claude") else "openai")
        at = dt.datetime(2026, 10, day, 12, tzinfo=dt.UTC)
        rows.append(
            {
                "event_id": f"e{i}",
                "record_id": f"r{i}",
                "source": "litellm_spend_logs",
                "provider": provider,
                "account_key": "k",
                "customer_id": "c",
                "model": model,
                "model_family": model_family(model),
                "meter": meter,
                "dimensions": rest[1] if len(rest) > 1 else "{}",
                "quantity": quantity,
                "start": at,
                "end": at,
                "origin": f"o{i}",
                "day": at.date(),
            }
        )
    return pl.DataFrame(rows, schema=USAGE_SCHEMA)


def lines(rated) -> list[tuple[str, str]]:
    return rated.lines.select("description", "amount").rows()


def test_list_cost_times_one_plus_the_markup_rounded_once_per_line():
    rated = rate_month(
        usage(
            (3, "input_tokens", "gpt-4o", 1_234_567),
            (3, "cached_input_tokens", "gpt-4o", 200_000),
            (4, "output_tokens", "gpt-4o-2024-08-06", 300_000),
        ),
        catalog(list_plus()),
        MONTH,
    )
    # list: 1,234,567 x 2.50/1M = 3.0864175; 200,000 x 1.25/1M = 0.25; 300,000 x 10/1M = 3.00
    # = 6.3364175; x 1.20 = 7.603701 -> 7.60 (one rounding, of the exact product). GPT-4o's input
    # price changes on the 15th, so the line names the period its usage fell in.
    assert lines(rated) == [("Tokens at list price (gpt-4o) (Oct 1-14)", "7.60")]
    (text,) = rated.lines["explanation"]
    assert text == (
        "Usage (Oct 1-14) at the prices in effect then: 1,234,567 input tokens at $2.50 per 1M = $3.0864175; "
        "200,000 cached input tokens at $1.25 per 1M = $0.25; "
        "300,000 output tokens at $10.00 per 1M = $3.00: "
        "list cost $6.3364175 + 20 % markup $1.2672835 = $7.60"
    )
    assert rated.lines["pricing"].to_list() == ["cost_plus"]
    assert rated.lines["unit_price"].to_list() == [None]


def test_a_half_cent_is_rounded_up_once_not_per_part():
    # 5,000 input tokens at $2.50/1M = 0.0125, x 1.20 = 0.015 exactly: half a cent -> $0.02;
    # 2,000 more at $10/1M = 0.02 (x 1.2 = 0.024): together 0.039 -> $0.04, not 0.02 + 0.02.
    rated = rate_month(usage((2, "input_tokens", "gpt-4o", 5_000)), catalog(list_plus()), MONTH)
    assert lines(rated) == [("Tokens at list price (gpt-4o) (Oct 1-14)", "0.02")]
    rated = rate_month(
        usage((2, "input_tokens", "gpt-4o", 5_000), (2, "output_tokens", "gpt-4o", 2_000)),
        catalog(list_plus()),
        MONTH,
    )
    assert lines(rated) == [("Tokens at list price (gpt-4o) (Oct 1-14)", "0.04")]


def test_a_list_price_change_inside_the_month_splits_the_line_by_date():
    rated = rate_month(
        usage(
            (3, "input_tokens", "gpt-4o", 1_000_000),
            (20, "input_tokens", "gpt-4o", 1_000_000),
            (20, "output_tokens", "gpt-4o", 100_000),
            (5, "input_tokens", "claude-sonnet-4-5", 500_000),
        ),
        catalog(list_plus()),
        MONTH,
    )
    assert lines(rated) == [
        # Claude's prices did not change: one line for the month. 500,000 x 3/1M x 1.2 = 1.80
        ("Tokens at list price (claude-sonnet-4-5)", "1.80"),
        # 1,000,000 x 2.50/1M = 2.50, x 1.2 = 3.00
        ("Tokens at list price (gpt-4o) (Oct 1-14)", "3.00"),
        # (1,000,000 x 2.00 + 100,000 x 10.00)/1M = 3.00, x 1.2 = 3.60
        ("Tokens at list price (gpt-4o) (Oct 15-31)", "3.60"),
    ]
    later = rated.lines.filter(pl.col("description").str.ends_with("(Oct 15-31)"))
    assert later["explanation"][0].startswith(
        "Usage (Oct 15-31) at the prices in effect then: 1,000,000 input tokens at $2.00 per 1M"
    )


def test_usage_the_price_book_cannot_price_holds_the_customer_named_never_billed_at_zero():
    rated = rate_month(
        usage(
            (3, "input_tokens", "gpt-4o", 1_000_000),
            (7, "output_tokens", "mistral-large-2411", 40_000, "mistral"),
        ),
        catalog(list_plus()),
        MONTH,
    )
    assert rated.lines.height == 0  # the whole customer is held, not billed less
    risks = {(r["provider"], r["meter"], r["model"]): r for r in rated.at_risk.to_dicts()}
    assert set(risks) == {
        ("mistral", "output_tokens", "mistral-large"),
        ("openai", "input_tokens", "gpt-4o"),
    }
    assert {r["reason"] for r in risks.values()} == {UNPRICED_COST}
    assert {r["customer_id"] for r in risks.values()} == {"c"}
    # every unit of the held customer is in at_risk (the month's check counts them as held)
    assert sum(r["quantity"] for r in risks.values()) == 1_040_000
    unpriced = risks[("mistral", "output_tokens", "mistral-large")]["detail"]
    assert (
        "40000 output_tokens of mistral-large from mistral (2026-10-07 to 2026-10-07)" in unpriced
    )
    assert "have no price in the price book" in unpriced
    waiting = risks[("openai", "input_tokens", "gpt-4o")]["detail"]
    assert "held while its output_tokens of mistral-large has no list price" in waiting


def test_a_fee_per_unit_with_no_markup_is_list_plus_the_fee():
    charge = list_plus(markup="0", unit_fee="0.50", unit_size=1_000_000)
    rated = rate_month(
        usage((9, "output_tokens", "claude-sonnet-4-5", 400_000)), catalog(charge), MONTH
    )
    # 400,000 x 15/1M = 6.00 list; fee 400,000 x 0.50/1M = 0.20; 6.20
    assert lines(rated) == [("Tokens at list price (claude-sonnet-4-5)", "6.20")]
    assert rated.lines["explanation"][0] == (
        "400,000 output tokens at $15.00 per 1M = $6.00: list cost $6.00 + "
        "$0.50 per 1M fee on 400,000 tokens $0.20 = $6.20"
    )


def test_the_list_price_is_the_one_the_usage_dimensions_select():
    rated = rate_month(
        usage((4, "input_tokens", "gpt-4o", 2_000_000, "openai", '{"batch":"true"}')),
        catalog(list_plus(markup="0.10")),
        MONTH,
    )
    # the batch entry prices it: 2,000,000 x 1.25/1M = 2.50, x 1.1 = 2.75
    assert lines(rated) == [("Tokens at list price (gpt-4o)", "2.75")]
    assert "2,000,000 input tokens (batch true) at $1.25 per 1M" in rated.lines["explanation"][0]


def test_a_markup_change_of_the_plan_splits_the_month_too():
    charge = list_plus(prices=[{"from": "2026-10-11", "markup": "0.30"}])
    rated = rate_month(
        usage((2, "output_tokens", "gpt-4o", 100_000), (12, "output_tokens", "gpt-4o", 100_000)),
        catalog(charge),
        MONTH,
    )
    # 100,000 x 10/1M = 1.00 each: x 1.20 = 1.20, then x 1.30 = 1.30
    assert lines(rated) == [
        ("Tokens at list price (gpt-4o) (Oct 1-10)", "1.20"),
        ("Tokens at list price (gpt-4o) (Oct 11-31)", "1.30"),
    ]


def test_included_units_are_used_first_and_only_the_rest_is_priced():
    plan = {"allowance": {"quantity": 1_500_000, "meters": ["input_tokens"]}}
    rated = rate_month(
        usage(
            (3, "input_tokens", "gpt-4o", 1_000_000),
            (5, "input_tokens", "claude-sonnet-4-5", 1_000_000),
        ),
        catalog(list_plus(), **plan),
        MONTH,
    )
    # 1,000,000 of gpt-4o (day 3) and 500,000 of Claude (day 5) are included; 500,000 Claude
    # tokens are priced: 500,000 x 3/1M = 1.50, x 1.2 = 1.80
    assert lines(rated) == [
        ("Tokens at list price (claude-sonnet-4-5)", "1.80"),
        ("Tokens at list price (gpt-4o) (Oct 1-14)", "0.00"),
    ]


def test_the_list_cost_is_what_the_reconciliation_counts_as_our_cost():
    events = usage(
        (3, "input_tokens", "gpt-4o", 1_234_567),
        (20, "input_tokens", "gpt-4o", 7_654_321),
        (20, "output_tokens", "gpt-4o", 33_333),
        (5, "cache_write_tokens", "claude-sonnet-4-5", 12_345),
    )
    the_catalog = catalog(list_plus(markup="0", meters=[*TOKENS, "cache_write_tokens"]))
    rated = rate_month(events, the_catalog, MONTH)
    cost = provider_cost(events, the_catalog)["cost"].sum()
    # at markup 0 the lines are the price book's cost, rounded once per line
    assert sum(Decimal(a) for a in rated.lines["amount"]) == sum(
        (Decimal(x).quantize(Decimal("0.01")) for x in ["3.0864175", "15.641972", "0.04629375"]),
        Decimal(0),
    )
    assert Decimal(str(cost)) == Decimal("3.0864175") + Decimal("15.641972") + Decimal("0.04629375")


@settings(max_examples=60, deadline=None)
@given(
    quantities=st.lists(st.integers(min_value=0, max_value=10**12), min_size=3, max_size=3),
    markup=st.decimals(min_value=0, max_value=5, places=4),
)
def test_the_amount_is_the_exact_list_cost_times_the_markup_rounded_half_up(quantities, markup):
    q_in, q_cached, q_out = quantities
    rated = rate_month(
        usage(
            (2, "input_tokens", "gpt-4o", q_in),
            (2, "cached_input_tokens", "gpt-4o", q_cached),
            (2, "output_tokens", "gpt-4o", q_out),
        ),
        catalog(list_plus(markup=str(markup))),
        MONTH,
    )
    listed = (
        Decimal(q_in) * Decimal("2.50") + Decimal(q_cached) * Decimal("1.25") + Decimal(q_out) * 10
    ) / 1_000_000
    expected = (listed * (1 + markup)).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
    assert Decimal(rated.lines["amount"][0]) == expected


def test_quote_prices_cost_plus_and_refuses_what_the_price_book_cannot_price():
    the_catalog = catalog(list_plus())
    document = quote(the_catalog, "resale", [parse_usage("output_tokens:gpt-4o=300000")], MONTH)
    # 300,000 x 10/1M = 3.00 x 1.2 = 3.60
    assert [(ln["description"], ln["amount"]) for ln in document["lines"]] == [
        ("Tokens at list price (gpt-4o)", "3.60")
    ]
    with pytest.raises(QuoteError, match=r"output_tokens of mistral-large \(mistral\): no price"):
        quote(the_catalog, "resale", [parse_usage("output_tokens:mistral-large=1")], MONTH)


def test_the_disclosure_states_the_rule_and_the_markup():
    the_catalog = catalog(list_plus(unit_fee="0.10", unit_size=1_000_000))
    rated = rate_month(usage((3, "output_tokens", "gpt-4o", 1_000)), the_catalog, MONTH)
    (document,) = build_documents(rated.lines, the_catalog, MONTH)
    (row,) = document["disclosure"]["plan_table"]
    assert row["pricing"] == "cost_plus"
    assert row["prices"] == (
        "the provider's list price of the usage (our price book, as in effect that day) "
        "+ 20 % markup + $0.10 per 1M fee"
    )
    assert "Cost-plus charges are the AI provider's list price" in document["disclosure"]["summary"]


@pytest.mark.parametrize(
    ("charge", "plan", "message"),
    [
        ({"markup": None}, {}, "cost_plus pricing needs markup"),
        ({"unit_price": "1.00"}, {}, "no unit_price, tiers or package_price"),
        ({"markup": "150"}, {}, "markup: 150 is not a share between 0 and 100"),
        ({"markup": "-0.1"}, {}, "is not a share between 0 and 100"),
        ({"unit_fee": "-1"}, {}, "unit_fee: -1 is negative"),
        ({"markup": "0.1234567890123"}, {}, "markup: 0.1234567890123 has more than 12 decimal"),
        (
            {"prices": [{"from": "2026-10-02", "unit_price": "1"}]},
            {},
            "changes its markup and/or unit_fee",
        ),
        ({}, {"currency": "EUR"}, "the plan's currency must be USD, not EUR"),
    ],
)
def test_a_cost_plus_charge_the_catalog_cannot_honour_is_refused(charge, plan, message):
    fields = {k: v for k, v in {**list_plus(), **charge}.items() if v is not None}
    with pytest.raises(ValidationError, match=message):
        catalog(fields, **plan)


def test_markup_and_unit_fee_belong_to_cost_plus_only():
    with pytest.raises(ValidationError, match="markup and unit_fee are cost_plus fields"):
        catalog(
            {
                "id": "x",
                "meter": "input_tokens",
                "pricing": "per_unit",
                "unit_price": "1",
                "markup": "0.1",
            }
        )


def test_month_end_holds_a_cost_plus_customer_whose_proxy_calls_a_model_without_a_list_price(
    tmp_path,
):
    """End to end: LiteLLM spend logs in, a cost-plus plan, one model the price book does not
    know. Its customer is held by name and gets no invoice; the other one is billed."""
    rows = [
        {
            "request_id": f"chatcmpl-{team}-{model}",
            "call_type": "acompletion",
            "api_key": "",
            "spend": 0.0,
            "prompt_tokens": 1_000_000,
            "completion_tokens": 0,
            "startTime": "2026-10-06T10:00:00",
            "model": model,
            "custom_llm_provider": "openai",
            "user": "",
            "metadata": {"usage_object": {"prompt_tokens": 1_000_000, "completion_tokens": 0}},
            "cache_hit": "False",
            "request_tags": [],
            "team_id": team,
            "end_user": "",
            "status": "success",
        }
        for team, model in (("team-a", "gpt-4o"), ("team-b", "gpt-4o"), ("team-b", "gpt-9-preview"))
    ]
    landing = tmp_path / "landing"
    (landing / "litellm/spend_logs").mkdir(parents=True)
    (landing / "litellm/spend_logs/spend_logs_2026-10.json").write_text(json.dumps(rows))
    document = {
        "issuer": {"name": "Reseller GmbH"},
        "plans": {"resale": {"name": "Resale", "charges": [list_plus()]}},
        "customers": {
            cid: {
                "name": cid,
                "subscriptions": [{"plan": "resale", "from": "2026-01-01"}],
                "keys": [f"litellm:team:{team}"],
                "billing_source": {"openai": "gateway_log"},
            }
            for cid, team in (("alpha", "team-a"), ("beta", "team-b"))
        },
        "price_book": PRICE_BOOK,
    }
    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(document, sort_keys=False))
    summary = run_month_end(MONTH, landing, catalog_path, tmp_path / "out")
    invoices = tmp_path / "out" / MONTH / "invoices"
    # alpha: 1,000,000 gpt-4o input tokens at $2.50/1M (Oct 6) x 1.20 = $3.00
    assert json.loads((invoices / "alpha.json").read_text())["total"] == "3.00"
    assert not (invoices / "beta.json").exists()
    assert {(h.customer_id, h.reason) for h in summary.held} == {("beta", UNPRICED_COST)}
    assert "gpt-9-preview" in summary.money_at_risk_message
