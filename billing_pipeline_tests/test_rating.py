"""Rating rules, each with an amount computed by hand (the catalog and usage rows: support/rating.py)."""

from __future__ import annotations

import copy
import datetime as dt
import json
from decimal import Decimal

import polars as pl
import pytest

from billing_pipeline.catalog import CatalogError, parse_catalog
from billing_pipeline.catalog.model import Charge
from billing_pipeline.rating import price_quantity, rate_month
from billing_pipeline_tests.support.rating import CATALOG, lines_of, usage

TIERS = [{"up_to": 10_000_000, "unit_price": "0.010"}, {"up_to": None, "unit_price": "0.008"}]


def charge(**fields) -> Charge:
    return Charge.model_validate({"id": "c", "meter": "output_tokens", "unit_size": 1000, **fields})


def test_per_unit_prices_fractional_units_exactly():
    priced = price_quantity(charge(unit_price="0.04"), 10_500, "USD", "input tokens")
    assert priced.amount == Decimal("0.42")
    assert "10,500 input tokens at $0.04 per 1K = $0.42" in priced.explanation


def test_graduated_prices_each_tier_only_for_the_units_inside_it():
    priced = price_quantity(
        charge(pricing="graduated", tiers=TIERS), 12_500_000, "USD", "output tokens of gpt-4o"
    )
    assert priced.amount == Decimal("120")
    assert [(t.quantity, t.amount) for t in priced.tiers] == [
        (10_000_000, Decimal("100")),
        (2_500_000, Decimal("20")),
    ]
    assert priced.explanation == (
        "12,500,000 output tokens of gpt-4o: first 10,000,000 at $0.010 per 1K = $100.00; "
        "next 2,500,000 at $0.008 per 1K = $20.00"
    )


def test_graduated_quantity_exactly_at_a_tier_edge_stays_in_that_tier():
    priced = price_quantity(charge(pricing="graduated", tiers=TIERS), 10_000_000, "USD", "tokens")
    assert len(priced.tiers) == 1 and priced.amount == Decimal("100")
    one_more = price_quantity(charge(pricing="graduated", tiers=TIERS), 10_001_000, "USD", "tokens")
    assert one_more.amount == Decimal("100.008")


def test_volume_prices_every_unit_at_the_reached_tier():
    tiers = [
        {"up_to": 1_000_000, "unit_price": "0.05"},
        {"up_to": None, "unit_price": "0.03", "flat_fee": "10"},
    ]
    at_edge = price_quantity(charge(pricing="volume", tiers=tiers), 1_000_000, "USD", "tokens")
    above = price_quantity(charge(pricing="volume", tiers=tiers), 1_000_001, "USD", "tokens")
    assert at_edge.amount == Decimal("50")
    assert above.amount == Decimal("1000001") / 1000 * Decimal("0.03") + 10


def test_package_rounds_up_to_whole_packages():
    c = Charge.model_validate(
        {
            "id": "p",
            "meter": "requests",
            "pricing": "package",
            "package_size": 1000,
            "package_price": "2.00",
        }
    )
    assert price_quantity(c, 2_345, "USD", "requests").amount == Decimal("6.00")
    assert price_quantity(c, 0, "USD", "requests").amount == Decimal("0")


def test_input_and_output_tokens_are_priced_separately_per_model_and_snapshots_price_as_their_family():
    rated = rate_month(
        usage(
            [
                ("acme", "gpt-4o-2024-08-06", "input_tokens", 1_000_000, 3, 0),
                ("acme", "gpt-4o", "output_tokens", 200_000, 4, 0),
            ]
        ),
        parse_catalog(CATALOG),
        "2026-10",
    )
    lines = lines_of(rated, "acme")
    assert lines["gpt4o-in"]["amount"] == "2.50"
    assert lines["gpt4o-out"]["amount"] == "2.00"
    assert lines["gpt4o-in"]["model"] == "gpt-4o"


def test_usage_of_a_model_the_plan_does_not_price_is_reported_not_billed():
    rated = rate_month(
        usage([("acme", "claude-sonnet-4-5", "input_tokens", 5_000, 3, 0)]),
        parse_catalog(CATALOG),
        "2026-10",
    )
    assert rated.lines.filter(pl.col("customer_id") == "acme").height == 0
    assert rated.unrated.row(0, named=True)["reason"] == "no_charge_in_plan"
    assert rated.unrated["quantity"].sum() == 5_000


