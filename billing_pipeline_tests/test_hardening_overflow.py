"""Overflow never bills less (issue 16, item 1).

Quantities are int64 per event, but a month sums many events: rating sums them in 128-bit
integers, and a customer whose month does not fit int64 is not rated at all. Its usage comes back
in ``RatedMonth.at_risk`` (reason ``quantity_overflow``) to be held; every other customer of the
month is rated as if it were not there. Each record below is under 2^62 (a per-record ceiling
cannot catch this): their sum passes 2^63.
"""

from __future__ import annotations

import copy
from decimal import Decimal

import polars as pl
import pytest
import yaml
from click.testing import CliRunner

from billing_pipeline.catalog import parse_catalog
from billing_pipeline.cli import main
from billing_pipeline.quote.quote import QuoteError, parse_usage
from billing_pipeline.rating import rate_month
from billing_pipeline.rating.assign import AT_RISK_SCHEMA
from billing_pipeline.rating.vectorized import quantity_sum_type
from billing_pipeline_tests.support.rating import CATALOG, lines_of, usage

HALF = 2**62 - 1  # 4,611,686,018,427,387,903 < 2^62; two of them = 2^63 - 2 (fits), three do not
I64_MAX = 2**63 - 1


def catalog_with_beta():
    """CATALOG plus a pay-as-you-go customer 'beta' whose usage is ordinary."""
    doc = copy.deepcopy(CATALOG)
    doc["customers"]["beta"] = {
        "name": "Beta",
        "subscriptions": [{"plan": "payg", "from": "2026-01-01"}],
        "keys": ["openai:proj_b"],
    }
    return parse_catalog(doc)


def test_pay_as_you_go_sum_past_int64_holds_that_customer_and_rates_the_others():
    events = usage(
        [
            ("acme", "gpt-4o", "input_tokens", HALF, 3, 0),
            ("acme", "gpt-4o", "input_tokens", HALF, 4, 0),
            ("acme", "gpt-4o", "input_tokens", HALF, 5, 0),
            ("beta", "gpt-4o", "input_tokens", 1_000_000, 3, 0),
        ]
    )
    rated = rate_month(events, catalog_with_beta(), "2026-10")
    # beta: 1,000,000 input tokens at $0.0025 per 1K = 1,000 x 0.0025 = $2.50
    assert lines_of(rated, "beta")["gpt4o-in"]["amount"] == "2.50"
    assert lines_of(rated, "acme") == {}  # no line: neither a wrapped nor a smaller amount
    assert rated.at_risk.schema == pl.Schema(AT_RISK_SCHEMA)
    row = rated.at_risk.to_dicts()
    assert len(row) == 1
    assert (
        row[0]["customer_id"],
        row[0]["meter"],
        row[0]["model"],
        row[0]["reason"],
        row[0]["events"],
    ) == ("acme", "input_tokens", "gpt-4o", "quantity_overflow", 3)
    # 3 x (2^62 - 1) = 13,835,058,055,282,163,709: the exact sum, not wrapped
    assert row[0]["quantity"] == 13_835_058_055_282_163_709
    assert "customer acme" in row[0]["detail"] and "input_tokens of gpt-4o" in row[0]["detail"]


def test_two_meters_whose_sum_passes_int64_through_a_shared_allowance_hold_the_customer():
    """The enterprise plan's allowance and its volume charge sum input and output tokens
    together: 2 x (2^62 - 1) input + (2^62 - 1) output pass 2^63 only across meters."""
    events = usage(
        [
            ("initech", "gpt-4o", "input_tokens", HALF, 20, 0),
            ("initech", "gpt-4o", "input_tokens", HALF, 21, 0),
            ("initech", "gpt-4o", "output_tokens", HALF, 22, 0),
            ("acme", "gpt-4o", "output_tokens", 200_000, 3, 0),
        ]
    )
    rated = rate_month(events, parse_catalog(CATALOG), "2026-10")
    # acme: 200,000 output tokens at $0.010 per 1K = 200 x 0.010 = $2.00
    assert lines_of(rated, "acme")["gpt4o-out"]["amount"] == "2.00"
    assert lines_of(rated, "initech") == {}  # not even its base fee: the whole invoice is held
    assert sorted(rated.at_risk.select("customer_id", "meter", "reason").rows()) == [
        ("initech", "input_tokens", "quantity_overflow"),
        ("initech", "output_tokens", "quantity_overflow"),
    ]
    # input: 2 x (2^62 - 1) = 9,223,372,036,854,775,806; output: 2^62 - 1
    assert dict(rated.at_risk.select("meter", "quantity").rows()) == {
        "input_tokens": 9_223_372_036_854_775_806,
        "output_tokens": 4_611_686_018_427_387_903,
    }


