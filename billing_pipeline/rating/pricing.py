"""How a quantity of one charge becomes money: per-unit, graduated, volume and package.

The arithmetic is ``vectorized.price_lines`` (exact integers, every line of the month at once);
this module turns its rows into tier slices and plain-language explanations, one line at a time.
Amounts here are exact; the line is rounded once (``Priced.rounded``, half up).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal

import polars as pl

from billing_pipeline.catalog import Charge
from billing_pipeline.money import fmt_money, fmt_quantity, fmt_share, fmt_unit_price, minor_places
from billing_pipeline.rating.vectorized import (
    I64_MAX,
    SCALE,
    RatingError,
    charge_rows,
    price_lines,
    table_frame,
)
from billing_pipeline.schema import unit_name


@dataclass(frozen=True)
class TierSlice:
    """The part of a quantity that one tier priced."""

    tier: int
    first_unit: int  # 1-based, inclusive
    up_to: int | None
    quantity: int
    unit_price: Decimal
    flat_fee: Decimal
    amount: Decimal  # exact: quantity / unit_size * unit_price + flat_fee

    def as_json(self) -> dict:
        return {
            "tier": self.tier,
            "from": self.first_unit,
            "up_to": self.up_to,
            "quantity": self.quantity,
            "unit_price": str(self.unit_price),
            "flat_fee": str(self.flat_fee),
            "amount": str(self.amount),
        }


@dataclass(frozen=True)
class Priced:
    amount: Decimal  # exact, unrounded
    unit_price: Decimal | None  # the single price that applied, None when several tiers did
    tiers: list[TierSlice]
    explanation: str  # how the amount follows from the quantity, in words and numbers
    rounded: Decimal | None = (
        None  # the line amount, rounded once (money.ROUNDING), from the integers
    )


def per_units(unit_size: int) -> str:
    """'per 1K', 'per 1M', 'per GPU-hour'-style suffix for a price per unit_size base units."""
    names = {1: "each", 1000: "per 1K", 1_000_000: "per 1M"}
    return names.get(unit_size, f"per {unit_size:,}")


_PRICE_TEXTS: dict[tuple, str] = {}  # a catalog has a few hundred prices; a month ~10^5 lines


def price_text(price: Decimal, charge: Charge, currency: str) -> str:
    gpu_hour = charge.meters == ["gpu_seconds"] and charge.unit_size == 3600
    key = (
        str(price),
        gpu_hour,
        charge.unit_size,
        currency,
    )  # str: 0.010 and 0.01 print differently
    text = _PRICE_TEXTS.get(key)
    if text is None:
        per = "per GPU-hour" if gpu_hour else per_units(charge.unit_size)
        text = _PRICE_TEXTS[key] = f"{fmt_unit_price(price, currency)} {per}"
    return text


def per_unit_words(
    charge: Charge, quantity: int, currency: str, subject: str, rounded: Decimal, minor: int
) -> str:
    """A per_unit line's explanation from its rounded amount: the words of ``explain`` without
    building a Priced, for rate_month's ~10^5 per-unit lines. ``minor`` is no longer read
    (fmt_money knows the currency's places); engine.py still passes it."""
    return (
        f"{fmt_quantity(quantity)} {subject} at {price_text(charge.unit_price, charge, currency)} = "
        f"{fmt_money(rounded, currency)}"
    )


_EXACT = Context(prec=80)  # passed explicitly: no thread-local context switch per line


def exact_amount(numerator: int, denominator: int) -> Decimal:
    """An amount of the vectorized result as a Decimal (exact whenever it has a finite decimal)."""
    return _EXACT.divide(Decimal(numerator), Decimal(denominator))


def price_quantity(
    charge: Charge,
    quantity: int,
    currency: str,
    subject: str,
    *,
    before: int = 0,
    month_total: int | None = None,
) -> Priced:
    """Price ``quantity`` base units of ``charge``. ``subject`` names the usage in explanations,
    e.g. "output tokens of gpt-4o". One line through the same vectorized arithmetic as rate_month.

    ``before``/``month_total`` serve a month split by a price change: the slice priced here comes
    after ``before`` units of the month (graduated tiers and packages continue, not restart) and
    volume pricing picks its tier from the month's total."""
    if quantity < 0 or before < 0:
        raise ValueError(f"charge {charge.id}: negative quantity {quantity}")
    if before + quantity > I64_MAX or (month_total or 0) > I64_MAX:
        raise RatingError(
            f"charge {charge.id}: {before + quantity:,} base units exceed 2^63-1 (quantity_overflow)"
        )
    table = table_frame(charge_rows("_", charge.model_copy(update={"prices": None}), currency))
    line = pl.DataFrame(
        {
            "line_id": [0],
            "plan_id": ["_"],
            "charge_id": [charge.id],
            "price_from": [None],
            "billable": [quantity],
            "before": [before],
            "month_total": [before + quantity if month_total is None else month_total],
        },
        schema_overrides={
            "price_from": pl.Date,
            "line_id": pl.Int64,
            "billable": pl.Int64,
            "before": pl.Int64,
            "month_total": pl.Int64,
        },
    )
    amounts, slices = price_lines(line, table)
    return explain(
        charge, quantity, before, currency, subject, amounts.to_dicts()[:1], slices.to_dicts()
    )


def explain(
    charge: Charge,
    quantity: int,
    before: int,
    currency: str,
    subject: str,
    amount_rows: list[dict],
    slice_rows: list[dict],
) -> Priced:
    """The line's Priced from its vectorized result (``price_lines``): numbers are read from the
    rows, only the words are made here. ``charge`` carries the prices of the line's period."""
    minor = minor_places(currency)
    if amount_rows:
        row = amount_rows[0]
        amount = exact_amount(row["numerator"], row["denominator"])
        rounded = Decimal(row["amount_minor"]).scaleb(-minor)
    else:  # nothing priced (a graduated line with every unit included)
        amount, rounded = Decimal(0), Decimal(0).scaleb(-minor)
    denominator = 10**SCALE * (1 if charge.pricing == "package" else charge.unit_size)
    what = f"{fmt_quantity(quantity)} {subject}"
    if charge.pricing == "per_unit":
        price = charge.unit_price
        text = per_unit_words(charge, quantity, currency, subject, rounded, minor)
        return Priced(amount, price, [], text, rounded)
    if charge.pricing == "package":
        packages = slice_rows[0]["counted"] if slice_rows else 0
        text = (
            f"{what} = {packages:,} package{'s' if packages != 1 else ''} of "
            f"{charge.package_size:,} at {fmt_unit_price(charge.package_price, currency)} = "
            f"{fmt_money(amount, currency)}"
        )
        return Priced(amount, charge.package_price, [], text, rounded)
    slices = []
    for r in slice_rows:
        tier = charge.tiers[r["tier"] - 1]
        fee = tier.flat_fee if r["fee_units"] else Decimal(0)
        first = r["lower"] if charge.pricing == "volume" else max(r["lower"], before)
        slices.append(
            TierSlice(
                r["tier"],
                first + 1,
                r["up_to"],
                r["quantity"],
                tier.unit_price,
                fee,
                exact_amount(r["numerator"], denominator),
            )
        )
    if charge.pricing == "graduated":
        parts = []
        for i, s in enumerate(slices):
            lead = "first" if i == 0 and before == 0 else "next"
            fee = f" + {fmt_money(s.flat_fee, currency)} tier fee" if s.flat_fee else ""
            parts.append(
                f"{lead} {fmt_quantity(s.quantity)} at {price_text(s.unit_price, charge, currency)}"
                f"{fee} = {fmt_money(s.amount, currency)}"
            )
        text = f"{what}: " + "; ".join(parts) if parts else f"{what}: nothing to charge"
        single = slices[0].unit_price if len(slices) == 1 else None
        return Priced(amount, single, slices, text, rounded)
    s = slices[0]
    lower = s.first_unit - 1
    band = (
        f"above {fmt_quantity(lower)}"
        if s.up_to is None
        else f"{fmt_quantity(lower + 1)} to {fmt_quantity(s.up_to)}"
    )
    fee_text = f" + {fmt_money(s.flat_fee, currency)} tier fee" if s.flat_fee else ""
    text = (
        f"{what}: the total falls in tier {s.tier} ({band}), so all of it is priced at "
        f"{price_text(s.unit_price, charge, currency)}{fee_text} = {fmt_money(amount, currency)}"
    )
    return Priced(amount, s.unit_price, slices, text, rounded)


def markup_words(charge: Charge) -> str | None:
    """A cost-plus charge's markup: '20 % markup' (None without one)."""
    return f"{fmt_share(charge.markup)} markup" if charge.markup else None


def fee_words(charge: Charge, currency: str) -> str | None:
    """A cost-plus charge's fee: '$0.50 per 1M fee' (None without one)."""
    if not charge.unit_fee:
        return None
    return f"{fmt_unit_price(charge.unit_fee, currency)} {per_units(charge.unit_size)} fee"


def describe_prices(charge: Charge, currency: str) -> str:
    """The charge's price table in one phrase, for the disclosure page and the cost calculator."""
    if charge.pricing == "cost_plus":
        words = ["the provider's list price of the usage (our price book, as in effect that day)"]
        if charge.markup:
            words.append(f"{fmt_share(charge.markup)} markup")
        if charge.unit_fee:
            words.append(
                f"{fmt_unit_price(charge.unit_fee, currency)} {per_units(charge.unit_size)} fee"
            )
        return " + ".join(words)
    if charge.pricing == "per_unit":
        return price_text(charge.unit_price, charge, currency)
    if charge.pricing == "package":
        return f"{fmt_unit_price(charge.package_price, currency)} per package of {charge.package_size:,} {unit_name(charge.meters[0])}"
    parts, lower = [], 0
    for tier in charge.tiers:
        band = (
            f"above {fmt_quantity(lower)}"
            if tier.up_to is None
            else f"up to {fmt_quantity(tier.up_to)}"
        )
        fee = f" + {fmt_money(tier.flat_fee, currency)} flat" if tier.flat_fee else ""
        parts.append(f"{band}: {price_text(tier.unit_price, charge, currency)}{fee}")
        lower = tier.up_to or lower
    how = (
        "each tier prices the units inside it"
        if charge.pricing == "graduated"
        else "the whole quantity at the tier it reaches"
    )
    return "; ".join(parts) + f" ({how})"
