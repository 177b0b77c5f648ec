"""Revenue allocation (reconcile.allocate_revenue): a line's amount shared among the models it
covers by quantity, each share cut toward zero to the currency's minor unit, the remainder on the
first part with the largest quantity, fixed fees under ``subscription``.

allocate_revenue works in integers of the minor unit (polars expressions); ``reference`` below is
the Python loop over Decimal it replaced, kept as the specification: every test compares the two,
on hand-written lines for each rule and on random months (seeded), and must find the same frame:
the same rows, order, dtypes and Decimal values.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from billing_pipeline.money import truncate_money
from billing_pipeline.reconcile import allocate_revenue
from billing_pipeline.schema import COST_DECIMAL

D = Decimal
LINE = {
    "customer_id": pl.String,
    "currency": pl.String,
    "amount": pl.String,
    "components": pl.String,
    "consideration": pl.String,
}
I64_MAX = 2**63 - 1


def reference(lines: pl.DataFrame) -> pl.DataFrame:
    """allocate_revenue as it was: one Python iteration per line, Decimal throughout."""
    rows: dict[tuple, Decimal] = {}
    for customer, currency, amount, components, consideration in lines.select(
        "customer_id", "currency", "amount", "components", "consideration"
    ).iter_rows():
        amount = Decimal(amount)
        parts = json.loads(components) if consideration == "variable" else []
        if not parts:
            key = (customer, "subscription", "")
            rows[key] = rows.get(key, Decimal(0)) + amount
            continue
        total = sum(p["quantity"] for p in parts)
        shares = [
            truncate_money(amount * p["quantity"] / total, currency) if total else Decimal(0)
            for p in parts
        ]
        largest = max(range(len(parts)), key=lambda i: parts[i]["quantity"])
        shares[largest] += amount - sum(shares)
        for p, share in zip(parts, shares, strict=True):
            key = (customer, p["provider"], p["model"] or "")
            rows[key] = rows.get(key, Decimal(0)) + share
    return pl.DataFrame(
        [(c, p, m, v) for (c, p, m), v in sorted(rows.items())],
        schema={
            "customer_id": pl.String,
            "provider": pl.String,
            "model": pl.String,
            "revenue": COST_DECIMAL,
        },
        orient="row",
    )


def parts(*quantities: int, provider: str = "openai") -> str:
    """components JSON as rating writes it: models m0, m1, ... with these quantities."""
    return json.dumps(
        [{"provider": provider, "model": f"m{i}", "quantity": q} for i, q in enumerate(quantities)]
    )


def lines(*rows: tuple) -> pl.DataFrame:
    """(customer, currency, amount, components, consideration) rows as a lines frame."""
    return pl.DataFrame(rows, schema=LINE, orient="row")


def allocated(frame: pl.DataFrame) -> dict[tuple[str, str, str], Decimal]:
    """allocate_revenue's result, checked equal to the reference's, as {key: revenue}."""
    got = allocate_revenue(frame)
    assert_frame_equal(got, reference(frame), check_exact=True)
    return {(c, p, m): v for c, p, m, v in got.iter_rows()}


def shares(frame: pl.DataFrame) -> list[Decimal]:
    """The revenue of each model, normalized (1.50 -> 1.5), in model order."""
    return [
        v.normalize() for (_, p, _), v in sorted(allocated(frame).items()) if p != "subscription"
    ]


# -- the rules, one line at a time ----------------------------------------------------------------


def test_fixed_fees_and_lines_without_components_are_the_customers_subscription():
    got = allocated(
        lines(
            ("acme", "USD", "500.00", "[]", "fixed"),  # base fee
            (
                "acme",
                "USD",
                "120.00",
                "not read",
                "fixed",
            ),  # a fixed line's components are not read
            ("acme", "USD", "10.00", "[]", "variable"),  # a true-up without components
            ("acme", "USD", "2.50", "null", "variable"),
            ("acme", "USD", "1.00", parts(5), None),  # no consideration: not variable
        )
    )
    assert got == {("acme", "subscription", ""): D("633.50")}


def test_a_variable_line_is_shared_by_quantity_with_the_remainder_on_the_largest_part():
    # 10.00 over 1:2 -> 3.33 and 6.66 cut, the remaining cent on the larger part
    assert shares(lines(("acme", "USD", "10.00", parts(1, 2), "variable"))) == [
        D("3.33"),
        D("6.67"),
    ]


def test_the_shares_of_a_line_sum_exactly_to_its_amount():
    got = allocated(lines(("acme", "USD", "100.00", parts(1, 1, 1, 1, 1, 1, 1), "variable")))
    assert sum(got.values()) == D("100.00")
    assert sorted(got.values()) == [D("14.28")] * 6 + [D("14.32")]  # the first largest: m0


def test_a_credit_is_shared_cut_toward_zero_so_the_remainder_is_negative_too():
    # -10.00 over 1:2: -3.333... cuts to -3.33 (not -3.34), the remaining -0.01 on the larger part
    assert shares(lines(("acme", "USD", "-10.00", parts(1, 2), "variable"))) == [
        D("-3.33"),
        D("-6.67"),
    ]


def test_zero_total_quantity_puts_the_whole_amount_on_the_first_part():
    assert shares(lines(("acme", "USD", "7.00", parts(0, 0, 0), "variable"))) == [
        D("7"),
        D("0"),
        D("0"),
    ]


def test_a_part_with_zero_quantity_among_others_earns_nothing():
    assert shares(lines(("acme", "USD", "7.00", parts(0, 3, 4), "variable"))) == [
        D("0"),
        D("3"),
        D("4"),
    ]


def test_a_tie_for_the_largest_quantity_gives_the_remainder_to_the_first_of_them():
    # 1.00 over 1:3:3 -> 0.14, 0.42, 0.42 cut; the remaining 0.02 on m1, not m2
    assert shares(lines(("acme", "USD", "1.00", parts(1, 3, 3), "variable"))) == [
        D("0.14"),
        D("0.44"),
        D("0.42"),
    ]


@pytest.mark.parametrize(
    ("currency", "amount", "expected"),
    [
        ("JPY", "1000", ["333", "667"]),  # no minor unit: whole yen
        ("KWD", "10.000", ["3.333", "6.667"]),  # three decimals
        ("JPY", "-1000", ["-333", "-667"]),
        ("usd", "10.00", ["3.33", "6.67"]),  # the code's case does not matter
        ("XYZ", "10.00", ["3.33", "6.67"]),  # an unknown currency has two decimals
    ],
)
def test_shares_are_cut_to_the_currencys_own_minor_unit(currency, amount, expected):
    got = shares(lines(("acme", currency, amount, parts(1, 2), "variable")))
    assert got == [D(e).normalize() for e in expected]


def test_a_part_without_a_model_is_allocated_to_the_empty_model():
    components = json.dumps(
        [
            {"provider": "gpu", "model": None, "quantity": 1},
            {"provider": "gpu", "model": "", "quantity": 1},
            {"provider": "openai", "model": "gpt-4o", "quantity": 2},
        ]
    )
    got = allocated(lines(("acme", "USD", "4.00", components, "variable")))
    assert got == {("acme", "gpu", ""): D("2.00"), ("acme", "openai", "gpt-4o"): D("2.00")}


def test_revenue_is_summed_per_customer_provider_and_model_and_sorted_by_them():
    frame = lines(
        ("zeta", "USD", "1.00", parts(1, 1, provider="openai"), "variable"),
        ("acme", "USD", "3.00", parts(1, provider="openai"), "variable"),
        ("acme", "USD", "2.00", parts(1, provider="anthropic"), "variable"),
        ("acme", "USD", "1.00", parts(1, provider="openai"), "variable"),
        ("acme", "USD", "5.00", "[]", "fixed"),
    )
    assert list(allocated(frame).items()) == [
        (("acme", "anthropic", "m0"), D("2.00")),
        (("acme", "openai", "m0"), D("4.00")),
        (("acme", "subscription", ""), D("5.00")),
        (("zeta", "openai", "m0"), D("0.50")),
        (("zeta", "openai", "m1"), D("0.50")),
    ]


def test_no_lines_allocate_nothing():
    got = allocate_revenue(lines())
    assert got.height == 0
    assert_frame_equal(got, reference(lines()))


# -- numbers beyond the integers: the same cents in Decimal ----------------------------------------


@pytest.mark.parametrize(
    ("amount", "quantities"),
    [
        ("92233720368547758.07", (I64_MAX, 1)),  # amount x quantity ~ 2^126
        ("-92233720368547758.07", (I64_MAX, I64_MAX, 3)),  # their total beyond int64
        ("92233720368547758.08", (2, 1)),  # the amount in cents beyond int64
        ("123456789.12", (10**20, 1)),  # a quantity beyond int64
        ("1000000000.00", (10**17 + 1, 3 * 10**17 - 1)),  # the product beyond 10^27
        ("1.005", (3, 1)),  # more decimals than the currency has
        ("1E+3", (1, 2)),  # a decimal the integers do not read
        ("10.00", (5, -2)),  # a negative quantity: shares beyond the amount
        ("10.00", (-5, 2)),  # a negative total
    ],
)
def test_huge_or_unusual_numbers_are_shared_exactly_as_in_decimal(amount, quantities):
    got = allocated(lines(("acme", "USD", amount, parts(*quantities), "variable")))
    assert sum(got.values()) == D(amount)


def test_an_amount_whose_minor_units_pass_int64_is_shared_in_decimal():
    # 2^62 KWD is 125 x 2^65 fils: times a quantity of 2^62 it would wrap Int128 to -2^127
    frame = lines(("acme", "KWD", str(2**62), parts(2**62, 2**62), "variable"))
    assert sum(allocated(frame).values()) == 2**62


def test_a_share_past_decimals_28_digits_keeps_the_cent_decimal_gave_it():
    # 100,000,000.01 x 1,557,377,049,344,262,296 has 29 digits: Decimal rounds it, and the share
    # 31,147,540.98999... becomes 31,147,540.99, not the 31,147,540.98 exact integers would cut
    q1, q2 = 1_557_377_049_344_262_296, 3_442_622_950_655_737_707
    got = shares(lines(("acme", "USD", "100000000.01", parts(q1, q2), "variable")))
    assert got == [D("31147540.99"), D("68852459.02")]


def test_a_line_beyond_the_integers_does_not_change_the_others_of_its_customer():
    frame = lines(
        ("acme", "USD", "10.00", parts(1, 2), "variable"),
        ("acme", "USD", "5.00", parts(I64_MAX, 1), "variable"),
        ("acme", "USD", "1.00", parts(10**20, 1), "variable"),  # read in Decimal
    )
    got = allocated(frame)
    assert got[("acme", "openai", "m0")] == D("3.33") + D("5.00") + D("1.00")


def test_an_amount_at_the_edge_of_int64_minor_units_is_exact():
    frame = lines(
        ("acme", "USD", "92233720368547758.07", parts(3, 1, 1), "variable"),
        ("acme", "JPY", "-9223372036854775807", parts(7, 7), "variable"),
        ("acme", "KWD", "9223372036854775.807", "[]", "fixed"),
    )
    assert sum(allocated(frame).values()) == (
        D("92233720368547758.07") - D("9223372036854775807") + D("9223372036854775.807")
    )


# -- random months ---------------------------------------------------------------------------------

CURRENCIES = ["USD", "EUR", "JPY", "KWD", "BHD", "KRW", "chf"]
PROVIDERS = ["openai", "anthropic", "gpu", "aws"]
MODELS = ["gpt-4o", "claude", "h100", "", None]


def random_line(rng: random.Random) -> tuple:
    currency = rng.choice(CURRENCIES)
    places = {"JPY": 0, "KRW": 0, "KWD": 3, "BHD": 3}.get(currency, 2)
    size = rng.choice([10, 10**4, 10**8, 10**14, 10**18])
    minor = rng.randint(-size // 5, size)  # credits too
    amount = str(Decimal(minor).scaleb(-places))
    if rng.random() < 0.05:
        amount = str(Decimal(minor).scaleb(-places - rng.randint(1, 4)))  # too many decimals
    sizes = [
        lambda: rng.randint(0, 3),  # zeros and ties
        lambda: rng.randint(0, 10**6),
        lambda: rng.randint(0, I64_MAX),
        lambda: rng.randint(I64_MAX, 10**20),  # beyond int64 (rare in JSON, read exactly)
        lambda: rng.randint(-5, 2),  # negative (not from rating, read exactly)
    ]
    weights = [4, 4, 1, 0.2, 0.2]
    (usual,) = rng.choices(sizes, weights)  # most parts of a line alike, some not

    def quantity() -> int:
        return (usual if rng.random() < 0.8 else rng.choices(sizes, weights)[0])()

    components = json.dumps(
        [
            {"provider": rng.choice(PROVIDERS), "model": rng.choice(MODELS), "quantity": quantity()}
            for _ in range(rng.choice([0, 1, 1, 2, 3, 5]))
        ]
    )
    consideration = rng.choice(["variable", "variable", "variable", "fixed", None])
    return (
        rng.choice(["acme", "initech", "zeta", "b"]),
        currency,
        amount,
        components,
        consideration,
    )


@pytest.mark.parametrize("seed", range(40))
def test_a_random_month_is_allocated_as_the_decimal_reference_does(seed):
    rng = random.Random(seed)
    allocated(lines(*(random_line(rng) for _ in range(rng.randint(1, 400)))))


part = st.fixed_dictionaries(
    {
        "provider": st.sampled_from(PROVIDERS),
        "model": st.sampled_from(MODELS),
        "quantity": st.one_of(st.integers(0, 5), st.integers(0, I64_MAX)),
    }
)
line = st.tuples(
    st.sampled_from(["acme", "zeta"]),
    st.sampled_from(CURRENCIES),
    st.integers(-(10**20), 10**20),  # the amount in hundredths (whole units for JPY, KRW)
    st.lists(part, max_size=4).map(json.dumps),
    st.sampled_from(["variable", "fixed", None]),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(line, max_size=12))
def test_any_lines_are_allocated_as_the_decimal_reference_does(rows):
    places = {"JPY": 0, "KRW": 0}
    allocated(
        lines(
            *(
                (customer, currency, str(Decimal(a).scaleb(-places.get(currency, 2))), c, kind)
                for customer, currency, a, c, kind in rows
            )
        )
    )
