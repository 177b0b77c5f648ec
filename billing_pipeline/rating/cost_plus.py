"""Cost-plus charges: the provider's list price of the usage, plus a markup and a fee.

A line's amount = the price book's cost of its usage (each provider, model, meter and dimensions
at the entry that prices it on the usage's day: rating/price_book.py, the rule the cost side uses)
x (1 + markup) + its units x unit_fee / unit_size; exact (Python integers, as fractions), rounded
once per line, half up, like every other line. Lines are one per provider and model family, as
per-unit lines; a list price that starts or stops inside the month splits the line by date, at
the days of the entries that price that line's usage (and at the charge's own markup changes):
"GPT-4o (gpt-4o) (Oct 15-31)".

Usage a cost-plus charge claims but no price-book entry prices is money at risk
(``UNPRICED_COST``): its customer is held, named, never billed at zero.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

import polars as pl

from billing_pipeline.catalog import Catalog, Charge
from billing_pipeline.catalog.model import PriceChange
from billing_pipeline.money import (
    MINOR_UNITS,
    amount_text,
    fmt_money,
    fmt_quantity,
    fmt_ratio_money,
    fmt_unit_price,
    round_div,
)
from billing_pipeline.periods import parse_month
from billing_pipeline.rating import price_book
from billing_pipeline.rating.assign import AT_RISK_SCHEMA
from billing_pipeline.rating.pricing import fee_words, markup_words, per_units
from billing_pipeline.rating.vectorized import SCALE, price_units
from billing_pipeline.rating.wording import period_label, subject
from billing_pipeline.schema import METERS, unit_name

COST_PLUS = "cost_plus"
UNPRICED_COST = "unpriced_cost"  # cost-plus usage the price book has no price for
GROUP = ["customer_id", "plan_id", "charge_id", "provider", "model_family"]
USAGE_KEY = ["provider", "model", "model_family", "meter", "dimensions"]


def charges(catalog: Catalog) -> dict[tuple[str, str], Charge]:
    """(plan_id, charge_id) -> the cost-plus charges of the catalog."""
    return {
        (pid, c.id): c
        for pid, p in catalog.plans.items()
        for c in p.charges
        if c.pricing == COST_PLUS
    }


def _is_cost_plus(catalog: Catalog) -> pl.Expr:
    keys = [f"{p}\x1f{c}" for p, c in charges(catalog)]
    return (pl.col("plan_id") + "\x1f" + pl.col("charge_id")).is_in(keys).fill_null(False)


def _markup_days(charge: Charge, start: dt.date, end: dt.date) -> list[dt.date]:
    return [c.from_ for c in charge.prices or [] if start < c.from_ < end]


def price_change_days(keys: pl.DataFrame, catalog: Catalog, month: str) -> pl.DataFrame:
    """(USAGE_KEY..., _bday): the days inside the month on which the list price of each usage
    key (provider, model, model_family, meter, dimensions) changes."""
    start, end = parse_month(month)
    empty = keys.clear().with_columns(pl.lit(None, pl.Date).alias("_bday"))
    candidates = [
        keys.filter(price_book.matches(entry)).with_columns(pl.lit(day).alias("_bday"))
        for _, entry, days in price_book.changing_entries(catalog, start, end)
        for day in days
    ]
    return _price_changes(pl.concat([empty, *candidates]).unique(), catalog)


def segment(aggregated: pl.DataFrame, catalog: Catalog, month: str) -> tuple[pl.DataFrame, dict]:
    """(``aggregated`` with the ``price_from`` of each cost-plus row set to the first day of its
    price period, the period label of each cost-plus line: (GROUP..., price_from) -> label).

    A line's periods end where an entry that prices the line's usage starts or stops, or where
    the charge's markup changes. Rows without a day belong to customers whose plan has no such
    day in the month (``price_book.cost_plus_changing``): they stay in one period."""
    found = charges(catalog)
    if not found:
        return aggregated, {}
    start, end = parse_month(month)
    cost_plus = _is_cost_plus(catalog)
    rows = aggregated.with_row_index("_row").filter(cost_plus)
    changing = price_book.changing_entries(catalog, start, end)
    markups = {key: _markup_days(c, start, end) for key, c in found.items()}
    if rows.height == 0 or (not changing and not any(markups.values())):
        return aggregated, {}
    entry_days = price_change_days(rows.select(USAGE_KEY).unique(), catalog, month)
    groups = rows.select(*dict.fromkeys([*GROUP, *USAGE_KEY])).unique()
    markup_days = pl.DataFrame(
        [(pid, cid, day) for (pid, cid), days in markups.items() for day in days],
        schema={"plan_id": pl.String, "charge_id": pl.String, "_bday": pl.Date},
        orient="row",
    )
    group_days = pl.concat(
        [
            groups.join(entry_days, on=USAGE_KEY, how="inner", nulls_equal=True).select(
                *GROUP, "_bday"
            ),
            groups.select(GROUP)
            .unique()
            .join(markup_days, on=["plan_id", "charge_id"], how="inner")
            .select(*GROUP, "_bday"),
        ]
    ).unique()
    lookup = pl.col("day").fill_null(pl.lit(start))
    price_from = (
        rows.select("_row", *GROUP, lookup.alias("_lookup"))
        .join(group_days, on=GROUP, how="inner", nulls_equal=True)
        .filter(pl.col("_bday") <= pl.col("_lookup"))
        .group_by("_row")
        .agg(pl.col("_bday").max().alias("_price_from"))
    )
    out = (
        aggregated.with_row_index("_row")
        .join(price_from, on="_row", how="left")
        .with_columns(
            pl.when(cost_plus)
            .then(pl.col("_price_from"))
            .otherwise(pl.col("price_from"))
            .alias("price_from")
        )
        .drop("_row", "_price_from")
    )
    labels = {}
    by_group = group_days.group_by(GROUP).agg(pl.col("_bday").sort())
    for row in by_group.iter_rows(named=True):
        charge = found[row["plan_id"], row["charge_id"]]
        split = charge.model_copy(
            update={"prices": [PriceChange.model_construct(from_=d) for d in row["_bday"]]}
        )
        group = tuple(row[k] for k in GROUP)
        for first in [None, *row["_bday"]]:
            labels[(*group, first)] = period_label(split, first, month)
    return out, labels


def _price_changes(key_days: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    """The (usage key, day) pairs on which the list price the key is priced at really changes:
    an entry that starts or stops under a more specific one that keeps pricing the usage (a
    batch price under the plain one), or an entry replaced at the same price, splits nothing."""
    prices = price_book.prices(catalog).with_columns(
        pl.col("price_units", "unit_size").cast(pl.Int128)
    )
    frame = key_days.with_columns(
        price_book.entry_index_expr(catalog, pl.col("_bday") - pl.duration(days=1)).alias("_e0"),
        price_book.entry_index_expr(catalog, pl.col("_bday")).alias("_e1"),
    )
    for side in ("0", "1"):
        names = {"entry": f"_e{side}", "price_units": f"p{side}", "unit_size": f"u{side}"}
        frame = frame.join(prices.rename(names), on=f"_e{side}", how="left")
    # P0/U0 != P1/U1, exactly; a side without any entry (null) differs from one with a price
    changed = (pl.col("p0") * pl.col("u1")).ne_missing(pl.col("p1") * pl.col("u0"))
    return frame.filter(changed).select(key_days.columns)


@dataclass(frozen=True)
class CostPlusLines:
    amounts: pl.DataFrame  # line_id, amount_minor (Int128): for the amount-overflow check
    words: pl.DataFrame  # WORDS_SCHEMA: what usage_lines needs of a cost-plus line
    at_risk: pl.DataFrame  # AT_RISK_SCHEMA: unpriced cost-plus usage, the customer held


WORDS_SCHEMA: dict[str, pl.DataType] = {
    "line_id": pl.Int64,
    "title": pl.String,  # the charge's title and the line's model: 'Tokens at list + 20 % (gpt-4o)'
    "period": pl.String,  # ' (Oct 15-31)' when the month is split
    "subject": pl.String,
    "explanation": pl.String,
    "unit_price": pl.String,  # null: a list price per meter, not one unit price
    "amount": pl.String,
    "tiers": pl.String,
}


def _dimensions_text(dimensions: str) -> str:
    dims = json.loads(dimensions or "{}")
    return f" ({', '.join(f'{k} {v}' for k, v in sorted(dims.items()))})" if dims else ""


def part_label(meter: str, dimensions: str) -> str:
    """What one part of a cost-plus line counts: 'cached input tokens (cache_ttl 1h)'."""
    unit = unit_name(meter)
    what = meter.replace("_tokens", "").replace("_", " ") + " tokens" if unit == "tokens" else unit
    return what + _dimensions_text(dimensions)


def list_price_text(unit_price, unit_size: int, currency: str) -> str:
    """A price-book entry's price as a part shows it: '$2.50 per 1M'."""
    return f"{fmt_unit_price(unit_price, currency)} {per_units(unit_size)}"


