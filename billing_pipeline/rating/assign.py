"""Which plan, charge and price period each unit of usage belongs to, aggregated early.

The month's events are reduced to one row per customer x provider x model x meter x dimensions
(x day where the day matters) in one streaming group-by before anything else happens: plans and
charges are matched on that aggregate (~10^5 rows for 10^7 events), not per event. Allowances are
settled from daily totals; only the day a customer crosses its allowance is read at event level.

Overflow: the events are summed in 128-bit integers, and a customer whose month does not fit the
int64 arithmetic of rating is taken out before any further sum (``AT_RISK_SCHEMA``): every later
sum (allowance consumption, charge totals, tiers' running totals) is over a subset of a customer's
events, so bounding the customer's total of absolute quantities by 2^63-1 bounds them all. A
wrapped or clipped sum would bill less; a raise would fail every customer of the month.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.periods import parse_month
from billing_pipeline.rating.price_book import cost_plus_changing
from billing_pipeline.rating.vectorized import quantity_sum_type
from billing_pipeline.usage import dimensions_match, models_match
from billing_pipeline.usage_keys import pack_expr, packable, unpack_exprs

I64_MAX = 2**63 - 1
QUANTITY_OVERFLOW = "quantity_overflow"  # the customer's month sums past 2^63-1 base units
NEGATIVE_QUANTITY = "negative_quantity"  # an event with a negative quantity reached rating

AT_RISK_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String,
    "provider": pl.String,
    "meter": pl.String,
    "model": pl.String,  # the model family, as on invoice lines and unrated rows
    "reason": pl.String,  # QUANTITY_OVERFLOW | NEGATIVE_QUANTITY | vectorized.AMOUNT_OVERFLOW
    "events": pl.Int64,
    "quantity": pl.Int128,  # exact sum of this meter and model's events, never wrapped
    "detail": pl.String,  # one sentence naming the customer, meter and model
}

KEYS = ["customer_id", "plan_id", "provider", "model", "model_family", "meter", "dimensions", "day"]
CHARGE_KEYS = ["plan_id", "meter", "model", "model_family", "dimensions"]


def plan_days(catalog: Catalog, month: str, customers: list[str] | None = None) -> pl.DataFrame:
    """customer_id, day -> plan_id: the first subscription (catalog order) covering the day."""
    start, end = parse_month(month)
    chosen = (
        catalog.customers if customers is None else {c: catalog.customers[c] for c in customers}
    )
    subs = pl.DataFrame(
        [
            (cid, i, sub.plan, sub.from_, sub.to)
            for cid, c in chosen.items()
            for i, sub in enumerate(c.subscriptions)
        ],
        schema={
            "customer_id": pl.String,
            "order": pl.Int64,
            "plan_id": pl.String,
            "sub_from": pl.Date,
            "sub_to": pl.Date,
        },
        orient="row",
    )
    days = pl.DataFrame({"day": pl.date_range(start, end - dt.timedelta(days=1), eager=True)})
    return (
        subs.join(days, how="cross")
        .filter(
            (pl.col("day") >= pl.col("sub_from"))
            & (pl.col("sub_to").is_null() | (pl.col("day") <= pl.col("sub_to")))
        )
        .sort("customer_id", "day", "order")
        .unique(["customer_id", "day"], keep="first", maintain_order=True)
        .select("customer_id", "day", "plan_id")
    )


def charge_expr(catalog: Catalog, plan_ids: set[str] | None = None) -> pl.Expr:
    """The one charge of the row's plan that claims its meter, model and dimensions (or null)."""
    charge = pl.lit(None, dtype=pl.String)
    for plan_id, plan in reversed(list(catalog.plans.items())):
        if plan_ids is not None and plan_id not in plan_ids:
            continue
        for c in reversed(plan.charges):
            claims = (
                (pl.col("plan_id") == plan_id)
                & pl.col("meter").is_in(c.meters)
                & models_match(c.models)
                & dimensions_match(c.dimensions)
            )
            charge = pl.when(claims).then(pl.lit(c.id)).otherwise(charge)
    return charge