def test_hybrid_plan_prorates_base_fee_consumes_allowance_in_time_order_and_trues_up_to_the_commitment():
    # Subscribed from Oct 16: 16 of 31 days. 1.5 M tokens, the first 1 M of them included.
    rated = rate_month(
        usage(
            [
                ("initech", "gpt-4o", "output_tokens", 600_000, 17, 1),
                ("initech", "gpt-4o", "input_tokens", 900_000, 17, 0),
            ]
        ),
        parse_catalog(CATALOG),
        "2026-10",
    )
    lines = lines_of(rated, "initech")
    assert lines["base_fee"]["amount"] == "258.06"  # 500 x 16 / 31 = 258.0645...
    assert lines["tokens"]["included_quantity"] == 1_000_000
    assert lines["tokens"]["quantity"] == 500_000
    assert lines["tokens"]["amount"] == "25.00"  # 500,000 in tier 1 at 0.05 per 1K
    assert lines["minimum_commitment"]["amount"] == "975.00"  # 1000 - 25 usage
    assert json.loads(lines["tokens"]["components"]) == [
        {"provider": "openai", "model": "gpt-4o", "quantity": 1_500_000}
    ]


def test_rating_does_not_depend_on_row_order_or_on_splitting_rows():
    rows = [
        ("acme", "gpt-4o", "input_tokens", 333_333, 3, 0),
        ("acme", "gpt-4o", "output_tokens", 777_777, 5, 0),
    ]
    split = [
        ("acme", "gpt-4o", "input_tokens", 111_111, 3, 0),
        ("acme", "gpt-4o", "input_tokens", 222_222, 3, 1),
        ("acme", "gpt-4o", "output_tokens", 777_777, 5, 0),
    ]
    catalog = parse_catalog(CATALOG)
    a = rate_month(usage(rows), catalog, "2026-10").lines
    b = rate_month(usage(list(reversed(rows))), catalog, "2026-10").lines
    c = rate_month(usage(split), catalog, "2026-10").lines
    assert a["amount"].to_list() == b["amount"].to_list() == c["amount"].to_list()


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {
                "plans": {
                    "payg": {
                        "name": "P",
                        "charges": [{"id": "x", "meter": "input_tokens", "unit_price": 0.5}],
                    }
                }
            },
            "plans.payg.charges[0].unit_price: a float where a decimal string is required",
        ),
        (
            {
                "plans": {
                    "payg": {
                        "name": "P",
                        "charges": [{"id": "x", "meter": "tokens", "unit_price": "1"}],
                    }
                }
            },
            "plans.payg.charges[0].meter: unknown meter 'tokens'",
        ),
        (
            {
                "plans": {
                    "payg": {
                        "name": "P",
                        "charges": [
                            {
                                "id": "a",
                                "meter": "input_tokens",
                                "models": ["gpt-4o*"],
                                "unit_price": "1",
                            },
                            {
                                "id": "b",
                                "meter": "input_tokens",
                                "models": ["gpt-4o-mini"],
                                "unit_price": "1",
                            },
                        ],
                    }
                }
            },
            "plans.payg: charges 'a' and 'b' both claim the same usage",
        ),
        (
            {
                "plans": {
                    "payg": {
                        "name": "P",
                        "charges": [
                            {
                                "id": "a",
                                "meter": "input_tokens",
                                "pricing": "graduated",
                                "tiers": [
                                    {"up_to": 10, "unit_price": "1"},
                                    {"up_to": 5, "unit_price": "1"},
                                    {"up_to": None, "unit_price": "1"},
                                ],
                            }
                        ],
                    }
                }
            },
            "plans.payg.charges[0].tiers[1].up_to: tiers out of order",
        ),
    ],
)
def test_catalog_errors_name_the_file_the_path_and_the_problem(patch, message):
    document = {**CATALOG, **patch, "customers": {}}
    with pytest.raises(CatalogError) as err:
        parse_catalog(document, "catalog.yaml")
    assert f"catalog.yaml: {message}" in str(err.value)


