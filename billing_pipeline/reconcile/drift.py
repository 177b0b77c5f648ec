"""Where our numbers and the provider's disagree: metering drift and provider cost drift.

Metering drift: the tokens we bill a customer from our own meter (the gateway log) against the
tokens the provider reports for that customer's own keys. Undercounting is the expensive case:
every missing token is provider cost with no revenue behind it. The amount at stake is what the
missing tokens would have added to the customer's invoice, found by rating the month again with
them (so allowances, tiers and effective-dated prices count exactly as on the real invoice).

Cost drift: what the price book says a day's usage cost against what the provider says it charged
(cost pages, or the cost an export carries), per provider, model family and day.
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.providers import model_family_expr
from billing_pipeline.rating import rate_month
from billing_pipeline.rating.billing_source import PROVIDER_REPORT, split_billing_source
from billing_pipeline.reconcile.margins import allocate_revenue
from billing_pipeline.schema import (
    COST_DECIMAL,
    METERS,
    USAGE_SCHEMA,
    conform,
    unit_name,
)

TOKEN_METERS = tuple(m for m in METERS if unit_name(m) == "tokens")
METERED_SOURCES = ("gateway_log", "litellm_spend_logs")  # our own meters: gateway logs
REPORT_SOURCES = ("openai_usage_api", "anthropic_usage_report")  # the provider's word, per key
DEFAULT_METERING_TOLERANCE = Decimal("0.005")  # 0.5 %
DEFAULT_COST_TOLERANCE = Decimal("0.01")  # 1 % of the reported cost ...
DEFAULT_COST_MIN_DIFFERENCE = Decimal("0.01")  # ... and at least a cent

DRIFT_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String,
    "provider": pl.String,
    "model": pl.String,  # model family, as in the reconciliation
    "metered_tokens": pl.Int64,
    "reported_tokens": pl.Int64,
    "missing_tokens": pl.Int64,  # reported - metered: positive = we undercount
    "drift_pct": pl.Float64,  # display only
    "amount_at_stake": COST_DECIMAL,  # revenue the missing tokens would have billed (undercount)
    "flagged": pl.Boolean,
}

COST_DRIFT_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date,
    "provider": pl.String,
    "model": pl.String,
    "computed_cost": COST_DECIMAL,
    "reported_cost": COST_DECIMAL,
    "difference": COST_DECIMAL,  # computed - reported
    "status": pl.String,  # ok | drift | missing_in_report | missing_in_usage
}


def _token_totals(frame: pl.DataFrame | pl.LazyFrame, name: str) -> pl.LazyFrame:
    return (
        frame.lazy()
        .filter(pl.col("customer_id").is_not_null() & pl.col("meter").is_in(TOKEN_METERS))
        .group_by("customer_id", "provider", pl.col("model_family").fill_null("").alias("model"))
        .agg(pl.col("quantity").sum().alias(name))
    )


def _missing_usage(
    usage: pl.DataFrame, reported: pl.DataFrame, flagged: pl.DataFrame
) -> pl.DataFrame:
    """Synthetic usage for what the provider reports beyond our meter, per model and meter, on the
    last day the provider reported it (so it is priced after what we did meter)."""
    keys = ["customer_id", "provider", "model_family", "meter"]
    rows = flagged.filter(pl.col("missing_tokens") > 0).select(
        "customer_id", "provider", pl.col("model").alias("model_family")
    )
    ours = usage.lazy().group_by(keys).agg(pl.col("quantity").sum().alias("ours"))
    theirs = (
        reported.lazy()
        .group_by(keys)
        .agg(pl.col("quantity").sum().alias("theirs"), pl.col("day").max())
    )
    gap = (
        theirs.join(rows.lazy(), on=["customer_id", "provider", "model_family"], how="semi")
        .join(ours, on=keys, how="left", nulls_equal=True)
        .with_columns((pl.col("theirs") - pl.col("ours").fill_null(0)).alias("quantity"))
        .filter(pl.col("quantity") > 0)
        .collect()
    )
    start = pl.col("day").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return conform(
        gap.with_columns(
            pl.concat_str(
                [pl.lit("metering_gap"), *[pl.col(k).fill_null("") for k in keys]], separator=":"
            ).alias("event_id"),
            pl.lit("metering_gap").alias("source"),
            pl.col("model_family").alias("model"),
            pl.lit("{}").alias("dimensions"),
            start.alias("start"),
            start.alias("end"),
            pl.lit("provider usage report beyond the gateway log").alias("origin"),
        ).with_columns(pl.col("event_id").alias("record_id")),
        USAGE_SCHEMA,
    )


def metering_drift(
    usage: pl.DataFrame | pl.LazyFrame,
    reported: pl.DataFrame,
    catalog: Catalog,
    month: str,
    tolerance: Decimal = DEFAULT_METERING_TOLERANCE,
    metered_sources: tuple[str, ...] | None = METERED_SOURCES,
) -> pl.DataFrame:
    """Per customer x provider x model: our metered tokens against the provider's report for the
    customer's keys (``reported``: usage rows, attributed). Only customer x provider pairs
    both cover are compared. ``usage`` is the month's usage, both sources included: our meter's
    rows are compared whether or not they bill; for the amount at stake only what the catalog's
    ``billing_source`` bills is re-rated, and a pair billed from the provider's report has
    nothing at stake (0). ``metered_sources`` picks our meter's rows (None: all of them)."""
    metered_rows = (  # lazy: our meter's rows are summed, never copied
        usage.lazy()
        if metered_sources is None
        else usage.lazy().filter(pl.col("source").is_in(metered_sources))
    )
    pair = ["customer_id", "provider"]
    metered = _token_totals(metered_rows, "metered_tokens")
    theirs = _token_totals(reported, "reported_tokens")
    # Only customer x provider pairs both sides cover: a key the provider reports and we do not
    # meter at all is billed from the report itself, there is nothing to compare.
    metered, theirs = (
        metered.join(theirs.select(pair).unique(), on=pair, how="semi"),
        theirs.join(metered.select(pair).unique(), on=pair, how="semi"),
    )
    limit = float(tolerance)
    joined = (
        metered.join(theirs, on=["customer_id", "provider", "model"], how="full", coalesce=True)
        .with_columns(pl.col("metered_tokens").fill_null(0), pl.col("reported_tokens").fill_null(0))
        .with_columns(
            (pl.col("reported_tokens") - pl.col("metered_tokens")).alias("missing_tokens")
        )
        .with_columns(
            pl.when(pl.col("reported_tokens") != 0)
            .then((pl.col("missing_tokens") / pl.col("reported_tokens") * 100).round(2))
            .alias("drift_pct"),
            (pl.col("missing_tokens").abs() > pl.col("reported_tokens").abs() * limit).alias(
                "flagged"
            ),
        )
        .sort("customer_id", "provider", "model")
        .collect(engine="streaming")  # the month's rows summed in a stream, not held again
    )
    at_stake = _amount_at_stake(usage, reported, joined.filter(pl.col("flagged")), catalog, month)
    return (
        joined.join(at_stake, on=["customer_id", "provider", "model"], how="left")
        .with_columns(
            pl.when(pl.col("flagged") & (pl.col("missing_tokens") > 0)).then(
                pl.col("amount_at_stake").fill_null(Decimal(0))
            )
        )
        .select(list(DRIFT_SCHEMA))
        .cast(DRIFT_SCHEMA)
    )