def price_from_expr(catalog: Catalog, day: pl.Expr | None = None) -> pl.Expr:
    """The first day of the price period the row's day falls in (null: the base prices)."""
    day = pl.col("day") if day is None else day
    price_from = pl.lit(None, dtype=pl.Date)
    for plan_id, plan in catalog.plans.items():
        for c in plan.charges:
            for change in c.prices or []:  # later changes override earlier ones
                hit = (
                    (pl.col("plan_id") == plan_id)
                    & (pl.col("charge_id") == c.id)
                    & (day >= change.from_)
                )
                price_from = pl.when(hit).then(pl.lit(change.from_)).otherwise(price_from)
    return price_from


def _allowances(catalog: Catalog) -> pl.DataFrame:
    rows = [
        (pid, p.allowance.quantity, m)
        for pid, p in catalog.plans.items()
        if p.allowance
        for m in p.allowance.meters
    ]
    return pl.DataFrame(
        rows, schema={"plan_id": pl.String, "allowance": pl.Int64, "meter": pl.String}, orient="row"
    )


def _with_charges(frame: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    keys = frame.select(CHARGE_KEYS).unique()
    keyed = keys.with_columns(
        charge_expr(catalog, set(keys["plan_id"].drop_nulls())).alias("charge_id")
    )
    return frame.join(keyed, on=CHARGE_KEYS, how="left", nulls_equal=True)


def steady_plans(catalog: Catalog, month: str) -> tuple[pl.DataFrame, list[str]]:
    """(customer_id -> plan_id for customers whose usage needs no day to be rated, the customers
    whose usage does). Steady: the first subscription overlapping the month covers all of it and
    none of its plan's charges changes price inside the month. Customers with no subscription in
    the month are in neither (all their usage is unrated, whatever the day)."""
    start, end = parse_month(month)
    last = end - dt.timedelta(days=1)
    changing = {
        pid
        for pid, p in catalog.plans.items()
        if any(start < c.from_ < end for ch in p.charges for c in ch.prices or [])
    } | cost_plus_changing(catalog, month)
    steady, sensitive = [], []
    for cid, customer in catalog.customers.items():
        overlapping = [
            s for s in customer.subscriptions if s.from_ <= last and (s.to is None or s.to >= start)
        ]
        if not overlapping:
            continue
        first = overlapping[0]
        if (
            first.from_ <= start
            and (first.to is None or first.to >= last)
            and first.plan not in changing
        ):
            steady.append((cid, first.plan))
        else:
            sensitive.append(cid)
    frame = pl.DataFrame(
        steady, schema={"customer_id": pl.String, "plan_id": pl.String}, orient="row"
    )
    return frame, sensitive


def aggregate_usage(
    usage: pl.DataFrame | pl.LazyFrame,
    catalog: Catalog,
    month: str,
    *,
    by_day: bool = True,
    code_book: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame]:
    """(the month's attributed usage as KEYS + charge_id, price_from, quantity, included, events,
    series; with ``by_day``, the per-day quantities of each series: series, day, quantity; the
    usage of customers rating cannot sum exactly, AT_RISK_SCHEMA, left out of the other two).

    One streaming group-by over the events. ``day`` is kept only where rating needs it (a plan or
    price change inside the month, a subscription covering part of it, allowance consumption);
    elsewhere it is null, so a steady customer's month is a few dozen rows however many events it
    had. With ``by_day`` (the invoice chart) the events are grouped by day too, and a steady row's
    days are kept beside it, keyed by its ``series`` number (null on rows that carry a day): the
    rating itself still works on the month's rows, not on 31x as many.

    ``plan_id`` is null where no subscription covers the day; ``charge_id`` is null where the plan
    prices nothing for the row: both are reported as unrated, never dropped.

    With ``code_book`` (usage_keys.py) the events are grouped by their ``usage_key`` integer and
    the six strings read back from the book; the result is the same as grouping by the strings,
    which is what happens when the book does not know every key of the month."""
    start, end = parse_month(month)
    steady, sensitive_ids = steady_plans(catalog, month)
    sensitive = pl.Series("customer_id", sensitive_ids, dtype=pl.String)
    days = plan_days(catalog, month, sensitive_ids)
    allowance_plans = {pid: p.allowance for pid, p in catalog.plans.items() if p.allowance}
    allowance_customers = pl.concat(
        [
            steady.filter(pl.col("plan_id").is_in(list(allowance_plans)))["customer_id"],
            days.filter(pl.col("plan_id").is_in(list(allowance_plans)))["customer_id"].unique(),
        ]
    )
    allowance_meters = sorted({m for a in allowance_plans.values() for m in a.meters})

    in_month = (
        (pl.col("day") >= start) & (pl.col("day") < end) & pl.col("customer_id").is_not_null()
    )
    events = usage.lazy().filter(in_month)
    need_day = pl.lit(False)
    if sensitive.len():
        need_day = need_day | pl.col("customer_id").is_in(sensitive.implode())
    if allowance_customers.len():
        need_day = need_day | (
            pl.col("customer_id").is_in(allowance_customers.implode())
            & pl.col("meter").is_in(allowance_meters)
        )
    keyed = (
        _group_by_key(usage, need_day, by_day, code_book, start, end)
        if code_book is not None
        and "usage_key" in usage.lazy().collect_schema().names()
        and packable(usage)
        else None
    )
    grouped, series_days = keyed or _group_events(usage, in_month, need_day, by_day)
    grouped, series_days, at_risk = _split_at_risk(grouped, series_days)
    with_plan = (
        grouped.join(days.rename({"plan_id": "_day_plan"}), on=["customer_id", "day"], how="left")
        .join(steady.rename({"plan_id": "_steady_plan"}), on="customer_id", how="left")
        .with_columns(pl.coalesce("_steady_plan", "_day_plan").alias("plan_id"))
        .drop("_day_plan", "_steady_plan")
    )
    rated = _with_charges(with_plan, catalog)
    covered = pl.lit(False)
    for plan_id, allowance in allowance_plans.items():
        covered = covered | (
            (pl.col("plan_id") == plan_id) & pl.col("meter").is_in(allowance.meters)
        )
    covered = (covered & pl.col("charge_id").is_not_null()).fill_null(False)
    rated = rated.with_columns(covered.alias("_covered"))
    rest = rated.filter(~pl.col("_covered")).with_columns(
        pl.lit(0, dtype=pl.Int64).alias("included")
    )
    parts = [rest]
    consuming = rated.filter(pl.col("_covered"))
    if consuming.height:
        parts.append(_consume_allowances(consuming, events, _allowances(catalog)))
    aggregated = pl.concat(
        [p.select(*KEYS, "charge_id", "quantity", "included", "events", "series") for p in parts]
    )
    return (
        aggregated.with_columns(
            price_from_expr(catalog, pl.col("day").fill_null(start)).alias("price_from")
        ),
        series_days,
        at_risk,
    )


def _split_at_risk(
    grouped: pl.DataFrame, series_days: pl.DataFrame | None
) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame]:
    """Take out the customers whose month the int64 rating arithmetic cannot sum exactly.

    ``grouped`` holds 128-bit sums (quantity, and ``_abs`` of absolute quantities). A customer is
    at risk when its absolute quantities over every meter sum past 2^63-1 (then some sum of rating
    could wrap: reason quantity_overflow) or when any of its events is negative (rating prices no
    negative units: negative_quantity). The rest comes back in int64, exactly as summed."""
    per_customer = grouped.group_by("customer_id").agg(
        pl.sum("_abs").alias("_total"),
        (pl.col("_abs") != pl.col("quantity")).any().alias("_negative"),
    )
    bad = per_customer.filter((pl.col("_total") > I64_MAX) | pl.col("_negative")).with_columns(
        pl.when(pl.col("_total") > I64_MAX)
        .then(pl.lit(QUANTITY_OVERFLOW))
        .otherwise(pl.lit(NEGATIVE_QUANTITY))
        .alias("reason")
    )
    keep = grouped.join(bad, on="customer_id", how="anti")
    if series_days is not None:
        series_days = series_days.join(
            keep.select("series").drop_nulls(), on="series", how="semi"
        ).with_columns(pl.col("quantity").cast(pl.Int64))
    keep = keep.drop("_abs").with_columns(pl.col("quantity").cast(pl.Int64))
    if bad.height == 0:
        return keep, series_days, pl.DataFrame(schema=AT_RISK_SCHEMA)
    # "customer acme: input_tokens of gpt-4o from openai", then why the row is held
    row = pl.format(
        "customer {}: {} of {} from {}",
        pl.col("customer_id"),
        pl.col("meter"),
        pl.col("model").fill_null("(no model)"),
        pl.col("provider").fill_null("(no provider)"),
    )
    detail = (
        pl.when(pl.col("reason") == QUANTITY_OVERFLOW)
        .then(
            pl.format(
                "{} sums to {} base units in {} events; the customer's month sums to {}, "
                "more than 2^63-1: not rated, held for review",
                row,
                pl.col("quantity"),
                pl.col("events"),
                pl.col("_total"),
            )
        )
        .when(pl.col("_negative_here"))
        .then(
            pl.format(
                "{} has events with negative quantities (net {}): not rated, held for review",
                row,
                pl.col("quantity"),
            )
        )
        .otherwise(  # the customer's month is held as a whole: say why this row is in it
            pl.format(
                "{} ({} base units) has no negative event, but another usage row of the "
                "customer's month has: not rated, held for review",
                row,
                pl.col("quantity"),
            )
        )
    )
    at_risk = (
        grouped.join(bad, on="customer_id", how="inner")
        .group_by(
            "customer_id",
            "provider",
            pl.col("model_family").alias("model"),
            "meter",
            "reason",
            "_total",
        )
        .agg(
            pl.sum("events"),
            pl.sum("quantity"),
            (pl.col("_abs") != pl.col("quantity")).any().alias("_negative_here"),
        )
        .with_columns(detail.alias("detail"))
        .sort("customer_id", "provider", "meter", "model", nulls_last=True)
        .select(list(AT_RISK_SCHEMA))
        .cast(AT_RISK_SCHEMA)
    )
    return keep, series_days, at_risk