def explain(
    charge: Charge,
    currency: str,
    what: str,
    parts: list[tuple[str, int, str, Fraction]],
    billable: int,
) -> tuple[int, str]:
    """(amount in minor units, explanation) of a cost-plus line from its parts: (label, units,
    list price text, exact list cost), in order. ``what`` is '<units> <subject>'."""
    minor = MINOR_UNITS.get(currency.upper(), 2)
    shown = [p for p in parts if p[1]]
    if not shown:  # every unit included (or unpriced: then the customer is held anyway)
        return 0, f"{what}: nothing to charge"
    listed = sum((p[3] for p in shown), Fraction(0))
    markup = listed * Fraction(charge.markup or 0)
    fee = Fraction(
        billable * price_units(charge.unit_fee or Decimal(0), f"charge {charge.id} unit_fee"),
        10**SCALE * charge.unit_size,
    )
    total = listed + markup + fee
    amount_minor = round_div(total.numerator * 10**minor, total.denominator)
    words = "; ".join(
        f"{fmt_quantity(q)} {label} at {price} = {_ratio(cost, currency)}"
        for label, q, price, cost in shown
    )
    text = f"{words}: list cost {_ratio(listed, currency)}"
    if markup_words(charge):
        text += f" + {markup_words(charge)} {_ratio(markup, currency)}"
    if fee_words(charge, currency):
        text += (
            f" + {fee_words(charge, currency)} on {fmt_quantity(billable)} "
            f"{unit_name(charge.meters[0])} {_ratio(fee, currency)}"
        )
    minor_amount = fmt_money(_minor(amount_minor, minor), currency)
    return amount_minor, f"{text} = {minor_amount}"


