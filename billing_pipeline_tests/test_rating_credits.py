"""Prepaid credits: drawn against the tax-exclusive subtotal, carried over, expiry honoured."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl

from billing_pipeline.catalog import parse_catalog
from billing_pipeline.catalog.model import Credit
from billing_pipeline.documents.credit_notes import late_usage_correction
from billing_pipeline.documents.invoice import build_documents
from billing_pipeline.rating import rate_month
from billing_pipeline.rating.credits import apply_credits, credit_history
from billing_pipeline.schema import USAGE_SCHEMA


def grant(amount: str, start: str = "2026-01-01", expires: str | None = None) -> Credit:
    return Credit.model_validate({"amount": amount, "from": start, "expires": expires})


def test_a_credit_spanning_two_months_carries_its_balance_into_the_second():
    grants = [grant("1000.00", expires="2026-12-31")]
    history = credit_history(
        grants, {"2026-10": Decimal("600.00"), "2026-11": Decimal("700.00")}, "USD"
    )
    assert history["2026-10"].applied == Decimal("600.00")
    assert history["2026-11"].applied == Decimal("400.00")  # what October left
    assert history["2026-11"].balances[0].opening == Decimal("400.00")
    assert history["2026-11"].balances[0].closing == Decimal("0.00")


def test_an_expired_grant_is_not_drawn_and_the_soonest_expiring_grant_goes_first():
    grants = [
        grant("100.00", expires="2026-10-30"),
        grant("50.00"),
        grant("80.00", expires="2026-11-30"),
    ]
    result = apply_credits(grants, {}, "2026-10", Decimal("120.00"), "USD")
    assert [b.applied for b in result.balances] == [
        Decimal("0"),
        Decimal("40.00"),
        Decimal("80.00"),
    ]
    assert [b.status for b in result.balances] == ["expired", "active", "active"]
    assert result.applied == Decimal("120.00")


def test_a_grant_that_starts_after_the_month_is_not_drawn_yet():
    result = apply_credits(
        [grant("100.00", start="2026-11-01")], {}, "2026-10", Decimal("10.00"), "USD"
    )
    assert result.applied == 0 and result.balances[0].status == "not_yet_valid"


def test_credits_pay_the_tax_exclusive_charges_and_the_invoice_total_subtracts_them():
    catalog = parse_catalog(
        {
            "issuer": {"name": "I"},
            "plans": {"p": {"name": "P", "base_fee": "100.00"}},
            "customers": {
                "acme": {
                    "name": "A",
                    "tax": {"rate": "0.19"},
                    "subscriptions": [{"plan": "p", "from": "2026-01-01"}],
                    "credits": [{"amount": "150.00", "from": "2026-01-01"}],
                }
            },
        }
    )
    lines = rate_month(pl.DataFrame(schema=USAGE_SCHEMA), catalog, "2026-10").lines
    (october,) = build_documents(lines, catalog, "2026-10")
    assert (october["subtotal"], october["tax"], october["credits_applied"], october["total"]) == (
        "100.00",
        "19.00",
        "100.00",
        "19.00",
    )
    (november,) = build_documents(
        lines, catalog, "2026-11", credits_used={"acme": {0: Decimal("100.00")}}
    )
    assert (november["credits_applied"], november["total"]) == ("50.00", "69.00")
    assert november["credits"][0]["closing"] == "0.00"


# ---------------------------------------------------------------- corrections after issue


def _requests_month(catalog, count: int, credits_used=None) -> dict:
    start = dt.datetime(2026, 10, 5, tzinfo=dt.UTC)
    usage = pl.DataFrame(
        [
            {
                "event_id": f"e{count}",
                "record_id": f"r{count}",
                "source": "test",
                "provider": "openai",
                "account_key": None,
                "customer_id": "acme",
                "model": "gpt-4o",
                "model_family": "gpt-4o",
                "meter": "requests",
                "dimensions": "{}",
                "quantity": count,
                "start": start,
                "end": start + dt.timedelta(hours=1),
                "origin": "test",
                "day": start.date(),
            }
        ],
        schema=USAGE_SCHEMA,
    )
    (doc,) = build_documents(
        rate_month(usage, catalog, "2026-10").lines, catalog, "2026-10", credits_used
    )
    return doc


def _two_grant_catalog():
    return parse_catalog(
        {
            "issuer": {"name": "I"},
            "plans": {
                "r": {
                    "name": "R",
                    "charges": [{"id": "requests", "meter": "requests", "unit_price": "1.00"}],
                }
            },
            "customers": {
                "acme": {
                    "name": "A",
                    "subscriptions": [{"plan": "r", "from": "2026-01-01"}],
                    "credits": [
                        {"amount": "100.00", "from": "2026-01-01", "expires": "2026-12-31"},
                        {"amount": "100.00", "from": "2026-01-01"},
                    ],
                }
            },
        }
    )


def test_an_adjustment_takes_what_a_spent_grant_cannot_give_from_the_next_usable_grant():
    catalog = _two_grant_catalog()
    original = {**_requests_month(catalog, 70), "number": "INV-1"}
    # October: $70.00, drawn from the grant expiring first (grant 0)
    assert [g["applied"] for g in original["credits"]] == ["70.00", "0.00"]
    fresh = _requests_month(catalog, 120)  # 50 late requests: $120.00, drawn 100.00 + 20.00
    assert [g["applied"] for g in fresh["credits"]] == ["100.00", "20.00"]
    # November already drew grant 0's last $30.00: the adjustment wants 30.00 from grant 0 and
    # 20.00 from grant 1; grant 0 has nothing left, so grant 1 pays all $50.00 (opening 100.00)
    adjustment = late_usage_correction(original, [], fresh, drawn_elsewhere={0: Decimal("30.00")})
    assert [(g["opening"], g["applied"], g["closing"]) for g in adjustment["credits"]] == [
        ("0.00", "0.00", "0.00"),
        ("100.00", "50.00", "50.00"),
    ]
    # $50.00 of usage - $50.00 of credit = $0.00
    assert (adjustment["subtotal"], adjustment["credits_applied"], adjustment["total"]) == (
        "50.00",
        "50.00",
        "0.00",
    )


def test_without_other_draws_the_original_and_its_corrections_draw_what_a_fresh_invoice_draws():
    catalog = _two_grant_catalog()
    original = {**_requests_month(catalog, 70), "number": "INV-1"}
    adjustment = late_usage_correction(original, [], _requests_month(catalog, 120))
    # grant 0: 70.00 + 30.00 = 100.00, grant 1: 0.00 + 20.00 = 20.00, as the fresh invoice draws
    assert [g["applied"] for g in adjustment["credits"]] == ["30.00", "20.00"]
    assert adjustment["total"] == "0.00"  # $50.00 - $50.00
    # once the adjustment is issued, the same usage again needs no correction
    assert late_usage_correction(original, [adjustment], _requests_month(catalog, 120)) is None