def _group_events(
    usage: pl.DataFrame | pl.LazyFrame, keep: pl.Expr, need_day: pl.Expr, by_day: bool
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Sum the events per customer x provider x model x family x meter x dimensions (x day where
    ``need_day``), numbered by ``series``; with ``by_day`` also each series' per-day sums.

    A lazy source is read in slices of CHUNK_ROWS whose partial sums are folded into running sums:
    polars' streaming group-by over 50 M events otherwise holds ~5 GB (5.5x the Parquet file); in
    slices ~1.1 GB (benchmarks/RESULTS.md). The model family is a key, not a first(): cheaper,
    and the same groups (it is a function of the model). With ``by_day`` every event is grouped
    with its day once, and the month's rows are re-grouped from those daily sums (far fewer
    rows than events: one a day per key), never from the events again."""
    keys = [k for k in KEYS if k not in ("day", "plan_id")]
    day = pl.col("day") if by_day else pl.when(need_day).then(pl.col("day")).alias("day")
    # Daily sums are many more running sums to fold per slice: larger slices (benchmarks/RESULTS.md).
    summed = _sum_slices(
        usage, keep, [*keys, day], [*keys, "day"], CHUNK_ROWS * (2 if by_day else 1)
    )
    if not by_day:
        return summed.with_columns(pl.lit(None, dtype=pl.Int64).alias("series")), None
    steady = (
        summed.filter(~need_day)
        .group_by(keys)
        .agg(
            pl.sum("quantity"),
            pl.sum("_abs"),
            pl.sum("events"),
            pl.col("day").alias("_days"),
            pl.col("quantity").alias("_daily"),
        )
        .with_columns(pl.lit(None, dtype=pl.Date).alias("day"))
        .with_row_index("series")
        .with_columns(pl.col("series").cast(pl.Int64))
    )
    series_days = steady.select(
        "series", pl.col("_days").alias("day"), pl.col("_daily").alias("quantity")
    ).explode("day", "quantity", empty_as_null=True)
    dated = summed.filter(need_day).with_columns(pl.lit(None, dtype=pl.Int64).alias("series"))
    return pl.concat([dated, steady.select(dated.columns)]), series_days


def _group_by_key(
    usage: pl.DataFrame | pl.LazyFrame,
    need_day: pl.Expr,
    by_day: bool,
    book: pl.DataFrame,
    start: dt.date,
    end: dt.date,
) -> tuple[pl.DataFrame, pl.DataFrame | None] | None:
    """``_group_events``' result from one group-by on a single integer: the event's usage_key and
    day of the month packed together (``usage_keys.pack_expr``; NO_DAY where rating does not need
    the day). None when an event has no key or a key the book does not know: the caller then
    groups by the strings.

    ``need_day`` is a condition on the customer and meter, so it is evaluated on the code book
    (one row per key) and becomes a set of keys, and unattributed keys are dropped after the
    group-by: no string column is read per event."""
    keys = [k for k in KEYS if k not in ("day", "plan_id")]
    dated_keys = book.filter(need_day)["usage_key"].implode()
    packed = pack_expr(start, None if by_day else pl.col("usage_key").is_in(dated_keys))
    in_month = (pl.col("day") >= start) & (pl.col("day") < end)
    # In slices, as the names' group-by: one streaming pass over 50 M events holds ~2x the file.
    # Three integer columns per event make a slice 4x larger than the names' for the same memory.
    summed = _sum_slices(usage, in_month, [packed], ["_packed"], 4 * CHUNK_ROWS)
    if summed["_packed"].null_count():
        return None
    summed = summed.select(*unpack_exprs(start), "quantity", "_abs", "events")
    if summed.join(book, on="usage_key", how="anti").height:
        return None
    book = book.filter(pl.col("customer_id").is_not_null())  # inner joins below drop the rest
    dated_rows = pl.col("usage_key").is_in(dated_keys)
    if not by_day:
        named = summed.join(book, on="usage_key").with_columns(
            pl.lit(None, dtype=pl.Int64).alias("series")
        )
        return named.select(*keys, "day", "quantity", "_abs", "events", "series"), None
    # A steady row's series is its key: its days are the daily sums themselves, no list to build.
    steady_days = summed.filter(~dated_rows)
    steady = steady_days.group_by("usage_key").agg(
        pl.sum("quantity"), pl.sum("_abs"), pl.sum("events")
    )
    series_days = steady_days.select(
        pl.col("usage_key").cast(pl.Int64).alias("series"), "day", "quantity"
    )
    columns = [*keys, "day", "quantity", "_abs", "events", "series"]
    dated = (
        summed.filter(dated_rows)
        .join(book, on="usage_key")
        .with_columns(pl.lit(None, dtype=pl.Int64).alias("series"))
        .select(columns)
    )
    steady = (
        steady.join(book, on="usage_key")
        .with_columns(
            pl.lit(None, dtype=pl.Date).alias("day"),
            pl.col("usage_key").cast(pl.Int64).alias("series"),
        )
        .select(columns)
    )
    return pl.concat([dated, steady]), series_days


CHUNK_ROWS = 5_000_000  # events per partial group-by when reading a lazy source (a Parquet scan)


def _sum_slices(
    usage: pl.DataFrame | pl.LazyFrame, keep: pl.Expr, by: list, keys: list[str], slice_rows: int
) -> pl.DataFrame:
    """quantity and events summed ``by``, ``slice_rows`` events at a time for a large lazy source;
    exact, in Int128 columns (summed in Int64 where that cannot wrap: ``quantity_sum_type``)."""
    total, sum_type = quantity_sum_type(usage)
    wide = pl.col("quantity").cast(sum_type)
    sums = [
        wide.sum().alias("quantity"),
        wide.abs().sum().alias("_abs"),
        pl.len().cast(pl.Int64).alias("events"),
    ]
    as_int128 = [pl.col("quantity", "_abs").cast(pl.Int128)]
    if (
        isinstance(usage, pl.DataFrame) or total <= slice_rows
    ):  # in memory already: nothing to bound
        return (
            usage.lazy()
            .filter(keep)
            .group_by(by)
            .agg(sums)
            .with_columns(*as_int128)
            .collect(engine="streaming")
        )
    summed = None  # folded slice by slice: memory stays at one slice plus the running sums
    for offset in range(0, total, slice_rows):
        part = (
            usage.slice(offset, slice_rows)
            .filter(keep)
            .group_by(by)
            .agg(sums)
            .collect(engine="streaming")
        )
        summed = (
            part
            if summed is None
            else (
                pl.concat([summed, part])
                .group_by(keys)
                .agg(pl.sum("quantity"), pl.sum("_abs"), pl.sum("events"))
            )
        )
    return summed.with_columns(*as_int128)


def _consume_allowances(
    rows: pl.DataFrame, events: pl.LazyFrame, allowances: pl.DataFrame
) -> pl.DataFrame:
    """Included units are used up first, in time order (day, then start time, ties by event id),
    across the allowance's meters; usage no charge prices uses none of it.

    Whole days settle from daily totals: a day that ends within the allowance is fully included,
    a day that starts past it is fully billable. Only the day on which a customer crosses the
    allowance (at most one per customer and plan) is read back at event level, in time order."""
    allowance = allowances.group_by("plan_id").agg(pl.first("allowance"))
    part = ["customer_id", "plan_id"]
    daily = (
        rows.group_by(*part, "day")
        .agg(pl.sum("quantity").alias("day_total"))
        .join(allowance, on="plan_id")
        .sort(*part, "day")
        .with_columns(
            (pl.col("day_total").cum_sum().over(part) - pl.col("day_total")).alias("used_before")
        )
        .with_columns(
            pl.when(pl.col("used_before") + pl.col("day_total") <= pl.col("allowance"))
            .then(pl.lit("all"))
            .when(pl.col("used_before") >= pl.col("allowance"))
            .then(pl.lit("none"))
            .otherwise(pl.lit("crossing"))
            .alias("_settled")
        )
    )
    rows = rows.join(daily.select(*part, "day", "_settled"), on=[*part, "day"], how="left")
    whole = rows.filter(pl.col("_settled") != "crossing").with_columns(
        pl.when(pl.col("_settled") == "all")
        .then(pl.col("quantity"))
        .otherwise(0)
        .cast(pl.Int64)
        .alias("included")
    )
    crossing = daily.filter(pl.col("_settled") == "crossing").select(
        *part, "day", "used_before", "allowance"
    )
    if crossing.height == 0:
        return whole
    keys = rows.filter(pl.col("_settled") == "crossing").select(*KEYS[:7], "charge_id").unique()
    detail = (
        events.filter(
            pl.col("customer_id").is_in(crossing["customer_id"].unique().implode())
            & pl.col("day").is_in(crossing["day"].unique().implode())
        )
        .select(*[k for k in KEYS if k != "plan_id"], "start", "event_id", "quantity")
        .join(crossing.lazy(), on=["customer_id", "day"], how="inner")
        .join(keys.lazy(), on=KEYS[:7], how="inner", nulls_equal=True)
        .with_columns(
            (
                pl.col("quantity").cum_sum().over(part, order_by=["start", "event_id"])
                - pl.col("quantity")
                + pl.col("used_before")
            ).alias("_before")
        )
        .with_columns(
            pl.min_horizontal(
                pl.col("quantity"), pl.max_horizontal(pl.col("allowance") - pl.col("_before"), 0)
            )
            .cast(pl.Int64)
            .alias("included")
        )
        .group_by(*KEYS, "charge_id")
        .agg(pl.sum("included"))
        .collect()
    )
    crossed = (
        rows.filter(pl.col("_settled") == "crossing")
        .join(detail, on=[*KEYS, "charge_id"], how="left", nulls_equal=True)
        .with_columns(pl.col("included").fill_null(0))
    )
    return pl.concat([whole.select(crossed.columns), crossed])
