"""Money rules, in one place: Decimal from price to total, one rounding per line, money as text.

Rounding mode: ROUND_HALF_UP (ties away from zero, as Lago, Kill Bill and PostgreSQL's
``round(numeric)`` do) to the currency's minor unit. Unrounded amounts keep full precision; only a
line's amount and the tax are quantized, and every total is a sum of quantized numbers.

Every rounding of the package is a function here (``round_money``, ``truncate_money``,
``round_to``, ``round_units``, ``percent``, ``round_div_expr``, ``truncate_div_expr``) and so is every amount written as
text (``amount_text`` and ``minor_units_text`` for documents, payloads and CSV cells,
``exact_text`` for a CSV's
``*_exact`` cells; ``fmt_money``, ``fmt_exact_money``, ``fmt_unit_price``, ``fmt_number`` for
people): a second copy elsewhere drifts, so
billing_pipeline_tests/test_one_money_rule.py fails on one.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_DOWN, ROUND_HALF_UP, Context, Decimal
from functools import lru_cache

import polars as pl

ROUNDING = ROUND_HALF_UP

# ISO 4217 minor units for the currencies we expect; others default to 2.
MINOR_UNITS = {"JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3, "TND": 3}

ZERO = Decimal("0")


_CONTEXT = Context(
    prec=60, rounding=ROUNDING
)  # passed explicitly: no thread-local context switch per call


def minor_places(currency: str) -> int:
    """Decimal places of the currency's minor unit: 2 for USD, 0 for JPY, 3 for KWD."""
    return MINOR_UNITS.get(currency.upper(), 2)