def _amount_at_stake(
    usage: pl.DataFrame | pl.LazyFrame,
    reported: pl.DataFrame,
    flagged: pl.DataFrame,
    catalog: Catalog,
    month: str,
) -> pl.DataFrame:
    """Revenue with the missing tokens minus revenue without, per customer x provider x model."""
    empty = pl.DataFrame(
        schema={
            "customer_id": pl.String,
            "provider": pl.String,
            "model": pl.String,
            "amount_at_stake": COST_DECIMAL,
        }
    )
    if flagged.is_empty():  # nothing drifted: no need to split the month's usage by source again
        return empty
    # Only what the month bills is re-rated, and only where our meter bills: where the provider's
    # report is the billing source, the tokens our meter missed are on the invoice already.
    # The billing source is decided per customer and provider, so the flagged customers' rows
    # alone decide it for them as the whole month would: only those rows are read and split.
    drifted = flagged["customer_id"].unique().implode()
    drifted_usage = usage.lazy().filter(pl.col("customer_id").is_in(drifted)).collect()
    split = split_billing_source(drifted_usage, catalog)
    billed = split.billable
    report_billed = split.decisions.filter(pl.col("billed_from") == PROVIDER_REPORT).select(
        "customer_id", "provider"
    )
    flagged = flagged.join(report_billed, on=["customer_id", "provider"], how="anti")
    gap = _missing_usage(billed, reported, flagged)
    if gap.is_empty():
        return empty
    customers = gap["customer_id"].unique()
    theirs = billed.filter(pl.col("customer_id").is_in(customers.implode()))
    before = allocate_revenue(rate_month(theirs, catalog, month).lines)
    after = allocate_revenue(
        rate_month(pl.concat([conform(theirs, USAGE_SCHEMA), gap]), catalog, month).lines
    )
    keys = ["customer_id", "provider", "model"]
    return (
        after.join(before, on=keys, how="full", coalesce=True, suffix="_before")
        .with_columns(
            (
                pl.col("revenue").fill_null(Decimal(0))
                - pl.col("revenue_before").fill_null(Decimal(0))
            )
            .cast(COST_DECIMAL)
            .alias("amount_at_stake")
        )
        .join(flagged.select(keys), on=keys, how="semi")
        .select(*keys, "amount_at_stake")
    )


