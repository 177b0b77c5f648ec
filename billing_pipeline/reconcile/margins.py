"""Revenue against cost per customer, provider and model: where we make and lose money.

Revenue of a line that spans several models (a tiered charge over all tokens) is allocated to its
models in proportion to their quantity, in cents, with the rounding remainder on the largest part,
so the allocated revenue sums exactly to the invoice lines. Fixed fees (base fee, commitment
true-up) appear under provider ``subscription``.
"""

from __future__ import annotations

import json
from decimal import Decimal

import polars as pl

from billing_pipeline.money import truncate_money
from billing_pipeline.schema import COST_DECIMAL

RECONCILIATION_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String,
    "provider": pl.String,
    "model": pl.String,
    "quantity": pl.Int64,
    "revenue": COST_DECIMAL,
    "cost": COST_DECIMAL,
    "margin": COST_DECIMAL,
    "margin_pct": pl.Float64,  # display only; money columns stay Decimal
    "flags": pl.String,
    "reported_tokens": pl.Int64,  # the provider's token count for the customer's keys (drift check)
    "at_stake": COST_DECIMAL,  # revenue the tokens our meter missed would have billed
}


def allocate_revenue(lines: pl.DataFrame) -> pl.DataFrame:
    """One row per customer x provider x model with the revenue its lines earned."""
    rows: dict[tuple, Decimal] = {}
    for customer, currency, amount, components, consideration in lines.select(
        "customer_id", "currency", "amount", "components", "consideration"
    ).iter_rows():
        amount = Decimal(amount)
        parts = json.loads(components) if consideration == "variable" else []
        if not parts:
            key = (customer, "subscription", "")
            rows[key] = rows.get(key, Decimal(0)) + amount
            continue
        total = sum(p["quantity"] for p in parts)
        shares = [
            truncate_money(amount * p["quantity"] / total, currency) if total else Decimal(0)
            for p in parts
        ]
        largest = max(range(len(parts)), key=lambda i: parts[i]["quantity"])
        shares[largest] += amount - sum(shares)
        for p, share in zip(parts, shares, strict=True):
            key = (customer, p["provider"], p["model"] or "")
            rows[key] = rows.get(key, Decimal(0)) + share
    return pl.DataFrame(
        [(c, p, m, v) for (c, p, m), v in sorted(rows.items())],
        schema={
            "customer_id": pl.String,
            "provider": pl.String,
            "model": pl.String,
            "revenue": COST_DECIMAL,
        },
        orient="row",
    )


def reconcile(
    lines: pl.DataFrame, costs: pl.DataFrame, drift: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Margin per customer x provider x model; unattributed cost has customer_id null.

    ``drift`` (``metering_drift``'s table) adds the provider's token count, the amount at stake
    and a ``metering_drift`` flag to the rows of flagged customers."""
    revenue = allocate_revenue(lines)
    cost = costs.group_by(
        "customer_id", "provider", pl.col("model_family").fill_null("").alias("model")
    ).agg(
        pl.sum("quantity"),
        pl.col("cost").sum(),
        (pl.col("cost_basis") == "unpriced").any().alias("_unpriced"),
    )
    joined = (
        cost.join(
            revenue,
            on=["customer_id", "provider", "model"],
            how="full",
            coalesce=True,
            nulls_equal=True,
        )
        .with_columns(
            pl.col("quantity").fill_null(0),
            pl.col("revenue").fill_null(Decimal(0)).cast(COST_DECIMAL),
            pl.col("cost").fill_null(Decimal(0)).cast(COST_DECIMAL),
            pl.col("_unpriced").fill_null(False),
        )
        .with_columns((pl.col("revenue") - pl.col("cost")).cast(COST_DECIMAL).alias("margin"))
    )
    keys = ["customer_id", "provider", "model"]
    if drift is None:
        drift = pl.DataFrame(
            schema={
                **dict.fromkeys(keys, pl.String),
                "reported_tokens": pl.Int64,
                "amount_at_stake": COST_DECIMAL,
                "flagged": pl.Boolean,
            }
        )
    joined = joined.join(
        drift.select(
            *keys,
            "reported_tokens",
            pl.col("amount_at_stake").alias("at_stake"),
            pl.col("flagged").alias("_drift"),
        ),
        on=keys,
        how="left",
    ).with_columns(pl.col("_drift").fill_null(False))
    flags = pl.concat_str(
        [
            pl.when(pl.col("customer_id").is_null()).then(pl.lit("unattributed")),
            pl.when(pl.col("customer_id").is_not_null() & (pl.col("margin") < 0)).then(
                pl.lit("negative_margin")
            ),
            pl.when(
                (pl.col("revenue") > 0)
                & (pl.col("cost") == 0)
                & (pl.col("provider") != "subscription")
            ).then(pl.lit("revenue_without_cost")),
            pl.when(
                pl.col("customer_id").is_not_null()
                & (pl.col("revenue") == 0)
                & (pl.col("cost") > 0)
            ).then(pl.lit("cost_without_revenue")),
            pl.when(pl.col("_unpriced")).then(pl.lit("unpriced")),
            pl.when(pl.col("_drift")).then(pl.lit("metering_drift")),
        ],
        separator=",",
        ignore_nulls=True,
    )
    return (
        joined.with_columns(
            pl.when(pl.col("revenue") != 0)
            .then(
                (
                    pl.col("margin").cast(pl.Float64) / pl.col("revenue").cast(pl.Float64) * 100
                ).round(2)
            )
            .alias("margin_pct"),
            flags.alias("flags"),
        )
        .select(list(RECONCILIATION_SCHEMA))
        .cast(RECONCILIATION_SCHEMA)
        .sort("customer_id", "provider", "model", nulls_last=True)
    )