@lru_cache(maxsize=64)
def minor_unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_places(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Quantize to the currency's minor unit with the documented mode."""
    return amount.quantize(minor_unit(currency), rounding=ROUNDING, context=_CONTEXT)


def truncate_money(amount: Decimal, currency: str) -> Decimal:
    """Cut (toward zero) to the currency's minor unit: the part of an amount that is surely there,
    for a credit grant's balance or a share whose remainder is handed out afterwards."""
    return amount.quantize(minor_unit(currency), rounding=ROUND_DOWN, context=_CONTEXT)


@lru_cache(maxsize=16)
def _step(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)


def round_to(value: Decimal, places: int) -> Decimal:
    """``value`` to ``places`` decimals with ROUNDING, for what is not an amount of a currency
    (ratios, 10^-12 cost shares). In the caller's decimal context, like the arithmetic that
    made ``value``: a result with more digits than its precision raises InvalidOperation."""
    return value.quantize(_step(places), rounding=ROUNDING)


def round_units(value: Decimal) -> int:
    """Whole units (seconds, tokens) with ROUNDING; InvalidOperation as ``round_to``."""
    return int(round_to(value, 0))


def percent(part: Decimal, whole: Decimal, places: int = 1) -> Decimal:
    """``part`` as a percentage of ``whole`` (not zero) to ``places`` decimals with ROUNDING."""
    return round_to(part / whole * 100, places)


def round_div_expr(numerator: pl.Expr, denominator: pl.Expr | int) -> pl.Expr:
    """numerator / denominator to a whole number with ROUNDING (ties away from zero), in integers
    of the numerator's type: exact where a float or Decimal division would not be."""
    a = numerator.abs()
    q = a // denominator
    r = a - q * denominator
    return pl.when(2 * r >= denominator).then(q + 1).otherwise(q) * numerator.sign()


def truncate_div_expr(numerator: pl.Expr, denominator: pl.Expr | int) -> pl.Expr:
    """numerator / denominator (denominator > 0) cut toward zero, in integers of the numerator's
    type: ``truncate_money`` for an amount in minor units (a share whose remainder is handed out
    afterwards). Not polars' ``//``, which floors: a credit's share would move away from zero."""
    return (numerator.abs() // denominator) * numerator.sign()


def round_div(numerator: int, denominator: int) -> int:
    """numerator / denominator (denominator > 0) to a whole number with ROUNDING: the Python-int
    twin of ``round_div_expr``, for sums too wide for Int128 (a cost-plus line's exact fraction)."""
    whole, rest = divmod(abs(numerator), denominator)
    if 2 * rest >= denominator:
        whole += 1
    return whole if numerator >= 0 else -whole


def fmt_ratio_money(numerator: int, denominator: int, currency: str) -> str:
    """The exact amount numerator / denominator: with all its decimals (``fmt_exact_money``) when
    it has at most 12, else rounded to the minor unit (``fmt_money``). For the parts of a line that
    add up to its rounded amount (a cost-plus line's list cost and markup)."""
    scaled, rest = divmod(numerator * 10**12, denominator)
    if rest == 0:
        return fmt_exact_money(Decimal(scaled).scaleb(-12).normalize(), currency)
    minor = minor_places(currency)
    return fmt_money(
        Decimal(round_div(numerator * 10**minor, denominator)).scaleb(-minor), currency
    )


def fmt_share(share: Decimal) -> str:
    """A share as a percentage, exactly: 0.20 -> '20 %', 0.125 -> '12.5 %' (a markup)."""
    return f"{format((share * 100).normalize(), 'f')} %"


def exact(value: Decimal | int | str) -> Decimal:
    """Decimal from an int, a Decimal or a decimal string; never from a float."""
    if isinstance(value, float):
        raise TypeError(f"refusing float {value!r} as money: use a decimal string")
    return Decimal(value)


def decimal_sum(values: Iterable[object]) -> Decimal:
    """The exact sum of amounts given as Decimals or decimal text (a polars column, the JSON copy
    of an invoice); None is skipped.

    A polars Decimal column is summed by polars, in its 128-bit integers (a month's provider cost
    is 3 M rows: ~3 s one Decimal at a time), when no partial sum can pass its 38 digits (the
    largest amount times the count stays below them); the same number either way."""
    if isinstance(values, pl.Series) and isinstance(values.dtype, pl.Decimal):
        present = values.drop_nulls()
        if present.len() == 0:
            return ZERO
        largest, scale = present.abs().max(), values.dtype.scale or 0
        if largest * present.len() < Decimal(10) ** (values.dtype.precision - scale):
            return present.sum()
    return sum((Decimal(str(v)) for v in values if v is not None), ZERO)


def to_micros(amount: Decimal) -> int:
    """Integer micro-units for storage (SQLite has no decimal type)."""
    micros = amount.scaleb(6)
    if micros != micros.to_integral_value():
        raise ValueError(f"{amount} has more than 6 decimal places")
    return int(micros)


def from_micros(micros: int) -> Decimal:
    return Decimal(micros).scaleb(-6)


def amount_text(amount: Decimal, currency: str, *, lossless: bool = False) -> str:
    """An amount as documents and payloads write it: a plain decimal string at the currency's
    minor unit ('1234.50', '1234' for JPY). ``lossless``: an amount with more decimals than that
    (a stored value read back) keeps them all instead of being rounded away."""
    rounded = round_money(amount, currency)
    if lossless and rounded != amount:
        return str(amount.normalize())
    return str(rounded)


def minor_units_text(units: int, currency: str) -> str:
    """``amount_text`` of an amount already counted in whole minor units (1234 -> '12.34' for
    USD, '1234' for JPY): what ``round_div`` gives, written without a Decimal quantize."""
    return str(Decimal(units).scaleb(-minor_places(currency)))


def exact_text(amount: Decimal, currency: str) -> str:
    """An amount with every decimal it has, and at least the currency's minor unit: '741.8962518',
    '9.35', '1050.00' (a CSV's ``*_exact`` column: reconciling to the last digit)."""
    rounded = round_money(amount, currency)
    if rounded == amount:
        return str(rounded)
    return format(amount.normalize(), "f")


def fmt_number(value: Decimal, places: int) -> str:
    """'1,234.57': grouped, rounded to ``places`` decimals with ROUNDING, no currency (a run's
    totals over several currencies)."""
    return f"{round_to(value, places):,.{places}f}"


def _with_currency(text: str, currency: str) -> str:
    """'$1,234.50' for USD (the sign before the symbol), '1,234.50 EUR' otherwise."""
    if currency.upper() == "USD":
        return f"-${text[1:]}" if text.startswith("-") else f"${text}"
    return f"{text} {currency.upper()}"


def fmt_money(amount: Decimal, currency: str, places: int | None = None) -> str:
    """'$1,234.50' for USD, '1,234.50 EUR' otherwise: for PDFs and explanations. Rounded to the
    currency's minor unit, or printed exactly to ``places`` decimals when more are asked for (a
    chart axis in steps of $0.0025)."""
    minor = minor_places(currency)
    if places is None or places <= minor:
        q, places = round_money(amount, currency), minor
    else:
        q = amount
    return _with_currency(f"{q:,.{places}f}", currency)


def fmt_exact_money(amount: Decimal, currency: str) -> str:
    """An unrounded amount (a tier's subtotal) with all its decimals, at least two: '$1,234.5625',
    '1,234.00 JPY'; shown next to the rounded line amount it adds up to."""
    places = max(2, -amount.as_tuple().exponent)  # two even where the minor unit has 0 or 3
    return _with_currency(f"{amount:,.{places}f}", currency)


def fmt_unit_price(price: Decimal, currency: str) -> str:
    """A unit price as the catalog wrote it, with the currency: '$0.0025', '0.010 EUR' (not
    grouped: prices are read digit by digit)."""
    return _with_currency(fmt_price(price), currency)


def fmt_price(price: Decimal) -> str:
    """A unit price as the catalog wrote it, at least two decimals: 0.0025, 0.010, 4.50."""
    text = format(price, "f")
    if "." not in text:
        return text + ".00"
    whole, frac = text.split(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def fmt_quantity(quantity: int | Decimal) -> str:
    return f"{quantity:,}"


QUOTED_PLACES = 2  # a quantity in a larger unit (GPU-hours) that is not exact is shown to this


def fmt_quoted_quantity(quantity: int | Decimal, size: int) -> str:
    """``quantity`` base units counted in units of ``size`` (seconds in GPU-hours: size 3600):
    exact when that takes at most QUOTED_PLACES decimals ('437.5', '1,234'), else rounded with
    ROUNDING and marked: '~0.28', or '<0.01' for a quantity that rounds to nothing."""
    value = Decimal(quantity) / Decimal(size)
    shown = round_to(value, QUOTED_PLACES)
    if shown == value:
        return fmt_quantity(int(value) if value == value.to_integral_value() else value.normalize())
    if shown == 0:
        return f"<{Decimal(1).scaleb(-QUOTED_PLACES)}"
    return f"~{shown:,}"


# --- polars expressions ------------------------------------------------------------------------
# The same texts as fmt_quantity, fmt_money and str(Decimal) above, for a whole column of amounts
# at once: rating words ~10^5 per-unit lines a month this way instead of one Python call each.
# Amounts are integers in the currency's minor unit; the frame carries ``currency``, ``minor``
# (its minor digits) and ``pow10`` (10^minor).


def fmt_int_expr(value: pl.Expr) -> pl.Expr:
    """fmt_quantity as an expression: 1234567 -> '1,234,567' (any int64), by integer arithmetic
    per group of three digits (cheaper than a regex over the reversed digits)."""
    a = value.abs()
    text = None
    for k in range(6, 0, -1):
        high = a // 10 ** (3 * k)
        group = (high % 1000).cast(pl.String)
        group = pl.when(high >= 1000).then(group.str.zfill(3)).otherwise(group)
        piece = pl.when(high > 0).then(group + ",").otherwise(pl.lit(""))
        text = piece if text is None else text + piece
    low = (a % 1000).cast(pl.String)
    low = pl.when(a >= 1000).then(low.str.zfill(3)).otherwise(low)
    return pl.when(value < 0).then(pl.lit("-")).otherwise(pl.lit("")) + text + low


def _minor_parts(amount_minor: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(sign, whole units, '.' + zero-padded minor digits or '') of an amount in minor units."""
    a = amount_minor.abs()
    sign = pl.when(amount_minor < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    frac = (
        pl.when(pl.col("minor") > 0)
        .then("." + (a % pl.col("pow10")).cast(pl.String).str.zfill(pl.col("minor")))
        .otherwise(pl.lit(""))
    )
    return sign, a // pl.col("pow10"), frac


def amount_text_expr(amount_minor: pl.Expr) -> pl.Expr:
    """str(Decimal amount) from minor units: 123456 -> '1234.56' (an invoice line's ``amount``)."""
    sign, whole, frac = _minor_parts(amount_minor)
    return sign + whole.cast(pl.String) + frac


def money_text_expr(amount_minor: pl.Expr) -> pl.Expr:
    """fmt_money of an amount in minor units: '$1,234.56', '1,234.56 EUR'."""
    sign, whole, frac = _minor_parts(amount_minor)
    text = fmt_int_expr(whole) + frac
    usd = pl.col("currency").str.to_uppercase() == "USD"
    return (
        pl.when(usd)
        .then(sign + "$" + text)
        .otherwise(sign + text + " " + pl.col("currency").str.to_uppercase())
    )