def _ratio(value: Fraction, currency: str) -> str:
    return fmt_ratio_money(value.numerator, value.denominator, currency)


def _minor(amount_minor: int, minor: int) -> Decimal:
    return Decimal(amount_minor).scaleb(-minor)


def price(
    aggregated: pl.DataFrame,
    line_rows: pl.DataFrame,
    labels: dict,
    catalog: Catalog,
    month: str,
) -> CostPlusLines:
    """The cost-plus lines' amounts and words, and the usage the price book cannot price."""
    found = charges(catalog)
    lines = line_rows.filter(pl.col("pricing") == COST_PLUS)
    if not found or lines.height == 0:
        return CostPlusLines(
            pl.DataFrame(schema={"line_id": pl.Int64, "amount_minor": pl.Int128}),
            pl.DataFrame(schema=WORDS_SCHEMA),
            pl.DataFrame(schema=AT_RISK_SCHEMA),
        )
    start, _ = parse_month(month)
    rows = aggregated.filter(_is_cost_plus(catalog) & pl.col("line_id").is_not_null()).with_columns(
        (pl.col("quantity") - pl.col("included")).alias("billable"),
        pl.col("day").fill_null(pl.lit(start)).alias("_lookup"),
    )
    keys = rows.select(*USAGE_KEY, "_lookup").unique()
    keys = keys.with_columns(price_book.entry_index_expr(catalog, pl.col("_lookup")).alias("entry"))
    rows = rows.join(keys, on=[*USAGE_KEY, "_lookup"], how="left", nulls_equal=True)
    unpriced = rows.filter(pl.col("entry").is_null() & (pl.col("billable") > 0))
    parts = (
        rows.filter(pl.col("entry").is_not_null())
        .group_by("line_id", "meter", "dimensions", "entry")
        .agg(pl.col("billable").cast(pl.Int128).sum())
        .join(price_book.prices(catalog), on="entry", how="left")
        .with_columns(
            pl.col("meter")
            .replace_strict(list(METERS), list(range(len(METERS))), return_dtype=pl.Int64)
            .alias("_meter_rank")
        )
        .sort("line_id", "_meter_rank", "dimensions", "entry")
    )
    parts_of: dict[int, list] = {}
    for p in parts.iter_rows(named=True):
        parts_of.setdefault(p["line_id"], []).append(p)
    out: dict[str, list] = {k: [] for k in WORDS_SCHEMA}
    amounts = []
    for line in lines.iter_rows(named=True):
        charge = found[line["plan_id"], line["charge_id"]].price_from(line["price_from"])
        currency = catalog.plans[line["plan_id"]].currency
        minor = MINOR_UNITS.get(currency.upper(), 2)
        models = line["models"]
        model = models[0] if len(models) == 1 and models[0] else None
        what_subject = subject(charge, models)
        line_parts = []
        for p in parts_of.get(line["line_id"], []):
            entry = catalog.price_book[p["entry"]]
            line_parts.append(
                (
                    part_label(p["meter"], p["dimensions"]),
                    int(p["billable"]),
                    list_price_text(entry.unit_price, entry.unit_size, currency),
                    Fraction(int(p["billable"]) * p["price_units"], 10**SCALE * p["unit_size"]),
                )
            )
        amount_minor, text = explain(
            charge,
            currency,
            f"{fmt_quantity(line['billable'])} {what_subject}",
            line_parts,
            line["billable"],
        )
        group = (
            line["customer_id"],
            line["plan_id"],
            line["charge_id"],
            line["providers"][0],
            models[0],
        )
        out["line_id"].append(line["line_id"])
        out["title"].append(charge.title + (f" ({model})" if model else ""))
        out["period"].append(labels.get((*group, line["price_from"]), ""))
        out["subject"].append(what_subject)
        out["explanation"].append(text)
        out["unit_price"].append(None)
        out["amount"].append(amount_text(_minor(amount_minor, minor), currency))
        out["tiers"].append("[]")
        amounts.append((line["line_id"], amount_minor))
    return CostPlusLines(
        pl.DataFrame(
            amounts, schema={"line_id": pl.Int64, "amount_minor": pl.Int128}, orient="row"
        ),
        pl.DataFrame(out, schema=WORDS_SCHEMA),
        _at_risk(unpriced, aggregated),
    )