def test_a_month_that_fits_exactly_is_rated_not_held():
    """2 x (2^62 - 1) = 2^63 - 2 fits int64: priced in full, nothing at risk."""
    events = usage(
        [
            ("acme", "gpt-4o", "input_tokens", HALF, 3, 0),
            ("acme", "gpt-4o", "input_tokens", HALF, 4, 0),
        ]
    )
    rated = rate_month(events, parse_catalog(CATALOG), "2026-10")
    assert rated.at_risk.height == 0
    line = lines_of(rated, "acme")["gpt4o-in"]
    assert line["quantity"] == 9_223_372_036_854_775_806
    # 9,223,372,036,854,775,806 / 1000 x 0.0025 = 23,058,430,092,136.939515 -> $23,058,430,092,136.94
    assert line["amount"] == "23058430092136.94"


def test_held_customers_are_the_same_with_and_without_daily_quantities():
    events = usage(
        [("acme", "gpt-4o", "input_tokens", HALF, d, 0) for d in (3, 4, 5)]
        + [("beta", "gpt-4o", "input_tokens", 1_000, 3, 0)]
    )
    with_days = rate_month(events, catalog_with_beta(), "2026-10")
    without = rate_month(events, catalog_with_beta(), "2026-10", daily=False)
    assert with_days.at_risk.equals(without.at_risk)
    assert with_days.lines.drop("daily").equals(without.lines.drop("daily"))


def test_a_line_amount_past_int64_minor_units_holds_the_customer():
    """A quantity that fits, at a price of millions per unit: 2^62 - 1 units at 5,000,000.00 each
    = 2.3e25 USD = 2.3e27 cents, past 2^63 - 1 (9.2e18) minor units."""
    doc = copy.deepcopy(CATALOG)
    doc["plans"]["payg"]["charges"][0].update(unit_size=1, unit_price="5000000.00")
    events = usage([("acme", "gpt-4o", "input_tokens", HALF, 3, 0)])
    rated = rate_month(events, parse_catalog(doc), "2026-10")
    assert lines_of(rated, "acme") == {}
    assert rated.at_risk.select("customer_id", "reason").rows() == [("acme", "amount_overflow")]


