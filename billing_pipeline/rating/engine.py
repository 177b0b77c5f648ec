"""Rating a month: attributed usage + the catalog -> invoice line items per customer.

Order of work, so that 10 M events stay cheap (rating/assign.py): give each event its plan by a
join on (customer, day), aggregate to customer x plan x provider x model x meter x dimensions x
day, and match charges on the distinct keys of that aggregate; only allowance-covered events stay
event-level (included units are consumed in time order). The prices are then one polars pass over
the month's lines (rating/vectorized.py): per_unit, graduated (each tier's slice by clip
arithmetic), volume and package, in **exact Int128 integers of 10^-12 currency units**, rounded
once per line half up by integer division. Int128 because a product of two int64 (quantity x
scaled price) cannot wrap in it, and inputs past int64 are refused with a clear error; polars
Decimal(38, s) was not chosen because it rescales products and does not document half-up division.
Explanations are then written per line in Python (customers x charges), from those numbers.

Semantics (DESIGN.md "Catalog"), chosen where the design is silent:
- per-unit charges get one line per provider and model family; tiered and package charges get one
  line per charge, whose tiers apply to the whole month's quantity across the models it covers;
- allowance units are consumed first, in event time order (ties by event id), across the meters the
  allowance names; tiers then apply to the quantity left to charge;
- the base fee is prorated by subscribed days / days in the month; the minimum commitment is
  compared with the usage lines (base fee excluded) and is not prorated;
- each line is rounded once (money.ROUNDING) and the minimum-commitment true-up is computed from
  rounded lines, so every number on the invoice is a sum of numbers printed above it.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

import polars as pl

from billing_pipeline.catalog import Catalog, Charge
from billing_pipeline.money import MINOR_UNITS, fmt_money, fmt_quantity, round_money
from billing_pipeline.periods import days_in_month, month_label, overlap_days, parse_month
from billing_pipeline.rating.assign import AT_RISK_SCHEMA, aggregate_usage
from billing_pipeline.rating.discounts import discount_lines
from billing_pipeline.rating.pricing import explain, per_unit_words, price_text
from billing_pipeline.rating.vectorized import AMOUNT_OVERFLOW, I64_MAX, price_lines, price_table
from billing_pipeline.schema import unit_name

LINE_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String,
    "plan_id": pl.String,
    "position": pl.Int64,
    "charge_id": pl.String,
    "description": pl.String,
    "provider": pl.String,
    "meter": pl.String,
    "model": pl.String,
    "dimensions": pl.String,
    "quantity": pl.Int64,
    "included_quantity": pl.Int64,
    "unit": pl.String,
    "unit_size": pl.Int64,
    "unit_price": pl.String,
    "pricing": pl.String,
    "amount": pl.String,  # rounded to the currency's minor unit
    "currency": pl.String,
    "tiers": pl.String,  # JSON list of tier slices
    "components": pl.String,  # JSON list of {provider, model, quantity}: what the line is made of
    "daily": pl.String,  # JSON list of {day, model, quantity}: charged units per day, for the chart
    "explanation": pl.String,
    "consideration": pl.String,  # fixed | variable (IFRS 15 / ASC 606 wording)
}

UNRATED_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String,
    "plan_id": pl.String,
    "provider": pl.String,
    "model": pl.String,
    "meter": pl.String,
    "reason": pl.String,
    "events": pl.UInt32,
    "quantity": pl.Int64,
}


def _no_risk() -> pl.DataFrame:
    return pl.DataFrame(schema=AT_RISK_SCHEMA)


@dataclass(frozen=True)
class RatedMonth:
    lines: pl.DataFrame  # LINE_SCHEMA
    unrated: pl.DataFrame  # UNRATED_SCHEMA: attributed usage no charge prices, reported not dropped
    # AT_RISK_SCHEMA (rating/assign.py): usage of customers whose month cannot be rated exactly
    # (reason quantity_overflow, negative_quantity or amount_overflow), one row per provider x
    # meter x model. Such a customer has NO row in ``lines`` or ``unrated``: money at risk, to hold.
    at_risk: pl.DataFrame = field(default_factory=_no_risk)


def _subject(charge: Charge, models: list[str]) -> str:
    meters = [m.replace("_tokens", "").replace("_", " ") for m in charge.meters]
    unit = unit_name(charge.meters[0])
    what = " and ".join(meters) + " tokens" if unit == "tokens" else unit
    if len(models) == 1 and models[0]:
        return f"{what} of {models[0]}"
    shown = [m for m in models if m]
    return f"{what} ({', '.join(shown)})" if shown else what


def _line(customer_id, plan_id, position, currency, **fields) -> dict:
    base = dict.fromkeys(LINE_SCHEMA)
    base.update(
        customer_id=customer_id,
        plan_id=plan_id,
        position=position,
        currency=currency,
        dimensions="{}",
        tiers="[]",
        components="[]",
        daily="[]",
        included_quantity=0,
    )
    base.update(fields)
    return base


def _period_label(charge: Charge, price_from, month: str) -> str:
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


def _line_frames(aggregated: pl.DataFrame, catalog: Catalog) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(lines, line_of): one row per invoice line with billable/before/month_total for pricing,
    and the map from aggregate keys to line_id. per_unit: a line per provider and model family;
    tiered and package: a line per price period, tiers running on across the periods."""
    kinds = pl.DataFrame(
        [(pid, c.id, c.pricing) for pid, p in catalog.plans.items() for c in p.charges],
        schema={"plan_id": pl.String, "charge_id": pl.String, "pricing": pl.String},
        orient="row",
    )
    charge_key = ["customer_id", "plan_id", "charge_id"]
    period_key = [*charge_key, "price_from"]
    model_key = [*period_key, "provider", "model_family"]
    groups = (
        aggregated.filter(pl.col("charge_id").is_not_null())
        .group_by(model_key)
        .agg(pl.sum("quantity"), pl.sum("included"))
        .join(kinds, on=["plan_id", "charge_id"], how="left")
        .with_columns(
            pl.when(pl.col("pricing") == "per_unit")
            .then(pl.col("provider"))
            .alias("line_provider"),
            pl.when(pl.col("pricing") == "per_unit")
            .then(pl.col("model_family"))
            .alias("line_model"),
        )
    )
    line_key = [*period_key, "line_provider", "line_model"]
    order = pl.col("price_from").fill_null(dt.date.min)
    component = pl.struct(
        "provider", pl.col("model_family").alias("model"), "quantity"
    ).struct.json_encode()
    single = groups.filter(
        pl.col("pricing") == "per_unit"
    ).select(  # one group, one line: no second group-by
        *line_key,
        "pricing",
        "quantity",
        "included",
        pl.concat_list("provider").alias("providers"),
        pl.concat_list("model_family").alias("models"),
        component.alias("components"),
    )
    several = (
        groups.filter(pl.col("pricing") != "per_unit")
        .sort(*charge_key, order, "provider", pl.col("model_family").fill_null(""))
        .group_by(line_key, maintain_order=True)
        .agg(
            pl.first("pricing"),
            pl.sum("quantity"),
            pl.sum("included"),
            pl.col("provider").unique().sort().alias("providers"),
            pl.col("model_family").unique().sort().alias("models"),
            component.str.join(",").alias("components"),
        )
    )
    lines = (
        pl.concat([single, several])
        .sort(
            *charge_key,
            order,
            pl.col("providers").list.first(),
            pl.col("models").list.first().fill_null(""),
        )
        .with_row_index("line_id")
        .with_columns(
            pl.col("line_id").cast(pl.Int64),
            (pl.col("quantity") - pl.col("included")).alias("billable"),
        )
        .with_columns(("[" + pl.col("components") + "]").alias("components"))
    )
    # Tiers and packages run on across a month split by a price change: units before this line's
    # period, and the month's total (volume). Per-unit prices need neither (0 and their own units).
    tiered = pl.col("pricing") != "per_unit"
    runs_on = lines.filter(tiered).select(
        "line_id",
        (pl.col("billable").cum_sum().over(charge_key, order_by=order) - pl.col("billable")).alias(
            "before"
        ),
        pl.col("billable").sum().over(charge_key).alias("month_total"),
    )
    lines = lines.join(runs_on, on="line_id", how="left", maintain_order="left").with_columns(
        pl.col("before").fill_null(0), pl.col("month_total").fill_null(pl.col("billable"))
    )
    line_of = groups.join(
        lines.select(*line_key, "line_id"), on=line_key, how="left", nulls_equal=True
    )
    return lines, line_of.select(*model_key, "line_id")


