"""How a quantity of one charge becomes money: per-unit, graduated, volume and package.

Pure Decimal functions over *aggregated* quantities (one call per customer and charge, never per
usage event). Amounts here are exact; the line rounds once (``money.round_money``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from billing_pipeline.catalog import Charge
from billing_pipeline.money import fmt_money, fmt_price, fmt_quantity
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


def per_units(unit_size: int) -> str:
    """'per 1K', 'per 1M', 'per GPU-hour'-style suffix for a price per unit_size base units."""
    names = {1: "each", 1000: "per 1K", 1_000_000: "per 1M"}
    return names.get(unit_size, f"per {unit_size:,}")


def _price_text(price: Decimal, charge: Charge, currency: str) -> str:
    if charge.meters == ["gpu_seconds"] and charge.unit_size == 3600:
        return f"{_money(price, currency)} per GPU-hour"
    return f"{_money(price, currency)} {per_units(charge.unit_size)}"


def _money(value: Decimal, currency: str) -> str:
    """Prices keep their own precision ($0.0025); amounts are shown to the cent."""
    symbol = "$" if currency == "USD" else ""
    suffix = "" if currency == "USD" else f" {currency}"
    return f"{symbol}{fmt_price(value)}{suffix}"


def _units(quantity: int, unit_size: int, price: Decimal) -> Decimal:
    return Decimal(quantity) / Decimal(unit_size) * price


def price_quantity(charge: Charge, quantity: int, currency: str, subject: str) -> Priced:
    """Price ``quantity`` base units of ``charge``. ``subject`` names the usage in explanations,
    e.g. "output tokens of gpt-4o"."""
    if quantity < 0:
        raise ValueError(f"charge {charge.id}: negative quantity {quantity}")
    what = f"{fmt_quantity(quantity)} {subject}"
    if charge.pricing == "per_unit":
        price = charge.unit_price
        amount = _units(quantity, charge.unit_size, price)
        text = f"{what} at {_price_text(price, charge, currency)} = {fmt_money(amount, currency)}"
        return Priced(amount, price, [], text)
    if charge.pricing == "package":
        packages = math.ceil(quantity / charge.package_size) if quantity else 0
        amount = Decimal(packages) * charge.package_price
        text = (
            f"{what} = {packages:,} package{'s' if packages != 1 else ''} of "
            f"{charge.package_size:,} at {_money(charge.package_price, currency)} = "
            f"{fmt_money(amount, currency)}"
        )
        return Priced(amount, charge.package_price, [], text)
    if charge.pricing == "graduated":
        return _graduated(charge, quantity, currency, what)
    return _volume(charge, quantity, currency, what)


def _graduated(charge: Charge, quantity: int, currency: str, what: str) -> Priced:
    slices: list[TierSlice] = []
    lower = 0
    for n, tier in enumerate(charge.tiers, start=1):
        if quantity <= lower:
            break
        top = quantity if tier.up_to is None else min(quantity, tier.up_to)
        units = top - lower
        amount = _units(units, charge.unit_size, tier.unit_price) + tier.flat_fee
        slices.append(TierSlice(n, lower + 1, tier.up_to, units, tier.unit_price, tier.flat_fee, amount))
        lower = top
    total = sum((s.amount for s in slices), Decimal(0))
    parts = []
    for i, s in enumerate(slices):
        lead = "first" if i == 0 else "next"
        fee = f" + {fmt_money(s.flat_fee, currency)} tier fee" if s.flat_fee else ""
        parts.append(
            f"{lead} {fmt_quantity(s.quantity)} at {_price_text(s.unit_price, charge, currency)}"
            f"{fee} = {fmt_money(s.amount, currency)}"
        )
    text = f"{what}: " + "; ".join(parts) if parts else f"{what}: nothing to charge"
    single = slices[0].unit_price if len(slices) == 1 else None
    return Priced(total, single, slices, text)


def _volume(charge: Charge, quantity: int, currency: str, what: str) -> Priced:
    lower = 0
    for n, tier in enumerate(charge.tiers, start=1):
        if tier.up_to is None or quantity <= tier.up_to:
            amount = _units(quantity, charge.unit_size, tier.unit_price) + tier.flat_fee
            band = (
                f"above {fmt_quantity(lower)}"
                if tier.up_to is None
                else f"{fmt_quantity(lower + 1)} to {fmt_quantity(tier.up_to)}"
            )
            fee = f" + {fmt_money(tier.flat_fee, currency)} tier fee" if tier.flat_fee else ""
            text = (
                f"{what}: the total falls in tier {n} ({band}), so all of it is priced at "
                f"{_price_text(tier.unit_price, charge, currency)}{fee} = {fmt_money(amount, currency)}"
            )
            slice_ = TierSlice(n, lower + 1, tier.up_to, quantity, tier.unit_price, tier.flat_fee, amount)
            return Priced(amount, tier.unit_price, [slice_], text)
        lower = tier.up_to
    raise AssertionError("validated tiers always end with up_to: null")


def describe_prices(charge: Charge, currency: str) -> str:
    """The charge's price table in one phrase, for the disclosure page and the cost calculator."""
    if charge.pricing == "per_unit":
        return _price_text(charge.unit_price, charge, currency)
    if charge.pricing == "package":
        return f"{_money(charge.package_price, currency)} per package of {charge.package_size:,} {unit_name(charge.meters[0])}"
    parts, lower = [], 0
    for tier in charge.tiers:
        band = f"above {fmt_quantity(lower)}" if tier.up_to is None else f"up to {fmt_quantity(tier.up_to)}"
        fee = f" + {fmt_money(tier.flat_fee, currency)} flat" if tier.flat_fee else ""
        parts.append(f"{band}: {_price_text(tier.unit_price, charge, currency)}{fee}")
        lower = tier.up_to or lower
    how = "each tier prices the units inside it" if charge.pricing == "graduated" else "the whole quantity at the tier it reaches"
    return "; ".join(parts) + f" ({how})"
