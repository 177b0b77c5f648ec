"""Money rules, in one place: Decimal from price to total, one rounding per line.

Rounding mode: ROUND_HALF_UP (ties away from zero, as Lago, Kill Bill and PostgreSQL's
``round(numeric)`` do) to the currency's minor unit. Unrounded amounts keep full precision; only a
line's amount and the tax are quantized, and every total is a sum of quantized numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Context, Decimal
from functools import lru_cache

ROUNDING = ROUND_HALF_UP

# ISO 4217 minor units for the currencies we expect; others default to 2.
MINOR_UNITS = {"JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3, "TND": 3}

ZERO = Decimal("0")


_CONTEXT = Context(
    prec=60, rounding=ROUNDING
)  # passed explicitly: no thread-local context switch per call


@lru_cache(maxsize=64)
def minor_unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-MINOR_UNITS.get(currency.upper(), 2))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Quantize to the currency's minor unit with the documented mode."""
    return amount.quantize(minor_unit(currency), rounding=ROUNDING, context=_CONTEXT)


def exact(value: Decimal | int | str) -> Decimal:
    """Decimal from an int, a Decimal or a decimal string; never from a float."""
    if isinstance(value, float):
        raise TypeError(f"refusing float {value!r} as money: use a decimal string")
    return Decimal(value)


def decimal_sum(values: Iterable[object]) -> Decimal:
    """The exact sum of amounts given as Decimals or decimal text (a polars column, the JSON copy
    of an invoice); None is skipped."""
    return sum((Decimal(str(v)) for v in values if v is not None), ZERO)


def to_micros(amount: Decimal) -> int:
    """Integer micro-units for storage (SQLite has no decimal type)."""
    micros = amount.scaleb(6)
    if micros != micros.to_integral_value():
        raise ValueError(f"{amount} has more than 6 decimal places")
    return int(micros)


def from_micros(micros: int) -> Decimal:
    return Decimal(micros).scaleb(-6)


def fmt_money(amount: Decimal, currency: str, places: int | None = None) -> str:
    """'$1,234.50' for USD, '1,234.50 EUR' otherwise: for PDFs and explanations. Rounded to the
    currency's minor unit, or printed exactly to ``places`` decimals when more are asked for (a
    chart axis in steps of $0.0025)."""
    minor = MINOR_UNITS.get(currency.upper(), 2)
    if places is None or places <= minor:
        q, places = round_money(amount, currency), minor
    else:
        q = amount
    text = f"{q:,.{places}f}"
    if currency.upper() == "USD":
        return f"-${text[1:]}" if text.startswith("-") else f"${text}"
    return f"{text} {currency.upper()}"


def fmt_price(price: Decimal) -> str:
    """A unit price as the catalog wrote it, at least two decimals: 0.0025, 0.010, 4.50."""
    text = format(price, "f")
    if "." not in text:
        return text + ".00"
    whole, frac = text.split(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def fmt_quantity(quantity: int | Decimal) -> str:
    return f"{quantity:,}"