def cost_drift(
    costs: pl.DataFrame,
    reported: pl.DataFrame | None = None,
    tolerance: Decimal = DEFAULT_COST_TOLERANCE,
    min_difference: Decimal = DEFAULT_COST_MIN_DIFFERENCE,
) -> pl.DataFrame:
    """Computed (price book) against reported cost per provider, model family and day.

    ``costs`` is the ``provider_cost`` frame. ``reported`` is the provider's own cost lines
    (``sources.provider_costs.COST_SCHEMA``: provider, model, amount, day); without it, the cost
    the usage rows themselves carried (``reported_cost``) is compared where both exist, over the
    usage of the customers whose rows of that day and model carried one. Only
    providers the report covers are compared. A difference counts when it exceeds both
    ``tolerance`` x reported and ``min_difference``.
    """
    keys = ["day", "provider", "model"]
    if reported is None:
        # Only the customers' usage that carried a cost is compared: a LiteLLM proxy reports
        # each request's cost (on one of its meters), while other customers of the same model
        # may come from a source that reports none.
        carrying = ["day", "provider", "customer_id", "model_family"]
        costs = costs.join(
            costs.filter(pl.col("reported_cost").is_not_null()).select(carrying).unique(),
            on=carrying,
            how="semi",
            nulls_equal=True,
        )
    computed = (
        costs.lazy()
        .filter(pl.col("computed_cost").is_not_null())
        .group_by("day", "provider", pl.col("model_family").fill_null("").alias("model"))
        .agg(pl.col("computed_cost").sum())
    )
    if reported is None:
        theirs = (
            costs.lazy()
            .filter(pl.col("computed_cost").is_not_null() & pl.col("reported_cost").is_not_null())
            .group_by("day", "provider", pl.col("model_family").fill_null("").alias("model"))
            .agg(pl.col("reported_cost").sum())
        )
        computed = computed.join(theirs, on=keys, how="semi")
    else:
        theirs = (
            reported.lazy()
            .group_by("day", "provider", model_family_expr("model").fill_null("").alias("model"))
            .agg(pl.col("amount").sum().alias("reported_cost"))
        )
        computed = computed.join(theirs.select("provider").unique(), on="provider", how="semi")
    zero = pl.lit(Decimal(0)).cast(COST_DECIMAL)
    joined = (
        computed.join(theirs, on=keys, how="full", coalesce=True)
        .with_columns(
            (pl.col("computed_cost").fill_null(zero) - pl.col("reported_cost").fill_null(zero))
            .cast(COST_DECIMAL)
            .alias("difference")
        )
        .collect()
    )
    allowed = [
        max(abs(r or Decimal(0)) * tolerance, min_difference) for r in joined["reported_cost"]
    ]
    over = pl.Series(
        "over",
        [abs(d) > a for d, a in zip(joined["difference"], allowed, strict=True)],
        dtype=pl.Boolean,
    )
    return (
        joined.with_columns(over)
        .with_columns(
            pl.when(pl.col("reported_cost").is_null())
            .then(pl.lit("missing_in_report"))
            .when(pl.col("computed_cost").is_null())
            .then(pl.lit("missing_in_usage"))
            .when(pl.col("over"))
            .then(pl.lit("drift"))
            .otherwise(pl.lit("ok"))
            .alias("status")
        )
        .select(list(COST_DRIFT_SCHEMA))
        .cast(COST_DRIFT_SCHEMA)
        .sort(keys)
    )