def test_a_subscription_to_an_unknown_plan_is_refused():
    document = {
        **CATALOG,
        "customers": {
            "acme": {"name": "A", "subscriptions": [{"plan": "gold", "from": "2026-01-01"}]}
        },
    }
    with pytest.raises(
        CatalogError,
        match=r"^catalog.yaml: customers.acme.subscriptions\[0\].plan: unknown plan 'gold'",
    ):
        parse_catalog(document, "catalog.yaml")


ALLOWANCE_CATALOG = {
    "issuer": {"name": "Example AI GmbH"},
    "plans": {
        "hybrid": {
            "name": "Hybrid",
            "allowance": {"quantity": 1_000_000, "meters": ["input_tokens", "output_tokens"]},
            "charges": [
                {
                    "id": "in-4o",
                    "meter": "input_tokens",
                    "models": ["gpt-4o"],
                    "unit_size": 1000,
                    "unit_price": "0.0025",
                },
                {
                    "id": "in-mini",
                    "meter": "input_tokens",
                    "models": ["gpt-4o-mini"],
                    "unit_size": 1000,
                    "unit_price": "0.00015",
                },
                {"id": "out", "meter": "output_tokens", "unit_size": 1000, "unit_price": "0.010"},
            ],
        }
    },
    "customers": {
        f"c{i}": {"name": f"C{i}", "subscriptions": [{"plan": "hybrid", "from": "2026-01-01"}]}
        for i in range(4)
    },
}


def included_by_hand(rows: list[tuple]) -> dict[tuple[str, str], int]:
    """The allowance consumed event by event in time order (ties by event id), the plain way."""
    events = sorted(
        enumerate(rows), key=lambda e: (dt.datetime(2026, 10, e[1][4], e[1][5]), f"e{e[0]}")
    )
    left = {c: 1_000_000 for c in ALLOWANCE_CATALOG["customers"]}
    included: dict[tuple[str, str], int] = {}
    for _, (customer, model, meter, quantity, _day, _hour) in events:
        take = min(quantity, left[customer])
        left[customer] -= take
        charge = (
            "out"
            if meter == "output_tokens"
            else ("in-mini" if model == "gpt-4o-mini" else "in-4o")
        )
        key = (customer, charge if charge != "out" else f"out:{model}")
        included[key] = included.get(key, 0) + take
    return included


def test_allowance_is_consumed_in_time_order_across_days_meters_and_models():
    """Whole days inside or past the allowance settle from daily totals; the day a customer crosses
    it is consumed event by event (same hour: by event id). Checked against a plain loop."""
    import random

    rng = random.Random(11)
    rows = [
        (
            f"c{rng.randrange(4)}",
            rng.choice(["gpt-4o", "gpt-4o-mini"]),
            rng.choice(["input_tokens", "output_tokens"]),
            rng.randrange(1, 60_000),
            rng.randrange(1, 32),
            rng.choice([0, 0, 5, 23]),
        )
        for _ in range(600)
    ]
    rated = rate_month(usage(rows), parse_catalog(ALLOWANCE_CATALOG), "2026-10")
    got = {
        (r["customer_id"], r["charge_id"] if r["charge_id"] != "out" else f"out:{r['model']}"): r[
            "included_quantity"
        ]
        for r in rated.lines.iter_rows(named=True)
    }
    expected = included_by_hand(rows)
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}
    assert (
        sum(expected.values()) == 4_000_000
    )  # every customer used more than its allowance: crossings happened


def test_rating_without_the_chart_days_gives_the_same_lines():
    """daily=False skips only the per-day quantities the invoice chart reads."""
    rows = [
        ("acme", "gpt-4o", "input_tokens", 333_333, 3, 0),
        ("acme", "gpt-4o", "output_tokens", 777_777, 5, 0),
        ("initech", "gpt-4o", "output_tokens", 600_000, 17, 1),
        ("initech", "gpt-4o", "input_tokens", 900_000, 9, 0),
        ("initech", "gpt-4o", "input_tokens", 900_000, 20, 0),
    ]
    catalog = parse_catalog(CATALOG)
    with_days = rate_month(usage(rows), catalog, "2026-10")
    without = rate_month(usage(rows), catalog, "2026-10", daily=False)
    assert without.lines.drop("daily").equals(with_days.lines.drop("daily"))
    assert without.unrated.equals(with_days.unrated)
    assert set(without.lines["daily"]) == {"[]"}
    assert with_days.lines.filter(pl.col("customer_id") == "acme")["daily"].to_list() == [
        '[{"day":"2026-10-03","model":"gpt-4o","quantity":333333}]',
        '[{"day":"2026-10-05","model":"gpt-4o","quantity":777777}]',
    ]


