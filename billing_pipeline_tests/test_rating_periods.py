"""Time in rating: effective-dated prices, proration, plan changes, discounts; amounts by hand."""

from __future__ import annotations

import polars as pl
import pytest

from billing_pipeline.catalog import CatalogError, parse_catalog
from billing_pipeline.rating import rate_month
from billing_pipeline.schema import USAGE_SCHEMA
from billing_pipeline_tests.support.rating import usage


def catalog(plans: dict, customer: dict) -> object:
    return parse_catalog(
        {
            "issuer": {"name": "I"},
            "plans": plans,
            "customers": {"acme": {"name": "Acme", "keys": ["openai:a"], **customer}},
        }
    )


NO_USAGE = pl.DataFrame(schema=USAGE_SCHEMA)
PER_1K = {"id": "out", "meter": "output_tokens", "unit_size": 1000}


def lines(rated) -> list[dict]:
    return rated.lines.sort("position").to_dicts()


def test_a_price_change_on_the_15th_splits_the_month_into_two_lines_by_event_day():
    cat = catalog(
        {
            "p": {
                "name": "P",
                "charges": [
                    {
                        **PER_1K,
                        "unit_price": "0.010",
                        "prices": [{"from": "2026-10-15", "unit_price": "0.008"}],
                    }
                ],
            }
        },
        {"subscriptions": [{"plan": "p", "from": "2026-01-01"}]},
    )
    rated = rate_month(
        usage(
            [
                ("acme", "gpt-4o", "output_tokens", 1_000_000, 14, 23),
                ("acme", "gpt-4o", "output_tokens", 2_000_000, 15, 0),
            ]
        ),
        cat,
        "2026-10",
    )
    got = [
        (ln["description"], ln["quantity"], ln["unit_price"], ln["amount"]) for ln in lines(rated)
    ]
    assert got == [
        ("Out (gpt-4o) (Oct 1-14)", 1_000_000, "0.010", "10.00"),
        ("Out (gpt-4o) (Oct 15-31)", 2_000_000, "0.008", "16.00"),
    ]
    assert lines(rated)[1]["explanation"].startswith(
        "Usage (Oct 15-31) at the prices in effect then: 2,000,000"
    )


def test_a_price_change_before_the_month_applies_to_all_of_it_without_splitting():
    cat = catalog(
        {
            "p": {
                "name": "P",
                "charges": [
                    {
                        **PER_1K,
                        "unit_price": "0.010",
                        "prices": [{"from": "2026-09-01", "unit_price": "0.008"}],
                    }
                ],
            }
        },
        {"subscriptions": [{"plan": "p", "from": "2026-01-01"}]},
    )
    rated = rate_month(
        usage([("acme", "gpt-4o", "output_tokens", 1_000_000, 3, 0)]), cat, "2026-10"
    )
    assert [(ln["description"], ln["amount"]) for ln in lines(rated)] == [("Out (gpt-4o)", "8.00")]


def test_graduated_tiers_continue_across_a_price_change_instead_of_restarting():
    # 8 M before the 15th at the old table, 4 M after at the new one; the tier edge is at 10 M:
    # old: 8,000 K x 0.010 = 80.00; new: 2,000 K x 0.009 + 2,000 K x 0.007 = 18.00 + 14.00 = 32.00
    tiers_old = [
        {"up_to": 10_000_000, "unit_price": "0.010"},
        {"up_to": None, "unit_price": "0.008"},
    ]
    tiers_new = [
        {"up_to": 10_000_000, "unit_price": "0.009"},
        {"up_to": None, "unit_price": "0.007"},
    ]
    cat = catalog(
        {
            "p": {
                "name": "P",
                "charges": [
                    {
                        **PER_1K,
                        "pricing": "graduated",
                        "tiers": tiers_old,
                        "prices": [{"from": "2026-10-15", "tiers": tiers_new}],
                    }
                ],
            }
        },
        {"subscriptions": [{"plan": "p", "from": "2026-01-01"}]},
    )
    rated = rate_month(
        usage(
            [
                ("acme", "gpt-4o", "output_tokens", 8_000_000, 2, 0),
                ("acme", "gpt-4o", "output_tokens", 4_000_000, 20, 0),
            ]
        ),
        cat,
        "2026-10",
    )
    assert [ln["amount"] for ln in lines(rated)] == ["80.00", "32.00"]


def test_a_price_change_must_set_the_price_field_of_the_charges_pricing_model():
    with pytest.raises(
        CatalogError,
        match=r"catalog.yaml: plans.p.charges\[0\].prices\[0\]: a per_unit charge "
        r"changes its unit_price",
    ):
        parse_catalog(
            {
                "issuer": {"name": "I"},
                "customers": {},
                "plans": {
                    "p": {
                        "name": "P",
                        "charges": [
                            {
                                **PER_1K,
                                "unit_price": "1",
                                "prices": [{"from": "2026-10-15", "package_price": "2"}],
                            }
                        ],
                    }
                },
            },
            "catalog.yaml",
        )