def test_quote_refuses_an_overflowing_sum_with_exit_2_and_one_line_naming_the_meter(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
    result = CliRunner().invoke(
        main,
        [
            "quote",
            "--catalog",
            str(path),
            "--plan",
            "payg",
            "--month",
            "2026-10",
            *[a for _ in range(3) for a in ("--usage", f"input_tokens:gpt-4o={HALF}")],
        ],
    )
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    message = result.output.strip()
    assert len(message.splitlines()) == 1 and "input_tokens" in message and "$0.00" not in message


def test_quote_refuses_a_single_quantity_past_int64():
    with pytest.raises(QuoteError, match="input_tokens"):
        parse_usage(f"input_tokens:gpt-4o={I64_MAX + 1}")


def test_a_lazy_source_summed_in_slices_holds_the_same_customer(monkeypatch):
    """Slice sums are folded in 128 bits too: three events of 2^62 - 1 in three slices."""
    from billing_pipeline.rating import assign

    events = usage(
        [("acme", "gpt-4o", "input_tokens", HALF, d, 0) for d in (3, 4, 5)]
        + [("beta", "gpt-4o", "input_tokens", 1_000, d, 0) for d in (3, 4, 5)]
    )
    whole = rate_month(events, catalog_with_beta(), "2026-10")
    monkeypatch.setattr(assign, "CHUNK_ROWS", 1)  # 6 events: folded one by one (2 with daily sums)
    sliced = rate_month(events.lazy(), catalog_with_beta(), "2026-10")
    assert sliced.at_risk.equals(whole.at_risk) and sliced.lines.equals(whole.lines)
    # 3 x (2^62 - 1) = 13,835,058,055,282,163,709
    assert sliced.at_risk.select("customer_id", "quantity").rows() == [
        ("acme", 13_835_058_055_282_163_709)
    ]


def test_price_quantity_refuses_a_quantity_past_int64_naming_the_charge():
    from billing_pipeline.catalog.model import Charge
    from billing_pipeline.rating import price_quantity
    from billing_pipeline.rating.vectorized import RatingError

    c = Charge.model_validate({"id": "gpt4o-in", "meter": "input_tokens", "unit_price": "0.01"})
    with pytest.raises(RatingError, match="gpt4o-in.*quantity_overflow"):
        price_quantity(
            c, HALF, "USD", "input tokens", before=HALF + 2
        )  # (2^62 - 1) + (2^62 + 1) = 2^63: one past 2^63 - 1


def test_provider_cost_of_a_day_past_64_bits_is_exact_and_fails_nobody_elses_month():
    """Four events of 2^62 tokens each on one day: the cost is computed from the exact sum, the
    quantity shown is null (it does not fit the column), and the other customer is costed."""
    import datetime as dt

    from billing_pipeline.catalog import parse_catalog
    from billing_pipeline.reconcile import provider_cost
    from billing_pipeline.schema import USAGE_SCHEMA, conform

    rows = [
        {
            "event_id": f"e{i}",
            "record_id": f"r{i}",
            "source": "gateway_log",
            "provider": "openai",
            "customer_id": "acme",
            "model": "gpt-4o",
            "model_family": "gpt-4o",
            "meter": "input_tokens",
            "dimensions": "{}",
            "quantity": 2**62,
            "day": dt.date(2026, 10, 5),
            "origin": f"x:{i}",
        }
        for i in range(4)
    ]
    rows.append(
        {
            **rows[0],
            "event_id": "g",
            "record_id": "g",
            "customer_id": "globex",
            "quantity": 1_000_000,
        }
    )
    catalog = parse_catalog(
        {
            "issuer": {"name": "Example AI GmbH"},
            "plans": {},
            "customers": {},
            "price_book": [
                {
                    "provider": "openai",
                    "models": ["gpt-4o"],
                    "meter": "input_tokens",
                    "unit_size": 1_000_000,
                    "unit_price": "2.50",
                    "from": "2026-01-01",
                }
            ],
        }
    )
    costs = provider_cost(conform(pl.DataFrame(rows), USAGE_SCHEMA), catalog)
    by_customer = {r["customer_id"]: r for r in costs.to_dicts()}
    assert by_customer["acme"]["quantity"] is None
    # 4 x 2^62 = 2^64 = 18,446,744,073,709,551,616 tokens x $2.50 / 1M = $46,116,860,184,273.87904
    assert by_customer["acme"]["cost"] == Decimal("46116860184273.879040000000")
    assert (by_customer["globex"]["quantity"], by_customer["globex"]["cost"]) == (
        1_000_000,
        Decimal("2.5"),
    )


@pytest.mark.parametrize(
    ("quantities", "summed_in"),
    [
        ([HALF, HALF], pl.Int64),  # 2^63 - 2: the largest sum two of them can make fits
        ([HALF + 1, HALF + 1], pl.Int128),  # 2^63 would wrap Int64
        ([-(2**63), 0], pl.Int128),  # |int64 min| is not an int64
        ([-HALF, -HALF], pl.Int64),  # and so is the smallest (the sum of |q| too)
        ([], pl.Int64),
    ],
)
def test_events_are_summed_in_int64_only_where_no_sum_of_them_can_wrap(quantities, summed_in):
    frame = pl.DataFrame({"quantity": quantities}, schema={"quantity": pl.Int64})
    assert quantity_sum_type(frame) == (len(quantities), summed_in)
    assert quantity_sum_type(frame.lazy()) == (len(quantities), summed_in)


def test_a_negative_event_holds_the_customer_and_each_held_row_says_whether_it_has_one():
    events = usage(
        [
            ("acme", "gpt-4o", "input_tokens", 1_000, 3, 0),
            ("acme", "gpt-4o", "input_tokens", -400, 4, 0),  # a correction rating cannot price
            ("acme", "gpt-4o", "output_tokens", 2_000, 4, 0),
        ]
    )
    rated = rate_month(events, parse_catalog(CATALOG), "2026-10")
    assert lines_of(rated, "acme") == {}
    held = {r["meter"]: r for r in rated.at_risk.to_dicts()}
    assert {m: (r["reason"], r["quantity"]) for m, r in held.items()} == {
        "input_tokens": ("negative_quantity", 600),  # 1,000 - 400
        "output_tokens": ("negative_quantity", 2_000),
    }
    assert "has events with negative quantities (net 600)" in held["input_tokens"]["detail"]
    assert "has no negative event" in held["output_tokens"]["detail"]