def _daily(
    aggregated: pl.DataFrame, series_days: pl.DataFrame, line_of: pl.DataFrame
) -> pl.DataFrame:
    """line_id -> JSON list of {day, model, quantity}: charged units per day, for the chart, in
    day, provider, model order. Rows that carry their day give it themselves; a steady row's days
    come from ``series_days``. A month has ~10^6 such points: they are summed and sorted on one
    packed integer (line, day, provider rank, model rank), and each point's JSON is its quantity
    after a prefix made once per (day, model)."""
    keys = ["customer_id", "plan_id", "charge_id", "price_from", "provider", "model_family"]
    rows = (
        aggregated.filter(pl.col("charge_id").is_not_null())
        .join(line_of, on=keys, how="inner", nulls_equal=True)
        .select(
            "line_id",
            "provider",
            "model_family",
            "day",
            "series",
            (pl.col("quantity") - pl.col("included")).alias("billable"),
        )
    )
    if rows.height == 0:
        return pl.DataFrame(schema={"line_id": pl.Int64, "daily": pl.String})
    providers = rows["provider"].fill_null("").unique().sort()
    models = rows["model_family"].unique().sort(nulls_last=False)
    first = min(
        [d for d in (rows["day"].min(), series_days["day"].min()) if d is not None],
        default=dt.date.min,
    )
    n_p, n_m, n_d = (
        max(providers.len(), 1),
        max(models.len(), 1),
        32,
    )  # days: a month spans <= 31 from its first
    rank = pl.col("provider").fill_null("").replace_strict(
        providers, pl.int_range(providers.len(), eager=True), return_dtype=pl.Int64
    ) * n_m + pl.col("model_family").replace_strict(
        models, pl.int_range(models.len(), eager=True), return_dtype=pl.Int64
    )
    rows = rows.with_columns(rank.alias("_rank")).drop("provider", "model_family")
    by_series = (
        rows.filter(pl.col("series").is_not_null())
        .drop("day", "billable")
        .join(series_days.rename({"quantity": "billable"}), on="series")
    )
    points = pl.concat([rows.filter(pl.col("series").is_null()), by_series], how="diagonal").select(
        (
            (pl.col("line_id") * n_d + (pl.col("day") - first).dt.total_days()) * (n_p * n_m)
            + pl.col("_rank")
        ).alias("_key"),
        "billable",
    )
    prefixes = pl.Series(
        [
            f'{{"day":"{first + dt.timedelta(days=d)}","model":{json.dumps(m, ensure_ascii=False)},"quantity":'
            for d in range(n_d)
            for _ in range(n_p)
            for m in (models.to_list() or [None])
        ]
    )
    return (
        points.group_by("_key")
        .agg(pl.sum("billable"))
        .filter(pl.col("billable") != 0)
        .sort("_key")
        .select(
            (pl.col("_key") // (n_d * n_p * n_m)).alias("line_id"),
            (
                pl.lit(prefixes).gather(pl.col("_key") % (n_d * n_p * n_m))
                + pl.col("billable").cast(pl.String)
                + "}"
            ).alias("point"),
        )
        .group_by("line_id", maintain_order=True)
        .agg(pl.col("point").str.join(","))
        .select("line_id", ("[" + pl.col("point") + "]").alias("daily"))
    )


class _LineWords:
    """Per-line words that depend only on the charge, its price period or its models: computed
    once per key, not once per line (a month has ~10^5 lines and a few hundred such keys)."""

    def __init__(self, month: str):
        self.month = month
        self._period: dict = {}
        self._subject: dict = {}

    def period(self, plan_id: str, charge: Charge, price_from) -> tuple[Charge, str, str, str, str]:
        key = (plan_id, charge.id, price_from)
        hit = self._period.get(key)
        if hit is None:
            hit = (
                charge.price_from(price_from),
                _period_label(charge, price_from, self.month),
                json.dumps(charge.dimensions or {}, sort_keys=True),
                "+".join(charge.meters),
                unit_name(charge.meters[0]),
            )
            self._period[key] = hit
        return hit

    def subject(self, plan_id: str, charge: Charge, models: list[str]) -> str:
        key = (plan_id, charge.id, tuple(models))
        hit = self._subject.get(key)
        if hit is None:
            hit = self._subject[key] = _subject(charge, models)
        return hit


def _usage_line(
    line: dict,
    plan,
    charge: Charge,
    amounts: list[dict],
    slices: list[dict],
    daily: str,
    words: _LineWords,
) -> dict:
    """One usage line from its vectorized result: the numbers are read, only words are made here."""
    currency = plan.currency
    models, providers = line["models"], line["providers"]
    priced_charge, period, dimensions, meter, unit = words.period(
        line["plan_id"], charge, line["price_from"]
    )
    subject = words.subject(line["plan_id"], charge, models)
    if (
        priced_charge.pricing == "per_unit" and amounts
    ):  # the bulk of a month: words only, no Priced
        minor = MINOR_UNITS.get(currency.upper(), 2)
        rounded = Decimal(amounts[0]["amount_minor"]).scaleb(-minor)
        explanation = per_unit_words(
            priced_charge, line["billable"], currency, subject, rounded, minor
        )
        unit_price, amount, tiers = str(priced_charge.unit_price), str(rounded), "[]"
    else:
        priced = explain(
            priced_charge, line["billable"], line["before"], currency, subject, amounts, slices
        )
        explanation = priced.explanation
        unit_price = None if priced.unit_price is None else str(priced.unit_price)
        amount = str(priced.rounded)
        tiers = json.dumps([t.as_json() for t in priced.tiers]) if priced.tiers else "[]"
    if period:
        explanation = f"Usage{period} at the prices in effect then: " + explanation
    quantity, included = line["quantity"], line["included"]
    if included:
        explanation = (
            f"{fmt_quantity(quantity)} {subject}, of which {fmt_quantity(included)} were covered "
            f"by the plan's included {fmt_quantity(plan.allowance.quantity)} units; " + explanation
        )
    return _line(
        line["customer_id"],
        line["plan_id"],
        0,
        currency,
        charge_id=charge.id,
        description=charge.title
        + (f" ({models[0]})" if charge.pricing == "per_unit" and models[0] else "")
        + period,
        provider=providers[0] if len(providers) == 1 else "+".join(providers),
        meter=meter,
        model=models[0] if len(models) == 1 else None,
        dimensions=dimensions,
        quantity=line["billable"],
        included_quantity=included,
        unit=unit,
        unit_size=charge.unit_size,
        unit_price=unit_price,
        pricing=charge.pricing,
        amount=amount,
        tiers=tiers,
        components=line["components"],
        daily=daily,
        explanation=explanation,
        consideration="variable",
    )


def _records(frame: pl.DataFrame) -> list[dict]:
    """Rows as dicts, column-wise (much cheaper than iter_rows(named=True) for 10^5 rows)."""
    names = frame.columns
    return [
        dict(zip(names, row, strict=True))
        for row in zip(*(frame.get_column(n).to_list() for n in names), strict=True)
    ]


def fmt_int_expr(value: pl.Expr) -> pl.Expr:
    """money.fmt_quantity as an expression: 1234567 -> '1,234,567' (any int64). Integer arithmetic
    per group of three digits: about 3x cheaper than a regex over the reversed digits."""
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
    """(sign, whole units, '.' + zero-padded minor digits or '') of an amount in minor units;
    needs the columns ``minor`` and ``pow10`` (10^minor)."""
    a = amount_minor.abs()
    sign = pl.when(amount_minor < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    frac = (
        pl.when(pl.col("minor") > 0)
        .then("." + (a % pl.col("pow10")).cast(pl.String).str.zfill(pl.col("minor")))
        .otherwise(pl.lit(""))
    )
    return sign, a // pl.col("pow10"), frac


def amount_text_expr(amount_minor: pl.Expr) -> pl.Expr:
    """str(Decimal amount) from minor units: 123456 -> '1234.56' (the line's ``amount``)."""
    sign, whole, frac = _minor_parts(amount_minor)
    return sign + whole.cast(pl.String) + frac


def money_text_expr(amount_minor: pl.Expr) -> pl.Expr:
    """money.fmt_money of an amount in minor units: '$1,234.56', '1,234.56 EUR'; needs ``currency``."""
    sign, whole, frac = _minor_parts(amount_minor)
    text = fmt_int_expr(whole) + frac
    usd = pl.col("currency").str.to_uppercase() == "USD"
    return (
        pl.when(usd)
        .then(sign + "$" + text)
        .otherwise(sign + text + " " + pl.col("currency").str.to_uppercase())
    )


def _charge_words(
    line_rows: pl.DataFrame, catalog: Catalog, month: str, words: _LineWords
) -> pl.DataFrame:
    """One row per (plan, charge, price period) of the month's lines: every word of a line that
    does not depend on its quantity, made once in Python (a few hundred rows)."""
    rows = []
    charges = {(pid, c.id): c for pid, p in catalog.plans.items() for c in p.charges}
    for plan_id, charge_id, price_from in (
        line_rows.select("plan_id", "charge_id", "price_from").unique().iter_rows()
    ):
        plan = catalog.plans[plan_id]
        charge = charges[plan_id, charge_id]
        priced, period, dimensions, meter, unit = words.period(plan_id, charge, price_from)
        minor = MINOR_UNITS.get(plan.currency.upper(), 2)
        per_unit = priced.pricing == "per_unit"
        rows.append(
            {
                "plan_id": plan_id,
                "charge_id": charge_id,
                "price_from": price_from,
                "vectorized": per_unit,
                "title": charge.title,
                "period": period,
                "dimensions": dimensions,
                "meter": meter,
                "unit": unit,
                "unit_size": charge.unit_size,
                "base_pricing": charge.pricing,
                "unit_price": str(priced.unit_price) if per_unit else None,
                "price_text": price_text(priced.unit_price, priced, plan.currency)
                if per_unit
                else None,
                "what": _subject(charge, []),
                "currency": plan.currency,
                "minor": minor,
                "pow10": 10**minor,
                "allowance": plan.allowance.quantity if plan.allowance else None,
            }
        )
    schema = {
        "plan_id": pl.String,
        "charge_id": pl.String,
        "price_from": pl.Date,
        "vectorized": pl.Boolean,
        "title": pl.String,
        "period": pl.String,
        "dimensions": pl.String,
        "meter": pl.String,
        "unit": pl.String,
        "unit_size": pl.Int64,
        "base_pricing": pl.String,
        "unit_price": pl.String,
        "price_text": pl.String,
        "what": pl.String,
        "currency": pl.String,
        "minor": pl.Int64,
        "pow10": pl.Int64,
        "allowance": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema)


def _per_unit_lines(
    lines: pl.DataFrame, amounts: pl.DataFrame, daily: pl.DataFrame | None
) -> pl.DataFrame:
    """The month's per-unit lines (the bulk: one per customer x charge x model), words and all,
    as polars expressions: the same text ``_usage_line`` writes, without a Python loop."""
    model = pl.col("models").list.first()
    subject = (
        pl.when(model.is_not_null() & (model != ""))
        .then(pl.col("what") + " of " + model)
        .otherwise(pl.col("what"))
    )
    money = money_text_expr(pl.col("amount_minor"))
    explanation = (
        fmt_int_expr(pl.col("billable"))
        + " "
        + subject
        + " at "
        + pl.col("price_text")
        + " = "
        + money
    )
    explanation = (
        pl.when(pl.col("period") != "")
        .then("Usage" + pl.col("period") + " at the prices in effect then: " + explanation)
        .otherwise(explanation)
    )
    covered = (  # only lines with included units pay for these three numbers (when/then would not spare them)
        fmt_int_expr(pl.col("quantity"))
        + " "
        + subject
        + ", of which "
        + fmt_int_expr(pl.col("included"))
        + " were covered by the plan's included "
        + fmt_int_expr(pl.col("allowance"))
        + " units; "
        + explanation
    )
    named = (pl.col("base_pricing") == "per_unit") & model.is_not_null() & (model != "")
    frame = lines.join(amounts.select("line_id", "amount_minor"), on="line_id", how="inner")
    if daily is not None:
        frame = frame.join(daily, on="line_id", how="left")
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("daily"))
    has_included = pl.col("included") != 0
    return pl.concat(
        [
            _per_unit_columns(frame.filter(~has_included), model, named, explanation),
            _per_unit_columns(frame.filter(has_included), model, named, covered),
        ]
    )


def _per_unit_columns(
    frame: pl.DataFrame, model: pl.Expr, named: pl.Expr, explanation: pl.Expr
) -> pl.DataFrame:
    return frame.select(
        "customer_id",
        "plan_id",
        pl.lit(0, dtype=pl.Int64).alias("position"),
        "charge_id",
        (
            pl.col("title")
            + pl.when(named).then(" (" + model + ")").otherwise(pl.lit(""))
            + pl.col("period")
        ).alias("description"),
        pl.col("providers").list.join("+").alias("provider"),
        "meter",
        pl.when(pl.col("models").list.len() == 1).then(model).alias("model"),
        "dimensions",
        pl.col("billable").alias("quantity"),
        pl.col("included").alias("included_quantity"),
        "unit",
        "unit_size",
        "unit_price",
        pl.col("base_pricing").alias("pricing"),
        amount_text_expr(pl.col("amount_minor")).alias("amount"),
        "currency",
        pl.lit("[]").alias("tiers"),
        "components",
        pl.col("daily").fill_null("[]"),
        explanation.alias("explanation"),
        pl.lit("variable").alias("consideration"),
        "line_id",
    )


@contextmanager
def _gc_paused():
    """The cyclic GC off while ~10^4 line dicts are built (they hold no cycles; its passes cost
    ~15% of rate_month at 1 M events); restored as it was, also on error."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def rate_month(
    usage: pl.DataFrame | pl.LazyFrame, catalog: Catalog, month: str, *, daily: bool = True
) -> RatedMonth:
    """Line items for every customer with a subscription or usage in ``month``.

    ``daily=False`` skips the per-day quantities of each line (``daily`` = "[]"), which only the
    invoice chart reads: without them a steady customer's usage is aggregated without its day."""
    with _gc_paused():
        return _rate_month(usage, catalog, month, daily)


_SORT = {
    "_customer": pl.Int64,
    "_sub": pl.Int64,
    "_kind": pl.Int64,
    "_charge": pl.Int64,
    "line_id": pl.Int64,
}


def _rate_month(
    usage: pl.DataFrame | pl.LazyFrame, catalog: Catalog, month: str, with_daily: bool
) -> RatedMonth:
    aggregated, series_days, at_risk = aggregate_usage(usage, catalog, month, by_day=with_daily)
    unrated = (
        aggregated.filter(pl.col("charge_id").is_null())
        .with_columns(
            pl.when(pl.col("plan_id").is_null())
            .then(pl.lit("no_active_subscription"))
            .otherwise(pl.lit("no_charge_in_plan"))
            .alias("reason"),
            pl.col("model_family").alias("model"),
        )
        .group_by("customer_id", "plan_id", "provider", "model", "meter", "reason")
        .agg(pl.sum("events").alias("events"), pl.sum("quantity"))
        .sort("customer_id", "provider", "model", "meter")
    )
    line_rows, line_of = _line_frames(aggregated, catalog)
    amounts, slices = price_lines(line_rows, price_table(catalog))
    at_risk = pl.concat([at_risk, _amount_overflow(line_rows, amounts, aggregated)])
    daily = _daily(aggregated, series_days, line_of) if with_daily else None
    words = _LineWords(month)
    described = line_rows.join(
        _charge_words(line_rows, catalog, month, words),
        on=["plan_id", "charge_id", "price_from"],
        how="left",
        nulls_equal=True,
    )
    in_columns = pl.col("vectorized") & pl.col("line_id").is_in(amounts["line_id"].implode())
    # The tiered lines are worded in Python while polars builds the per-unit lines (it releases the GIL).
    with ThreadPoolExecutor(max_workers=1) as pool:
        worded = pool.submit(
            _worded_lines, described.filter(~in_columns), catalog, amounts, slices, daily, words
        )
        vectorized = _per_unit_lines(described.filter(in_columns), amounts, daily)
        usage_lines = pl.concat([vectorized, worded.result()])
    fixed, keys = _fixed_lines(catalog, month, usage_lines)
    columns = [*LINE_SCHEMA, *_SORT]
    ordered = (
        pl.concat(
            [
                usage_lines.join(
                    keys, on=["customer_id", "plan_id", "charge_id"], how="left"
                ).select(columns),
                fixed.select(columns),
            ]
        )
        .sort(*_SORT)
        .with_columns(pl.int_range(pl.len()).over("customer_id").cast(pl.Int64).alias("position"))
    )
    held = at_risk["customer_id"].unique().implode()
    return RatedMonth(
        lines=ordered.filter(~pl.col("customer_id").is_in(held))
        .select(list(LINE_SCHEMA))
        .cast(LINE_SCHEMA),
        unrated=unrated.filter(~pl.col("customer_id").is_in(held))
        .select(list(UNRATED_SCHEMA))
        .cast(UNRATED_SCHEMA),
        at_risk=at_risk,
    )


def _amount_overflow(
    line_rows: pl.DataFrame, amounts: pl.DataFrame, aggregated: pl.DataFrame
) -> pl.DataFrame:
    """AT_RISK rows (reason amount_overflow) for customers with a line whose amount, in minor
    units, does not fit int64: no ledger, document or text formatter downstream holds it exactly
    (a quantity that fits can still, at a price of millions per unit, make such an amount)."""
    big = (
        line_rows.select("line_id", "customer_id")
        .join(amounts.select("line_id", "amount_minor"), on="line_id")
        .filter(pl.col("amount_minor").abs() > I64_MAX)["customer_id"]
        .unique()
    )
    if big.len() == 0:
        return pl.DataFrame(schema=AT_RISK_SCHEMA)
    return (
        aggregated.filter(pl.col("customer_id").is_in(big.implode()))
        .group_by("customer_id", "provider", pl.col("model_family").alias("model"), "meter")
        .agg(pl.sum("events"), pl.col("quantity").cast(pl.Int128).sum())
        .with_columns(
            pl.lit(AMOUNT_OVERFLOW).alias("reason"),
            pl.format(
                "customer {}: a line of its month amounts to more than 2^63-1 minor units of currency ({} of {}: {} "
                "base units): not rated, held for review",
                pl.col("customer_id"),
                pl.col("meter"),
                pl.col("model").fill_null("(no model)"),
                pl.col("quantity"),
            ).alias("detail"),
        )
        .sort("customer_id", "provider", "meter", "model", nulls_last=True)
        .select(list(AT_RISK_SCHEMA))
        .cast(AT_RISK_SCHEMA)
    )


def _worded_lines(
    rows: pl.DataFrame,
    catalog: Catalog,
    amounts: pl.DataFrame,
    slices: pl.DataFrame,
    daily: pl.DataFrame | None,
    words: _LineWords,
) -> pl.DataFrame:
    """Tiered, volume and package lines (one per customer and charge, ~10^4 a month): their words
    depend on the tier slices, so they are written in Python by ``pricing.explain``."""
    ids = rows.select("line_id")
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
    daily_of = (
        dict(daily.join(ids, on="line_id", how="semi").iter_rows()) if daily is not None else {}
    )
    charges = {(pid, c.id): c for pid, p in catalog.plans.items() for c in p.charges}
    out = []
    for line in _records(
        rows.select(
            "line_id",
            "customer_id",
            "plan_id",
            "charge_id",
            "price_from",
            "quantity",
            "included",
            "billable",
            "before",
            "providers",
            "models",
            "components",
        )
    ):
        line_id = line["line_id"]
        plan = catalog.plans[line["plan_id"]]
        worded = _usage_line(
            line,
            plan,
            charges[line["plan_id"], line["charge_id"]],
            [amount_of[line_id]] if line_id in amount_of else [],
            slices_of.get(line_id, []),
            daily_of.get(line_id, "[]"),
            words,
        )
        worded["line_id"] = line_id
        out.append(worded)
    schema = {**LINE_SCHEMA, "line_id": pl.Int64}
    return pl.DataFrame({k: [line[k] for line in out] for k in schema}, schema=schema)


def _base_fee_fields(plan, days: int, month: str, label: str) -> dict:
    currency, total_days = plan.currency, days_in_month(month)
    amount = plan.base_fee * Decimal(days) / Decimal(total_days)
    prorated = "" if days == total_days else f", prorated for {days} of {total_days} days"
    return dict(
        charge_id="base_fee",
        description=f"{plan.name} subscription, {label}",
        quantity=1,
        unit="month",
        unit_size=1,
        unit_price=str(plan.base_fee),
        pricing="fixed",
        amount=str(round_money(amount, currency)),
        explanation=f"Monthly base fee {fmt_money(plan.base_fee, currency)}{prorated} = {fmt_money(amount, currency)}",
        consideration="fixed",
    )


def _fixed_lines(
    catalog: Catalog, month: str, usage_lines: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Base fees, minimum-commitment true-ups and discounts (a few per customer, in Python), and
    the order keys of the usage lines: per customer, each plan in subscription order with its base
    fee, its usage lines in charge order, its true-up; the customer's discounts last."""
    usage_total = dict(
        ((c, p), t)
        for c, p, t in usage_lines.group_by("customer_id", "plan_id")
        .agg(pl.col("amount").cast(pl.Decimal(38, 12)).sum())
        .iter_rows()
    )
    label = month_label(month)
    lines: list[dict] = []
    keys: list[tuple] = []
    base_fees: dict[tuple[str, int], dict] = {}  # the same words for every customer on the plan
    for n, (customer_id, customer) in enumerate(catalog.customers.items()):
        plan_totals: list[tuple[str, Decimal]] = []
        seen: set[str] = set()
        currency = None
        for s, sub in enumerate(customer.subscriptions):
            days = overlap_days(month, sub.from_, sub.to)
            if days == 0:
                continue
            plan_id, plan = sub.plan, catalog.plans[sub.plan]
            currency = plan.currency
            first = plan_id not in seen  # the plan's usage lines go with its first subscription
            seen.add(plan_id)
            order = {"_customer": n, "_sub": s, "_charge": 0, "line_id": 0}
            plan_lines: list[dict] = []
            if first:
                keys.append((customer_id, plan_id, n, s))
            if plan.base_fee:
                fee = base_fees.get((plan_id, days))
                if fee is None:
                    fee = base_fees[plan_id, days] = _base_fee_fields(plan, days, month, label)
                plan_lines.append(_line(customer_id, plan_id, 0, currency, **order, _kind=0, **fee))
            usage = round_money(
                usage_total.get((customer_id, plan_id), Decimal(0)) if first else Decimal(0),
                currency,
            )
            if plan.minimum_commitment and usage < plan.minimum_commitment:
                gap = plan.minimum_commitment - usage
                plan_lines.append(
                    _line(
                        customer_id,
                        plan_id,
                        0,
                        currency,
                        **order,
                        _kind=2,
                        charge_id="minimum_commitment",
                        description=f"Minimum commitment true-up, {label}",
                        quantity=1,
                        unit="month",
                        unit_size=1,
                        unit_price=str(gap),
                        pricing="fixed",
                        amount=str(round_money(gap, currency)),
                        explanation=f"Usage charges {fmt_money(usage, currency)} are below the monthly "
                        f"commitment of {fmt_money(plan.minimum_commitment, currency)}; the difference "
                        f"{fmt_money(gap, currency)} is billed",
                        consideration="fixed",
                    )
                )
            lines += plan_lines
            plan_totals.append(
                (plan_id, usage + sum((Decimal(ln["amount"]) for ln in plan_lines), Decimal(0)))
            )
        if customer.discounts and plan_totals:
            for i, d in enumerate(discount_lines(customer.discounts, month, plan_totals, currency)):
                lines.append(
                    _line(
                        customer_id,
                        d.plan_id,
                        0,
                        currency,
                        _customer=n,
                        _sub=len(customer.subscriptions),
                        _kind=3,
                        _charge=0,
                        line_id=i,
                        charge_id=f"discount_{d.index}",
                        description=d.description,
                        quantity=1,
                        unit="discount",
                        unit_size=1,
                        unit_price=str(d.amount),
                        pricing="discount",
                        amount=str(d.amount),
                        explanation=d.explanation,
                        consideration="fixed",
                    )
                )
    schema = {**LINE_SCHEMA, **_SORT}
    fixed = pl.DataFrame({k: [line[k] for line in lines] for k in schema}, schema=schema)
    charge_index = pl.DataFrame(
        [(pid, c.id, i) for pid, p in catalog.plans.items() for i, c in enumerate(p.charges)],
        schema={"plan_id": pl.String, "charge_id": pl.String, "_charge": pl.Int64},
        orient="row",
    )
    order_keys = (
        pl.DataFrame(
            keys,
            schema={
                "customer_id": pl.String,
                "plan_id": pl.String,
                "_customer": pl.Int64,
                "_sub": pl.Int64,
            },
            orient="row",
        )
        .join(charge_index, on="plan_id")
        .with_columns(pl.lit(1, dtype=pl.Int64).alias("_kind"))
    )
    return fixed, order_keys