def _at_risk(unpriced: pl.DataFrame, aggregated: pl.DataFrame) -> pl.DataFrame:
    """AT_RISK rows of the customers with unpriced cost-plus usage: like every held customer,
    all its month's usage, one row per provider, model family and meter (rating_at_risk's held
    units are the customer's), each naming what has no price, or that it waits for it."""
    if unpriced.height == 0:
        return pl.DataFrame(schema=AT_RISK_SCHEMA)
    group = ["customer_id", "provider", "model", "meter"]
    missing = unpriced.group_by(
        "customer_id", "provider", pl.col("model_family").alias("model"), "meter"
    ).agg(
        pl.col("billable").cast(pl.Int128).sum().alias("_unpriced"),
        pl.col("_lookup").min().alias("_first"),
        pl.col("_lookup").max().alias("_last"),
        pl.first("charge_id").alias("_charge"),
    )
    first = (
        missing.sort(group, nulls_last=True)
        .group_by("customer_id")
        .agg(
            pl.format(
                "{} of {}", pl.first("meter"), pl.first("model").fill_null("(no model)")
            ).alias("_example")
        )
    )
    held = (
        aggregated.filter(pl.col("customer_id").is_in(missing["customer_id"].unique().implode()))
        .group_by("customer_id", "provider", pl.col("model_family").alias("model"), "meter")
        .agg(pl.sum("events"), pl.col("quantity").cast(pl.Int128).sum())
        .join(missing, on=group, how="left", nulls_equal=True)
        .join(first, on="customer_id", how="left")
    )
    detail = (
        pl.when(pl.col("_unpriced").is_not_null())
        .then(
            pl.format(
                "customer {}: {} {} of {} from {} ({} to {}) have no price in the price book, so "
                "the cost-plus charge {} cannot price them: not billed, held until a price_book "
                "entry prices them",
                pl.col("customer_id"),
                pl.col("_unpriced"),
                pl.col("meter"),
                pl.col("model").fill_null("(no model)"),
                pl.col("provider").fill_null("(no provider)"),
                pl.col("_first"),
                pl.col("_last"),
                pl.col("_charge"),
            )
        )
        .otherwise(
            pl.format(
                "customer {}: {} {} of {} not billed: the customer is held while its {} has no "
                "list price",
                pl.col("customer_id"),
                pl.col("quantity"),
                pl.col("meter"),
                pl.col("model").fill_null("(no model)"),
                pl.col("_example"),
            )
        )
    )
    return (
        held.with_columns(pl.lit(UNPRICED_COST).alias("reason"), detail.alias("detail"))
        .sort("customer_id", "provider", "meter", "model", nulls_last=True)
        .select(list(AT_RISK_SCHEMA))
        .cast(AT_RISK_SCHEMA)
    )
