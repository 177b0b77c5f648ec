"""How a usage line is described: its subject ("output tokens of gpt-4o"), its price period
(" (Oct 15-31)") and the explanation of how its amount follows from its quantity.

One path words every usage line: ``charge_words`` makes, once per charge and price period, every
word that does not depend on the quantity, and ``with_line_words`` writes each line's description
and wraps its explanation (the price period, the units the plan's allowance covered) as polars
expressions. Only the core of the explanation, "N units at price = amount", has two sources, and
must: a per-unit line's (the bulk, ~10^5 a month) is a polars expression
(``per_unit_explanations``); a graduated, volume or package line's is written by
``pricing.explain`` from the line's tier slices, a list of varying length, in Python
(``tiered_explanations``), the same function that words ``price_quantity`` for quotes.
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl

from billing_pipeline.catalog import Catalog, Charge
from billing_pipeline.money import (
    MINOR_UNITS,
    amount_text_expr,
    fmt_int_expr,
    money_text_expr,
)
from billing_pipeline.periods import parse_month
from billing_pipeline.rating.pricing import explain, price_text
from billing_pipeline.schema import unit_name


def subject(charge: Charge, models: list[str]) -> str:
    """What a line counts: 'input and output tokens of gpt-4o', 'GPU-hours (a, b)'."""
    meters = [m.replace("_tokens", "").replace("_", " ") for m in charge.meters]
    unit = unit_name(charge.meters[0])
    what = " and ".join(meters) + " tokens" if unit == "tokens" else unit
    if len(models) == 1 and models[0]:
        return f"{what} of {models[0]}"
    shown = [m for m in models if m]
    return f"{what} ({', '.join(shown)})" if shown else what


def period_label(charge: Charge, price_from: dt.date | None, month: str) -> str:
    """' (Oct 15-31)' when a price change inside the month splits the charge, else ''."""
    if not charge.prices:
        return ""
    start, end = parse_month(month)
    changes = [c.from_ for c in charge.prices or [] if start < c.from_ < end]
    if not changes:
        return ""
    bounds = [start, *changes, end]
    first = price_from if price_from is not None and price_from > start else start
    last = min(b for b in bounds if b > first) - dt.timedelta(days=1)
    return f" ({first:%b} {first.day}-{last.day})"


CHARGE_WORDS_SCHEMA: dict[str, pl.DataType] = {
    "plan_id": pl.String,
    "charge_id": pl.String,
    "price_from": pl.Date,
    "title": pl.String,
    "period": pl.String,
    "dimensions": pl.String,
    "meter": pl.String,
    "unit": pl.String,
    "unit_size": pl.Int64,
    "unit_price": pl.String,  # per-unit charges only
    "price_text": pl.String,  # per-unit charges only: '$0.0025 per 1K'
    "what": pl.String,  # the subject without its models
    "currency": pl.String,
    "minor": pl.Int64,  # the currency's minor digits, and 10^minor: for money.money_text_expr
    "pow10": pl.Int64,
    "allowance": pl.Int64,  # the plan's included units, if it has an allowance
}


def charge_words(line_rows: pl.DataFrame, catalog: Catalog, month: str) -> pl.DataFrame:
    """One row per (plan, charge, price period) of the month's lines: every word of a line that
    does not depend on its quantity, made once in Python (a few hundred rows, ~10^5 lines)."""
    rows = []
    charges = {(pid, c.id): c for pid, p in catalog.plans.items() for c in p.charges}
    for plan_id, charge_id, price_from in (
        line_rows.select("plan_id", "charge_id", "price_from").unique().iter_rows()
    ):
        plan = catalog.plans[plan_id]
        charge = charges[plan_id, charge_id]
        priced = charge.price_from(price_from)
        minor = MINOR_UNITS.get(plan.currency.upper(), 2)
        per_unit = charge.pricing == "per_unit"
        rows.append(
            {
                "plan_id": plan_id,
                "charge_id": charge_id,
                "price_from": price_from,
                "title": charge.title,
                "period": period_label(charge, price_from, month),
                "dimensions": json.dumps(charge.dimensions or {}, sort_keys=True),
                "meter": "+".join(charge.meters),
                "unit": unit_name(charge.meters[0]),
                "unit_size": charge.unit_size,
                "unit_price": str(priced.unit_price) if per_unit else None,
                "price_text": price_text(priced.unit_price, priced, plan.currency)
                if per_unit
                else None,
                "what": subject(charge, []),
                "currency": plan.currency,
                "minor": minor,
                "pow10": 10**minor,
                "allowance": plan.allowance.quantity if plan.allowance else None,
            }
        )
    return pl.DataFrame(rows, schema=CHARGE_WORDS_SCHEMA)


def per_unit_explanations(lines: pl.DataFrame) -> pl.DataFrame:
    """``lines`` (per-unit lines with their charge words and ``amount_minor``) with ``subject``,
    ``explanation`` ('1,200 input tokens of gpt-4o at $0.0025 per 1K = $0.00') and ``amount``
    ('0.00'): the words ``pricing.explain`` writes for a per-unit charge, as expressions."""
    model = pl.col("models").list.first()
    return lines.with_columns(
        pl.when(model.is_not_null() & (model != ""))
        .then(pl.col("what") + " of " + model)
        .otherwise(pl.col("what"))
        .alias("subject"),
    ).with_columns(
        (
            fmt_int_expr(pl.col("billable"))
            + " "
            + pl.col("subject")
            + " at "
            + pl.col("price_text")
            + " = "
            + money_text_expr(pl.col("amount_minor"))
        ).alias("explanation"),
        amount_text_expr(pl.col("amount_minor")).alias("amount"),
    )


TIERED_WORDS_SCHEMA: dict[str, pl.DataType] = {
    "line_id": pl.Int64,
    "subject": pl.String,
    "explanation": pl.String,
    "unit_price": pl.String,  # the single price that applied, null when several tiers did
    "amount": pl.String,
    "tiers": pl.String,  # JSON list of tier slices
}


def tiered_explanations(
    lines: pl.DataFrame, catalog: Catalog, amounts: pl.DataFrame, slices: pl.DataFrame
) -> pl.DataFrame:
    """TIERED_WORDS_SCHEMA for graduated, volume and package ``lines`` (one per customer and
    charge, ~10^4 a month), by ``pricing.explain`` from their vectorized amounts and slices."""
    ids = lines.select("line_id")
    amount_of = {
        r["line_id"]: r
        for r in _records(
            amounts.join(ids, on="line_id", how="semi").select(
                "line_id", "numerator", "denominator", "amount_minor"
            )
        )
    }
    slices_of: dict[int, list[dict]] = {}
    for r in _records(slices.join(ids, on="line_id", how="semi", maintain_order="left")):
        slices_of.setdefault(r["line_id"], []).append(r)
    charges = {(pid, c.id): c for pid, p in catalog.plans.items() for c in p.charges}
    priced: dict[tuple, Charge] = {}  # a few hundred charges and periods, ~10^4 lines
    subjects: dict[tuple, str] = {}
    out: dict[str, list] = {k: [] for k in TIERED_WORDS_SCHEMA}
    for line in _records(
        lines.select(
            "line_id",
            "plan_id",
            "charge_id",
            "price_from",
            "billable",
            "before",
            "models",
            "currency",
        )
    ):
        line_id = line["line_id"]
        key = (line["plan_id"], line["charge_id"])
        charge = charges[key]
        period = (*key, line["price_from"])
        if period not in priced:
            priced[period] = charge.price_from(line["price_from"])
        models = (*key, tuple(line["models"]))
        if models not in subjects:
            subjects[models] = subject(charge, line["models"])
        words = explain(
            priced[period],
            line["billable"],
            line["before"],
            line["currency"],
            subjects[models],
            [amount_of[line_id]] if line_id in amount_of else [],
            slices_of.get(line_id, []),
        )
        out["line_id"].append(line_id)
        out["subject"].append(subjects[models])
        out["explanation"].append(words.explanation)
        out["unit_price"].append(None if words.unit_price is None else str(words.unit_price))
        out["amount"].append(str(words.rounded))
        out["tiers"].append(json.dumps([t.as_json() for t in words.tiers]) if words.tiers else "[]")
    return pl.DataFrame(out, schema=TIERED_WORDS_SCHEMA)


def with_line_words(lines: pl.DataFrame) -> pl.DataFrame:
    """``lines`` (with their charge words, ``subject`` and the core ``explanation``) with their
    ``description`` ('Output tokens (gpt-4o) (Oct 15-31)') and whole ``explanation``: 'Usage
    (Oct 15-31) at the prices in effect then: ...' when a price change splits the month, led by
    '..., of which N were covered by the plan's included M units; ' when the allowance did."""
    model = pl.col("models").list.first()
    named = (pl.col("pricing") == "per_unit") & model.is_not_null() & (model != "")
    description = (
        pl.col("title")
        + pl.when(named).then(" (" + model + ")").otherwise(pl.lit(""))
        + pl.col("period")
    )
    explanation = (
        pl.when(pl.col("period") != "")
        .then(
            "Usage" + pl.col("period") + " at the prices in effect then: " + pl.col("explanation")
        )
        .otherwise(pl.col("explanation"))
    )
    covered = (  # only lines with included units pay for these three numbers
        fmt_int_expr(pl.col("quantity"))
        + " "
        + pl.col("subject")
        + ", of which "
        + fmt_int_expr(pl.col("included"))
        + " were covered by the plan's included "
        + fmt_int_expr(pl.col("allowance"))
        + " units; "
        + pl.col("explanation")  # already led by its price period
    )
    worded = lines.with_columns(description.alias("description"), explanation.alias("explanation"))
    included = worded["included"] != 0
    if not included.any():
        return worded
    at = included.arg_true()  # the few such lines get the longer words, in place
    return worded.with_columns(
        worded["explanation"].scatter(at, worded.filter(included).select(covered).to_series())
    )


def _records(frame: pl.DataFrame) -> list[dict]:
    """Rows as dicts, column-wise (much cheaper than iter_rows(named=True) for 10^5 rows)."""
    names = frame.columns
    return [
        dict(zip(names, row, strict=True))
        for row in zip(*(frame.get_column(n).to_list() for n in names), strict=True)
    ]
