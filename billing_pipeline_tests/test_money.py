"""Money rules: one rounding (half up, ties away from zero) to the currency's minor unit, and the
ways an amount is written, for negative amounts, zero-decimal currencies, ties and huge values."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import polars as pl
import pytest

from billing_pipeline.money import (
    amount_text,
    decimal_sum,
    fmt_exact_money,
    fmt_money,
    fmt_number,
    fmt_price,
    fmt_quantity,
    fmt_unit_price,
    minor_places,
    minor_units_text,
    percent,
    round_div_expr,
    round_money,
    round_to,
    round_units,
    truncate_div_expr,
    truncate_money,
)

D = Decimal
HUGE = D("123456789012345678901234567890.125")  # 33 digits: more than Decimal's default 28


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        ("0.005", "USD", "0.01"),  # a tie goes up ...
        ("-0.005", "USD", "-0.01"),  # ... and away from zero when negative
        ("0.015", "USD", "0.02"),  # not to the even cent (half-even would give 0.02 and 0.00)
        ("0.025", "USD", "0.03"),
        ("0.0049999", "USD", "0.00"),
        ("2.5", "JPY", "3"),  # no minor unit: whole yen
        ("-2.5", "JPY", "-3"),
        ("1.0005", "KWD", "1.001"),  # three decimals
        ("1.5", "eur", "1.50"),  # the code's case does not matter
        (str(HUGE), "USD", "123456789012345678901234567890.13"),
    ],
)
def test_round_money_rounds_half_up_to_the_minor_unit(amount, currency, rounded):
    assert str(round_money(D(amount), currency)) == rounded


@pytest.mark.parametrize(
    ("amount", "currency", "cut"),
    [
        ("0.019", "USD", "0.01"),
        ("-0.019", "USD", "-0.01"),  # toward zero, never away
        ("2.99", "JPY", "2"),
        (str(HUGE), "USD", "123456789012345678901234567890.12"),
    ],
)
def test_truncate_money_keeps_only_what_is_surely_there(amount, currency, cut):
    assert str(truncate_money(D(amount), currency)) == cut


def test_minor_places_follow_iso_4217_and_default_to_two():
    assert [minor_places(c) for c in ("USD", "jpy", "KWD", "XYZ")] == [2, 0, 3, 2]


@pytest.mark.parametrize(
    ("value", "places", "rounded"),
    [("2.45", 1, "2.5"), ("-2.45", 1, "-2.5"), ("2.5", 0, "3"), ("0.5E-12", 12, "1E-12")],
)
def test_round_to_uses_the_same_rule_for_what_is_not_money(value, places, rounded):
    assert round_to(D(value), places) == D(rounded)
    assert round_to(D(value), places).as_tuple().exponent == -places


def test_round_units_rounds_half_up_to_whole_units():
    assert [round_units(D(v)) for v in ("0.5", "1.5", "2.5", "-0.5", "0.4999")] == [1, 2, 3, -1, 0]


def test_round_units_refuses_what_is_not_a_finite_number_of_caller_precision():
    with pytest.raises(InvalidOperation):
        round_units(D("Infinity"))
    with pytest.raises(InvalidOperation):  # more digits than the 28 of the default context
        round_units(D("1E+30"))


def test_percent_is_to_a_tenth_half_up():
    assert percent(D("1.2345"), D(10)) == D("12.3")
    assert percent(D("1.225"), D(10)) == D("12.3")  # the tie 12.25 goes up
    assert percent(D(1), D(3), places=0) == D(33)
    assert percent(D(-1), D(8)) == D("-12.5")
    assert str(percent(D(0), D(7))) == "0.0"


def test_round_div_expr_is_the_same_rule_in_integers():
    """Every numerator in -40..40 over every denominator 1..8: equal to Decimal's half up, in the
    numerator's own integer type (Int128 in rating, Int64 in the statement projection)."""
    pairs = [(n, d) for n in range(-40, 41) for d in range(1, 9)]
    frame = pl.DataFrame(
        {"n": [n for n, _ in pairs], "d": [d for _, d in pairs]},
        schema={"n": pl.Int64, "d": pl.Int64},
    )
    out = frame.select(
        by_column=round_div_expr(pl.col("n"), pl.col("d")),
        in_int128=round_div_expr(pl.col("n").cast(pl.Int128), pl.col("d").cast(pl.Int128)),
    )
    expected = [round_units(D(n) / D(d)) for n, d in pairs]
    assert out["by_column"].to_list() == expected
    assert out["in_int128"].to_list() == expected
    assert out.schema == {"by_column": pl.Int64, "in_int128": pl.Int128}
    by_int = frame.select(round_div_expr(pl.col("n"), 4)).to_series().to_list()
    assert by_int == [round_units(D(n) / 4) for n, _ in pairs]


def test_round_div_expr_exact_beyond_int64():
    big = 10**30 + 5  # 10^30 + 5 over 10: a tie far beyond any float or int64
    frame = pl.DataFrame({"n": [big, -big]}, schema={"n": pl.Int128})
    assert frame.select(round_div_expr(pl.col("n"), 10)).to_series().to_list() == [
        10**29 + 1,
        -(10**29 + 1),
    ]