def test_zero_usage_bills_the_base_fee_only_and_a_partial_month_is_prorated_by_days():
    cat = catalog(
        {"p": {"name": "Pro", "base_fee": "310.00", "charges": [{**PER_1K, "unit_price": "1"}]}},
        {"subscriptions": [{"plan": "p", "from": "2026-10-11"}]},
    )
    rated = rate_month(NO_USAGE, cat, "2026-10")
    (only,) = lines(rated)
    assert (only["charge_id"], only["amount"]) == ("base_fee", "210.00")  # 310 x 21 / 31
    assert "prorated for 21 of 31 days" in only["explanation"]


def test_a_plan_change_mid_month_bills_each_plan_for_its_own_days_and_usage():
    cat = catalog(
        {
            "basic": {
                "name": "Basic",
                "base_fee": "31.00",
                "charges": [{**PER_1K, "unit_price": "0.010"}],
            },
            "pro": {
                "name": "Pro",
                "base_fee": "310.00",
                "charges": [{**PER_1K, "unit_price": "0.005"}],
            },
        },
        {
            "subscriptions": [
                {"plan": "basic", "from": "2026-01-01", "to": "2026-10-20"},
                {"plan": "pro", "from": "2026-10-21"},
            ]
        },
    )
    rated = rate_month(
        usage(
            [
                ("acme", "gpt-4o", "output_tokens", 1_000_000, 20, 23),
                ("acme", "gpt-4o", "output_tokens", 1_000_000, 21, 0),
            ]
        ),
        cat,
        "2026-10",
    )
    got = [(ln["plan_id"], ln["charge_id"], ln["amount"]) for ln in lines(rated)]
    assert got == [
        ("basic", "base_fee", "20.00"),  # 31 x 20 / 31
        ("basic", "out", "10.00"),
        ("pro", "base_fee", "110.00"),  # 310 x 11 / 31
        ("pro", "out", "5.00"),
    ]
    assert rated.lines["position"].to_list() == [0, 1, 2, 3]


def test_a_percentage_discount_is_its_own_negative_line_on_the_months_charges():
    cat = catalog(
        {"p": {"name": "P", "base_fee": "100.00", "charges": [{**PER_1K, "unit_price": "0.010"}]}},
        {
            "subscriptions": [{"plan": "p", "from": "2026-01-01"}],
            "discounts": [{"percent": "12.5", "from": "2026-10-01", "to": "2026-12-31"}],
        },
    )
    rated = rate_month(
        usage([("acme", "gpt-4o", "output_tokens", 2_345_000, 3, 0)]), cat, "2026-10"
    )
    last = lines(rated)[-1]
    # 100.00 + 23.45 = 123.45; 12.5 % = 15.43125 -> 15.43
    assert (last["charge_id"], last["amount"], last["consideration"]) == (
        "discount_0",
        "-15.43",
        "fixed",
    )
    assert last["explanation"] == "12.5 % discount: 12.5 % of $123.45 = $15.43 off"


def test_a_fixed_discount_never_takes_more_than_is_left_to_pay_and_ends_on_its_to_date():
    cat = catalog(
        {"p": {"name": "P", "base_fee": "30.00", "charges": [{**PER_1K, "unit_price": "0.010"}]}},
        {
            "subscriptions": [{"plan": "p", "from": "2026-01-01"}],
            "discounts": [{"name": "Launch credit", "amount": "50.00", "to": "2026-10-31"}],
        },
    )
    october = lines(rate_month(NO_USAGE, cat, "2026-10"))
    assert [(ln["charge_id"], ln["amount"]) for ln in october] == [
        ("base_fee", "30.00"),
        ("discount_0", "-30.00"),
    ]
    assert "limited to the $30.00 left to pay" in october[-1]["explanation"]
    nov = rate_month(NO_USAGE, cat, "2026-11").lines
    assert nov.filter(pl.col("charge_id").str.starts_with("discount")).height == 0


@pytest.mark.parametrize(
    ("discount", "message"),
    [
        ({"percent": "10", "amount": "5"}, "a discount has either percent or amount"),
        ({"percent": "150"}, "percent must be above 0 and at most 100"),
        ({"amount": 5.0}, "amount: a float where a decimal string is required"),
    ],
)
def test_bad_discounts_are_refused_with_their_path(discount, message):
    with pytest.raises(CatalogError, match=r"catalog.yaml: customers.acme.discounts\[0\]"):
        parse_catalog(
            {
                "issuer": {"name": "I"},
                "plans": {"p": {"name": "P"}},
                "customers": {
                    "acme": {
                        "name": "A",
                        "subscriptions": [{"plan": "p", "from": "2026-01-01"}],
                        "discounts": [discount],
                    }
                },
            },
            "catalog.yaml",
        )
    with pytest.raises(CatalogError, match=message):
        parse_catalog(
            {
                "issuer": {"name": "I"},
                "plans": {"p": {"name": "P"}},
                "customers": {
                    "acme": {
                        "name": "A",
                        "subscriptions": [{"plan": "p", "from": "2026-01-01"}],
                        "discounts": [discount],
                    }
                },
            },
            "catalog.yaml",
        )
