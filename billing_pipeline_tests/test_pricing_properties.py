"""Pricing properties that must hold for every catalog and every month of usage (hypothesis),
checked against a slow plain-Decimal reference written here, independent of the engine."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import ROUND_HALF_UP, Decimal

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipeline.catalog import parse_catalog
from billing_pipeline.catalog.model import Charge
from billing_pipeline.documents.invoice import build_documents
from billing_pipeline.rating import price_quantity, rate_month
from billing_pipeline.schema import USAGE_SCHEMA, conform, model_family_expr

ENGINE = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PURE = settings(max_examples=200, deadline=None)

prices = st.decimals(min_value=Decimal("0"), max_value=Decimal("50"), places=4).map(str)
unit_sizes = st.sampled_from([1, 1000, 1_000_000, 3600])


@st.composite
def tier_lists(draw, flat_fees=True):
    bounds = sorted(draw(st.sets(st.integers(1, 5_000_000), min_size=0, max_size=4)))
    tiers = [{"up_to": b, "unit_price": draw(prices)} for b in bounds] + [
        {"up_to": None, "unit_price": draw(prices)}
    ]
    if flat_fees:
        for t in tiers:
            t["flat_fee"] = draw(st.sampled_from(["0", "0", "5.00", "12.50"]))
    return tiers


def tiered(pricing: str, tiers: list[dict], unit_size: int = 1000) -> Charge:
    return Charge.model_validate(
        {
            "id": "c",
            "meter": "output_tokens",
            "unit_size": unit_size,
            "pricing": pricing,
            "tiers": tiers,
        }
    )


def amount(charge: Charge, q: int) -> Decimal:
    return price_quantity(charge, q, "USD", "tokens").amount


# -- the reference: plain Decimal, one unit range at a time ----------------------------------------


def ref_price(c: dict, q: int) -> Decimal:
    size = Decimal(c.get("unit_size", 1))
    pricing = c.get("pricing", "per_unit")
    if pricing == "per_unit":
        return Decimal(q) * Decimal(c["unit_price"]) / size
    if pricing == "package":
        packages = q // c["package_size"] + (1 if q % c["package_size"] else 0)
        return packages * Decimal(c["package_price"])
    if pricing == "volume":
        if q == 0:
            return Decimal(0)
        for t in c["tiers"]:
            if t["up_to"] is None or q <= t["up_to"]:
                return Decimal(q) * Decimal(t["unit_price"]) / size + Decimal(
                    t.get("flat_fee", "0")
                )
    total, lower = Decimal(0), 0
    for t in c["tiers"]:
        upper = q if t["up_to"] is None else min(q, t["up_to"])
        if upper > lower:
            total += Decimal(upper - lower) * Decimal(t["unit_price"]) / size + Decimal(
                t.get("flat_fee", "0")
            )
        lower = max(lower, t["up_to"] or lower)
    return total


def cents(x: Decimal) -> Decimal:
    return x.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def ref_invoice(plan: dict, events: list[tuple], days_subscribed: int) -> dict[str, Decimal]:
    """events: (meter, quantity, start datetime, event id). One customer, one plan, all month."""
    left = plan.get("allowance", {}).get("quantity", 0)
    allowance_meters = plan.get("allowance", {}).get("meters", [])
    billable: dict[str, int] = {}
    by_meter = {
        m: c
        for c in plan["charges"]
        for m in ([c["meter"]] if isinstance(c["meter"], str) else c["meter"])
    }
    for meter, q, _start, _eid in sorted(events, key=lambda e: (e[2], e[3])):
        if meter not in by_meter:
            continue
        if meter in allowance_meters:
            used = min(left, q)
            left -= used
            q -= used
        cid = by_meter[meter]["id"]
        billable[cid] = billable.get(cid, 0) + q
    lines = {
        cid: cents(ref_price(next(c for c in plan["charges"] if c["id"] == cid), q))
        for cid, q in billable.items()
    }
    if plan.get("base_fee"):
        lines["base_fee"] = cents(Decimal(plan["base_fee"]) * days_subscribed / 31)
    usage = sum((v for k, v in lines.items() if k != "base_fee"), Decimal(0))
    if plan.get("minimum_commitment") and usage < Decimal(plan["minimum_commitment"]):
        lines["minimum_commitment"] = cents(Decimal(plan["minimum_commitment"]) - usage)
    return lines


# -- random catalogs and months ----------------------------------------------------------------------

METERS = ["input_tokens", "output_tokens", "cached_input_tokens", "requests"]


@st.composite
def charges(draw, cid: str, meter: str):
    pricing = draw(st.sampled_from(["per_unit", "graduated", "volume", "package"]))
    c = {"id": cid, "meter": meter, "unit_size": draw(unit_sizes), "pricing": pricing}
    if pricing == "per_unit":
        c["unit_price"] = draw(prices)
    elif pricing == "package":
        c["package_size"] = draw(st.integers(1, 100_000))
        c["package_price"] = draw(prices)
    else:
        c["tiers"] = draw(tier_lists())
    return c


@st.composite
def plans(draw):
    meters = draw(st.lists(st.sampled_from(METERS), min_size=1, max_size=4, unique=True))
    plan = {"name": "Random", "charges": [draw(charges(f"c{i}", m)) for i, m in enumerate(meters)]}
    if draw(st.booleans()):
        plan["base_fee"] = draw(st.sampled_from(["99.00", "500.00", "0.01"]))
    if draw(st.booleans()):
        plan["allowance"] = {
            "quantity": draw(st.integers(1, 2_000_000)),
            "meters": draw(st.lists(st.sampled_from(meters), min_size=1, unique=True)),
        }
    if draw(st.booleans()):
        plan["minimum_commitment"] = draw(st.sampled_from(["100.00", "1000.00"]))
    return plan


@st.composite
def months_of_usage(draw):
    """Rows (meter, quantity, day, hour) with distinct (day, hour): a split never interleaves."""
    slots = draw(
        st.lists(
            st.tuples(st.integers(1, 31), st.integers(0, 23)), min_size=0, max_size=12, unique=True
        )
    )
    return [
        (draw(st.sampled_from(METERS)), draw(st.integers(0, 3_000_000)), d, h) for d, h in slots
    ]


def catalog_for(plan: dict, start: str = "2026-01-01"):
    return parse_catalog(
        {
            "issuer": {"name": "I"},
            "plans": {"p": plan},
            "customers": {
                "cu": {
                    "name": "C",
                    "subscriptions": [{"plan": "p", "from": start}],
                    "tax": {"rate": "0.19"},
                }
            },
        }
    )


def frame(rows: list[tuple]) -> pl.DataFrame:
    records = [
        {
            "event_id": eid,
            "record_id": eid,
            "source": "test",
            "provider": "openai",
            "account_key": None,
            "customer_id": "cu",
            "model": "gpt-4o",
            "meter": meter,
            "dimensions": "{}",
            "quantity": q,
            "start": dt.datetime(2026, 10, d, h, tzinfo=dt.UTC),
            "end": dt.datetime(2026, 10, d, h, tzinfo=dt.UTC),
            "origin": eid,
            "day": dt.date(2026, 10, d),
        }
        for (meter, q, d, h, eid) in rows
    ]
    if not records:
        return conform(pl.DataFrame(schema=USAGE_SCHEMA), USAGE_SCHEMA)
    return conform(
        pl.DataFrame(records).with_columns(model_family_expr().alias("model_family")), USAGE_SCHEMA
    )


def with_ids(rows):
    return [(m, q, d, h, f"e{d:02d}{h:02d}") for (m, q, d, h) in rows]


def amounts(rated) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for r in rated.lines.iter_rows(named=True):
        out[r["charge_id"]] = out.get(r["charge_id"], Decimal(0)) + Decimal(r["amount"])
    return out


# -- properties of single pricing models --------------------------------------------------------------


@PURE
@given(
    tier_lists(flat_fees=False), unit_sizes, st.integers(0, 8_000_000), st.integers(0, 8_000_000)
)
def test_graduated_amount_never_decreases_when_usage_grows(tiers, size, a, b):
    c = tiered("graduated", tiers, size)
    lo, hi = sorted((a, b))
    assert amount(c, lo) <= amount(c, hi)


@PURE
@given(
    tier_lists(flat_fees=False), st.sampled_from([1, 1000, 1_000_000])
)  # sizes that divide exactly
def test_graduated_has_no_jump_at_a_tier_edge_without_flat_fees(tiers, size):
    c = tiered("graduated", tiers, size)
    for below, above in itertools.pairwise(tiers):
        edge = below["up_to"]
        assert amount(c, edge) - amount(c, edge - 1) == Decimal(below["unit_price"]) / size
        assert amount(c, edge + 1) - amount(c, edge) == Decimal(above["unit_price"]) / size


@PURE
@given(tier_lists(), st.integers(0, 8_000_000))
def test_graduated_tier_quantities_sum_to_the_quantity_and_amounts_to_the_total(tiers, q):
    priced = price_quantity(tiered("graduated", tiers), q, "USD", "tokens")
    assert sum(t.quantity for t in priced.tiers) == q
    assert sum(t.amount for t in priced.tiers) == priced.amount


@PURE
@given(tier_lists(), st.integers(1, 8_000_000))
def test_volume_charges_every_unit_at_the_reached_tier_price(tiers, q):
    priced = price_quantity(tiered("volume", tiers), q, "USD", "tokens")
    reached = next(t for t in tiers if t["up_to"] is None or q <= t["up_to"])
    assert priced.amount == Decimal(q) * Decimal(reached["unit_price"]) / 1000 + Decimal(
        reached["flat_fee"]
    )
    assert [t.quantity for t in priced.tiers] == [q]


@PURE
@given(
    tier_lists(),
    st.sampled_from(["graduated", "volume"]),
    st.integers(0, 4_000_000),
    st.integers(0, 4_000_000),
)
def test_a_month_split_in_two_price_periods_with_equal_prices_costs_the_same_as_one(
    tiers, pricing, a, b
):
    c = tiered(pricing, tiers)
    whole = amount(c, a + b)
    first = price_quantity(c, a, "USD", "t", before=0, month_total=a + b).amount
    second = price_quantity(c, b, "USD", "t", before=a, month_total=a + b).amount
    assert first + second == whole


# -- properties of a whole month's rating --------------------------------------------------------------


@ENGINE
@given(plans(), months_of_usage())
def test_rating_agrees_with_the_plain_decimal_reference(plan, rows):
    rated = rate_month(frame(with_ids(rows)), catalog_for(plan), "2026-10")
    events = [(m, q, dt.datetime(2026, 10, d, h), eid) for (m, q, d, h, eid) in with_ids(rows) if q]
    expected = ref_invoice(plan, events, 31)
    assert {k: v for k, v in amounts(rated).items() if v} == {
        k: v for k, v in expected.items() if v
    }


@ENGINE
@given(plans(), months_of_usage(), st.randoms(use_true_random=False), st.data())
def test_rating_is_invariant_to_row_order_and_to_splitting_rows(plan, rows, rnd, data):
    catalog = catalog_for(plan)
    base = with_ids(rows)
    shuffled = list(base)
    rnd.shuffle(shuffled)
    split = []
    for m, q, d, h, eid in base:
        cut = data.draw(st.integers(0, q))
        split += [(m, cut, d, h, eid + "a"), (m, q - cut, d, h, eid + "b")]
    reference = amounts(rate_month(frame(base), catalog, "2026-10"))
    assert amounts(rate_month(frame(shuffled), catalog, "2026-10")) == reference
    assert {
        k: v for k, v in amounts(rate_month(frame(split), catalog, "2026-10")).items()
    } == reference


@ENGINE
@given(plans(), months_of_usage())
def test_invoice_lines_sum_to_the_subtotal_and_total_is_subtotal_plus_tax_minus_credits(plan, rows):
    catalog = catalog_for(plan)
    rated = rate_month(frame(with_ids(rows)), catalog, "2026-10")
    for doc in build_documents(rated.lines, catalog, "2026-10"):
        subtotal = sum((Decimal(line["amount"]) for line in doc["lines"]), Decimal(0))
        assert Decimal(doc["subtotal"]) == subtotal
        assert Decimal(doc["tax"]) == cents(subtotal * Decimal("0.19"))
        assert Decimal(doc["total"]) == subtotal + Decimal(doc["tax"]) - Decimal(
            doc["credits_applied"]
        )
        assert all(
            Decimal(line["amount"]) == cents(Decimal(line["amount"])) for line in doc["lines"]
        )
