"""Which plan, charge and price period each unit of usage belongs to, aggregated early.

The month's events are reduced to one row per customer x plan x provider x model x meter x
dimensions x day before anything else happens: charges are matched on the distinct keys of that
aggregate (a few thousand rows, however many events), not per event. Only events an allowance
covers stay event-level, because included units are consumed in time order (ties by event id).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.periods import parse_month
from billing_pipeline.usage import dimensions_match, models_match

KEYS = ["customer_id", "plan_id", "provider", "model", "model_family", "meter", "dimensions", "day"]
CHARGE_KEYS = ["plan_id", "meter", "model", "model_family", "dimensions"]


def plan_days(catalog: Catalog, month: str) -> pl.DataFrame:
    """customer_id, day -> plan_id: the first subscription (catalog order) covering the day."""
    start, end = parse_month(month)
    subs = pl.DataFrame(
        [(cid, i, sub.plan, sub.from_, sub.to) for cid, c in catalog.customers.items()
         for i, sub in enumerate(c.subscriptions)],
        schema={"customer_id": pl.String, "order": pl.Int64, "plan_id": pl.String, "sub_from": pl.Date,
                "sub_to": pl.Date},
        orient="row",
    )
    days = pl.DataFrame({"day": pl.date_range(start, end - dt.timedelta(days=1), eager=True)})
    return (
        subs.join(days, how="cross")
        .filter((pl.col("day") >= pl.col("sub_from")) & (pl.col("sub_to").is_null() | (pl.col("day") <= pl.col("sub_to"))))
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


def price_from_expr(catalog: Catalog) -> pl.Expr:
    """The first day of the price period the row's day falls in (null: the base prices)."""
    price_from = pl.lit(None, dtype=pl.Date)
    for plan_id, plan in catalog.plans.items():
        for c in plan.charges:
            for change in c.prices or []:  # later changes override earlier ones
                hit = (pl.col("plan_id") == plan_id) & (pl.col("charge_id") == c.id) & (pl.col("day") >= change.from_)
                price_from = pl.when(hit).then(pl.lit(change.from_)).otherwise(price_from)
    return price_from


def _allowances(catalog: Catalog) -> pl.DataFrame:
    rows = [(pid, p.allowance.quantity, m) for pid, p in catalog.plans.items() if p.allowance for m in p.allowance.meters]
    return pl.DataFrame(rows, schema={"plan_id": pl.String, "allowance": pl.Int64, "meter": pl.String}, orient="row")


def _with_charges(frame: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    keys = frame.select(CHARGE_KEYS).unique()
    keyed = keys.with_columns(charge_expr(catalog, set(keys["plan_id"].drop_nulls())).alias("charge_id"))
    return frame.join(keyed, on=CHARGE_KEYS, how="left", nulls_equal=True)


def aggregate_usage(usage: pl.DataFrame | pl.LazyFrame, catalog: Catalog, month: str) -> pl.DataFrame:
    """The month's attributed usage as KEYS + charge_id, price_from, quantity, included, events.

    ``plan_id`` is null where no subscription covers the day; ``charge_id`` is null where the plan
    prices nothing for the row: both are reported as unrated, never dropped."""
    start, end = parse_month(month)
    allowances = _allowances(catalog)
    events = (
        usage.lazy()
        .filter((pl.col("day") >= start) & (pl.col("day") < end) & pl.col("customer_id").is_not_null())
        .join(plan_days(catalog, month).lazy(), on=["customer_id", "day"], how="left")
    )
    covered = pl.lit(False)
    for plan_id, plan in catalog.plans.items():
        if plan.allowance:
            covered = covered | ((pl.col("plan_id") == plan_id) & pl.col("meter").is_in(plan.allowance.meters))
    covered = covered.fill_null(False)
    rest = (
        events.filter(~covered)
        .group_by(KEYS)
        .agg(pl.sum("quantity"), pl.len().cast(pl.Int64).alias("events"))
        .with_columns(pl.lit(0, dtype=pl.Int64).alias("included"))
        .collect()
    )
    parts = [_with_charges(rest, catalog)]
    if allowances.height:
        parts.append(_consume_allowances(events.filter(covered), catalog, allowances))
    aggregated = pl.concat([p.select(*KEYS, "charge_id", "quantity", "included", "events") for p in parts])
    return aggregated.with_columns(price_from_expr(catalog).alias("price_from"))


def _consume_allowances(events: pl.LazyFrame, catalog: Catalog, allowances: pl.DataFrame) -> pl.DataFrame:
    """Included units are used up first, in time order (ties by event id), across the allowance's
    meters; events no charge prices use none of it."""
    rows = _with_charges(events.select(*KEYS, "start", "event_id", "quantity").collect(), catalog)
    rows = rows.join(allowances, on=["plan_id", "meter"], how="left")
    priced = pl.col("charge_id").is_not_null()
    running = pl.col("quantity").cum_sum().over(["customer_id", "plan_id", priced], order_by=["start", "event_id"])
    used_before = running - pl.col("quantity")
    included = pl.min_horizontal(pl.col("quantity"), pl.max_horizontal(pl.col("allowance") - used_before, pl.lit(0)))
    return (
        rows.with_columns(pl.when(priced).then(included).otherwise(0).cast(pl.Int64).alias("included"))
        .group_by(*KEYS, "charge_id")
        .agg(pl.sum("quantity"), pl.sum("included"), pl.len().cast(pl.Int64).alias("events"))
    )