def test_truncate_div_expr_is_truncate_money_in_minor_units():
    """Every numerator in -40..40 cents over every denominator 1..8: the cents truncate_money keeps
    (toward zero, so -0.019 -> -0.01), in Int64 and Int128 alike."""
    pairs = [(n, d) for n in range(-40, 41) for d in range(1, 9)]
    frame = pl.DataFrame({"n": [n for n, _ in pairs], "d": [d for _, d in pairs]})
    out = frame.select(
        in_int64=truncate_div_expr(pl.col("n"), pl.col("d")),
        in_int128=truncate_div_expr(pl.col("n").cast(pl.Int128), pl.col("d").cast(pl.Int128)),
    )
    expected = [int(truncate_money(D(n) / D(d) / 100, "USD") * 100) for n, d in pairs]
    assert out["in_int64"].to_list() == expected
    assert out["in_int128"].to_list() == expected


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("1234.505", "USD", "1234.51"),
        ("-0.005", "USD", "-0.01"),
        ("1234.5", "JPY", "1235"),
        ("0", "USD", "0.00"),
        ("0", "JPY", "0"),
        (str(HUGE), "USD", "123456789012345678901234567890.13"),
    ],
)
def test_amount_text_is_a_plain_decimal_at_the_minor_unit(amount, currency, text):
    assert amount_text(D(amount), currency) == text


@pytest.mark.parametrize(
    ("units", "currency", "text"),
    [
        (123451, "USD", "1234.51"),
        (-1, "USD", "-0.01"),
        (0, "USD", "0.00"),
        (5, "USD", "0.05"),
        (1235, "JPY", "1235"),
        (0, "JPY", "0"),
        (-1234567, "KWD", "-1234.567"),
    ],
)
def test_an_amount_in_minor_units_is_written_as_amount_text_writes_it(units, currency, text):
    assert minor_units_text(units, currency) == text
    assert text == amount_text(D(units).scaleb(-minor_places(currency)), currency)


def test_lossless_amount_text_keeps_digits_the_minor_unit_would_round_away():
    assert amount_text(D("12.345600"), "USD", lossless=True) == "12.3456"
    assert amount_text(D("12.300000"), "USD", lossless=True) == "12.30"
    assert amount_text(D("12.5"), "JPY", lossless=True) == "12.5"
    assert amount_text(D("12.000000"), "JPY", lossless=True) == "12"


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("1234.5", "USD", "$1,234.50"),
        ("-1234.5", "USD", "-$1,234.50"),  # the sign before the symbol
        ("-0.005", "USD", "-$0.01"),
        ("0.005", "EUR", "0.01 EUR"),
        ("-1234.5", "eur", "-1,234.50 EUR"),
        ("1234567.5", "JPY", "1,234,568 JPY"),
        ("1.0005", "KWD", "1.001 KWD"),
        (str(HUGE), "USD", "$123,456,789,012,345,678,901,234,567,890.13"),
    ],
)
def test_fmt_money_rounds_then_groups_and_places_the_currency(amount, currency, text):
    assert fmt_money(D(amount), currency) == text


def test_fmt_money_with_more_places_prints_the_amount_exactly():
    assert fmt_money(D("0.0025"), "USD", places=4) == "$0.0025"
    assert fmt_money(D("0.0075"), "USD", places=2) == "$0.01"  # not more than the minor unit
    assert fmt_money(D("5"), "JPY", places=2) == "5.00 JPY"


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("1234.5625", "USD", "$1,234.5625"),  # every decimal, never rounded
        ("-0.0001", "USD", "-$0.0001"),
        ("12.5", "USD", "$12.50"),  # at least two
        ("1E+3", "USD", "$1,000.00"),
        ("1234", "JPY", "1,234.00 JPY"),
        ("1.5", "KWD", "1.50 KWD"),
        (
            "123456789012345678901234567890.000000001",
            "EUR",
            "123,456,789,012,345,678,901,234,567,890.000000001 EUR",
        ),
    ],
)
def test_fmt_exact_money_shows_every_decimal(amount, currency, text):
    assert fmt_exact_money(D(amount), currency) == text


def test_unit_prices_keep_the_catalogs_digits_and_are_not_grouped():
    assert fmt_unit_price(D("0.0025"), "USD") == "$0.0025"
    assert fmt_unit_price(D("0.010"), "usd") == "$0.010"
    assert fmt_unit_price(D("1500"), "EUR") == "1500.00 EUR"
    assert fmt_unit_price(D("-0.5"), "USD") == "-$0.50"
    assert [fmt_price(D(v)) for v in ("4.5", "0.0025", "7", "1E+2")] == [
        "4.50",
        "0.0025",
        "7.00",
        "100.00",
    ]


def test_fmt_number_rounds_half_up_and_groups_without_a_currency():
    assert fmt_number(D("1234.125"), 2) == "1,234.13"
    assert fmt_number(D("-1234.125"), 2) == "-1,234.13"
    assert fmt_number(D("0"), 2) == "0.00"


def test_quantities_are_grouped_whole_numbers():
    assert fmt_quantity(1234567) == "1,234,567"
    assert fmt_quantity(-1000) == "-1,000"
    assert fmt_quantity(2**63 - 1) == "9,223,372,036,854,775,807"


@pytest.mark.parametrize(
    "amounts, total",
    [
        (["0.000000000001", "2.5", None, "-1.000000000001"], "1.500000000000"),
        ([], "0"),
        ([None], "0"),
        # past what the column's 128-bit sum holds (38 digits): added one by one, still exact
        (
            ["99999999999999999999999999.5", "99999999999999999999999999.5"],
            "199999999999999999999999999.000000000000",
        ),
    ],
)
def test_a_decimal_columns_sum_is_exact_whether_polars_or_python_adds_it(amounts, total):
    """Provider cost is summed per month for the reconciliation's checks, 3 M rows: polars adds
    them while no partial sum can pass the column's 38 digits, Python beyond; the same number."""
    column = pl.Series([None if a is None else D(a) for a in amounts], dtype=pl.Decimal(38, 12))
    assert decimal_sum(column) == D(total)
    assert decimal_sum(column) == decimal_sum([None if a is None else a for a in amounts])