def test_a_lazy_source_is_summed_in_slices_to_the_same_lines(monkeypatch):
    """A Parquet scan is grouped slice by slice (bounded memory); the sums of the slices' sums
    give the same invoice lines as grouping the whole month at once."""
    from billing_pipeline.rating import assign

    rows = [
        (c, m, meter, q, d, h)
        for c in ("acme", "initech")
        for m in ("gpt-4o", "gpt-4o-2024-08-06")
        for meter in ("input_tokens", "output_tokens")
        for q, d, h in ((120_000, 3, 0), (450_000, 17, 2), (7, 20, 5))
    ]
    catalog = parse_catalog(CATALOG)
    whole = rate_month(usage(rows), catalog, "2026-10")
    monkeypatch.setattr(assign, "CHUNK_ROWS", 5)  # 24 events in 5 slices
    sliced = rate_month(usage(rows).lazy(), catalog, "2026-10")
    assert sliced.lines.equals(whole.lines) and sliced.unrated.equals(whole.unrated)
    assert whole.lines.filter(pl.col("included_quantity") > 0).height  # the allowance path ran too


@pytest.mark.parametrize("currency", ["USD", "EUR", "JPY", "BHD"])
def test_line_words_written_by_polars_read_like_the_python_ones(currency):
    """The per-unit explanations are built as polars expressions; their numbers must print exactly
    as money.fmt_quantity / fmt_money and str(Decimal) print them (signs, separators, minor units)."""
    from billing_pipeline.money import (
        MINOR_UNITS,
        amount_text_expr,
        fmt_int_expr,
        fmt_money,
        fmt_quantity,
        money_text_expr,
    )

    values = [
        0,
        1,
        -1,
        5,
        999,
        1000,
        -1000,
        123456,
        1_000_000,
        -9_876_543_210,
        10**18,
        -(10**18),
        2**63 - 1,
    ]
    minor = MINOR_UNITS.get(currency, 2)
    frame = pl.DataFrame(
        {
            "v": values,
            "currency": [currency] * len(values),
            "minor": [minor] * len(values),
            "pow10": [10**minor] * len(values),
        },
        schema_overrides={"v": pl.Int64},
    )
    out = frame.select(
        fmt_int_expr(pl.col("v")).alias("q"),
        amount_text_expr(pl.col("v")).alias("a"),
        money_text_expr(pl.col("v")).alias("m"),
    )
    assert out["q"].to_list() == [fmt_quantity(v) for v in values]
    assert out["a"].to_list() == [str(Decimal(v).scaleb(-minor)) for v in values]
    assert out["m"].to_list() == [fmt_money(Decimal(v).scaleb(-minor), currency) for v in values]


def test_usage_of_a_model_no_provider_claims_is_billed_under_no_provider_never_dropped_from_the_list():
    # The gateway named no provider for mystery-1 and no prefix claims it (providers.py): its
    # tokens are billed, and the line lists its provider as "" (the invoice's "Other providers"),
    # so a tiered line over it and gpt-4o reads "+openai", not "openai" alone.
    doc = copy.deepcopy(CATALOG)
    doc["plans"]["payg"]["charges"] = [
        {
            "id": "out",
            "meter": "output_tokens",
            "unit_size": 1000,
            "pricing": "graduated",
            "tiers": [{"up_to": None, "unit_price": "0.010"}],
        }
    ]
    rows = [("acme", "mystery-1", "output_tokens", 100_000, 3, 0)]
    alone = usage(rows).with_columns(pl.lit(None, dtype=pl.String).alias("provider"))
    both = pl.concat([alone, usage([("acme", "gpt-4o", "output_tokens", 100_000, 4, 0)])])
    for events, provider, amount in [(alone, "", "1.00"), (both, "+openai", "2.00")]:
        line = lines_of(rate_month(events, parse_catalog(doc), "2026-10"), "acme")["out"]
        assert (line["provider"], line["amount"]) == (provider, amount)  # 100,000 tokens = $1.00
