"""Usage amounts and costs of the cloud exports (AWS CUR, FOCUS), read exactly or held.

A cloud row says "1.5 Hrs" of an 8-GPU instance, or "5 1K tokens": the billed quantity is that
decimal amount times a whole factor (3600 x GPUs, 1000), rounded half up to whole seconds or
tokens. Both readers compute it here, BEFORE their checks, so a product no record can carry
(above files.MAX_RECORD_QUANTITY, or past 64 bits, or longer than a default decimal context)
is quarantined as ``implausible_quantity`` on its own row instead of crashing the whole read or
being billed as zero. The row's cost is held the same way: a cost COST_DECIMAL cannot hold, or one
above MAX_RECORD_COST, is ``implausible_cost`` (money at risk), never a silent null.

A cost with more than COST_DECIMAL's 12 decimals (Azure's cost files are not rounded) is kept to
12 places by the cast: it changes by less than 10^-12 of a currency unit, so the row bills.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext

import polars as pl

from billing_pipeline.money import round_units
from billing_pipeline.sources.files import MAX_RECORD_QUANTITY

# Nor does a record cost a quadrillion in any currency. COST_DECIMAL holds 26 integer digits, so
# a sum of up to 10^11 costs under this ceiling still fits; a larger one would overflow the sums
# of reconciliation later, far from the row that caused it.
MAX_RECORD_COST = 10**15

Check = tuple[pl.Expr, str, pl.Expr | str, pl.Expr | str]  # as files.first_problem takes them


def whole_units(quantity: str | None, factor: int | None) -> int | None:
    """A decimal usage amount (hours, 1K tokens) x factor, rounded half up to whole base units
    (seconds, tokens), exactly; None when the amount is not a finite number or there is no factor.

    A result above MAX_RECORD_QUANTITY comes back as MAX_RECORD_QUANTITY + 1 (with its sign), so it
    fits 64 bits whatever the text said (1e28, 9.9e307): ``units_checks`` then hold the row as
    ``implausible_quantity``; it is never billed.
    """
    if quantity is None or factor is None:
        return None
    try:
        value = Decimal(quantity)
    except (InvalidOperation, ValueError, TypeError):
        return None
    if not value.is_finite():
        return None
    over = -(MAX_RECORD_QUANTITY + 1) if value.is_signed() else MAX_RECORD_QUANTITY + 1
    if not value.is_zero() and value.adjusted() > 16:
        return over  # 10^17 or more, times a whole factor of at least 1
    try:
        with localcontext() as ctx:  # enough digits for the exact product and its rounding
            ctx.prec = len(value.as_tuple().digits) + len(str(abs(factor))) + 20
            units = round_units(value * factor)
    except ArithmeticError:  # not reached below 10^17; None is held as bad_number, not billed
        return None
    return over if abs(units) > MAX_RECORD_QUANTITY else units


def _not_finite(text: pl.Expr) -> pl.Expr:
    """Text that is not a finite number: not a number at all, NaN, Infinity, or past a double
    (1e309, as every reader says). polars' float and decimal casts accept the same texts."""
    value = text.cast(pl.Float64, strict=False)
    return value.is_null() | value.is_nan() | value.is_infinite()


def quantity_checks(field: str) -> list[Check]:
    """``qty_text`` that is not a finite number, or is negative."""
    text = pl.col("qty_text")
    return [
        (
            _not_finite(text),
            "bad_number",
            field,
            pl.lit(f"{field} is not a finite number: ") + text,
        ),
        (
            text.cast(pl.Float64, strict=False) < 0,
            "negative_quantity",
            field,
            pl.lit(f"{field} is negative: ") + text,
        ),
    ]


def units_checks(field: str, unit: pl.Expr) -> list[Check]:
    """``amount`` (``whole_units`` of ``qty_text`` and ``factor``) above the per-record ceiling, or
    missing although the text was a number: held, never billed as read or as zero."""
    return [
        (
            pl.col("amount").is_null(),
            "bad_number",
            field,
            pl.lit(f"{field} is not a decimal number: ") + pl.col("qty_text"),
        ),
        (
            pl.col("amount") > MAX_RECORD_QUANTITY,
            "implausible_quantity",
            field,
            pl.format(
                f"{field} {{}} x {{}} is above the per-record ceiling of "
                f"{MAX_RECORD_QUANTITY:,} {{}}: not billed as read",
                pl.col("qty_text"),
                pl.col("factor"),
                unit,
            ),
        ),
    ]


def cost_checks() -> list[Check]:
    """``cost_text`` (from the column ``cost_field`` names) that is not a finite number, or that
    ``cost`` (its COST_DECIMAL cast) cannot hold or holds above MAX_RECORD_COST either way."""
    text, name = pl.col("cost_text"), pl.col("cost_field")
    present = text.is_not_null()
    return [
        (
            present & _not_finite(text),
            "bad_number",
            name,
            name + pl.lit(" is not a finite decimal number: ") + text,
        ),
        (
            present & (pl.col("cost").is_null() | (pl.col("cost").abs() > MAX_RECORD_COST)),
            "implausible_cost",
            name,
            name
            + pl.lit(" is ")
            + text
            + pl.lit(f", beyond the per-record ceiling of {MAX_RECORD_COST:,}: not billed as read"),
        ),
    ]
