"""How a quantity of one charge becomes money: per-unit, graduated, volume and package.

Pure Decimal functions over *aggregated* quantities (one call per customer and charge, never per
usage event). Amounts here are exact; the line rounds once (``money.round_money``).
"""

from __future__ import annotations

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
    """Multiply first (exact), divide once: exact whenever the true amount has a finite decimal."""
    return Decimal(quantity) * price / Decimal(unit_size)


def price_quantity(
    charge: Charge, quantity: int, currency: str, subject: str, *, before: int = 0, month_total: int | None = None
) -> Priced:
    """Price ``quantity`` base units of ``charge``. ``subject`` names the usage in explanations,
    e.g. "output tokens of gpt-4o".

    ``before``/``month_total`` serve a month split by a price change: the slice priced here comes
    after ``before`` units of the month (graduated tiers and packages continue, not restart) and
    volume pricing picks its tier from the month's total."""
    if quantity < 0 or before < 0:
        raise ValueError(f"charge {charge.id}: negative quantity {quantity}")
    what = f"{fmt_quantity(quantity)} {subject}"
    if charge.pricing == "per_unit":
        price = charge.unit_price
        amount = _units(quantity, charge.unit_size, price)
        text = f"{what} at {_price_text(price, charge, currency)} = {fmt_money(amount, currency)}"
        return Priced(amount, price, [], text)
    if charge.pricing == "package":
        packages = _packages(before + quantity, charge.package_size) - _packages(before, charge.package_size)
        amount = Decimal(packages) * charge.package_price
        text = (
            f"{what} = {packages:,} package{'s' if packages != 1 else ''} of "
            f"{charge.package_size:,} at {_money(charge.package_price, currency)} = "
            f"{fmt_money(amount, currency)}"
        )
        return Priced(amount, charge.package_price, [], text)
    if charge.pricing == "graduated":
        return _graduated(charge, quantity, currency, what, before)
    return _volume(charge, quantity, currency, what, quantity if month_total is None else month_total, before)


def _packages(quantity: int, size: int) -> int:
    return -(-quantity // size)  # ceil in integers: no float on large quantities


def _graduated(charge: Charge, quantity: int, currency: str, what: str, before: int = 0) -> Priced:
    """Tiers price the units (before, before + quantity]; a tier's flat fee goes to the slice
    that puts the first unit into it, so the month's fees are charged once."""
    slices: list[TierSlice] = []
    lower, end = 0, before + quantity
    for n, tier in enumerate(charge.tiers, start=1):
        if end <= lower:
            break
        top = end if tier.up_to is None else min(end, tier.up_to)
        first = max(lower, before)
        if top > first:
            fee = tier.flat_fee if first == lower else Decimal(0)
            units = top - first
            amount = _units(units, charge.unit_size, tier.unit_price) + fee
            slices.append(TierSlice(n, first + 1, tier.up_to, units, tier.unit_price, fee, amount))
        lower = top if tier.up_to is None else tier.up_to
    total = sum((s.amount for s in slices), Decimal(0))
    parts = []
    for i, s in enumerate(slices):
        lead = "first" if i == 0 and before == 0 else "next"
        fee = f" + {fmt_money(s.flat_fee, currency)} tier fee" if s.flat_fee else ""
        parts.append(
            f"{lead} {fmt_quantity(s.quantity)} at {_price_text(s.unit_price, charge, currency)}"
            f"{fee} = {fmt_money(s.amount, currency)}"
        )
    text = f"{what}: " + "; ".join(parts) if parts else f"{what}: nothing to charge"
    single = slices[0].unit_price if len(slices) == 1 else None
    return Priced(total, single, slices, text)


def _volume(charge: Charge, quantity: int, currency: str, what: str, reached: int, before: int = 0) -> Priced:
    """All units at the reached tier's price; its flat fee once, with the month's first unit."""
    lower = 0
    for n, tier in enumerate(charge.tiers, start=1):
        if tier.up_to is None or reached <= tier.up_to:
            fee = tier.flat_fee if quantity and before == 0 else Decimal(0)
            amount = _units(quantity, charge.unit_size, tier.unit_price) + fee
            band = (
                f"above {fmt_quantity(lower)}"
                if tier.up_to is None
                else f"{fmt_quantity(lower + 1)} to {fmt_quantity(tier.up_to)}"
            )
            fee_text = f" + {fmt_money(fee, currency)} tier fee" if fee else ""
            text = (
                f"{what}: the total falls in tier {n} ({band}), so all of it is priced at "
                f"{_price_text(tier.unit_price, charge, currency)}{fee_text} = {fmt_money(amount, currency)}"
            )
            slice_ = TierSlice(n, lower + 1, tier.up_to, quantity, tier.unit_price, fee, amount)
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
