"""Everything a month did not bill, as one quarantine: the readers' rejected records, unreadable
cost pages, and the customers rating held. quarantine.csv, the holds issuing obeys and the
finance summary all read this one frame."""

from __future__ import annotations

import polars as pl

from billing_pipeline.periods import parse_month
from billing_pipeline.schema import KIND_MONEY_AT_RISK, QUARANTINE_SCHEMA, conform


def rating_quarantine(at_risk: pl.DataFrame, month: str) -> pl.DataFrame:
    """Rating's held customers (quantities or amounts past 64 bits) as quarantine rows: money at
    risk naming the customer, so their invoice is held rather than drafted smaller."""
    rows = at_risk.select(
        pl.lit("rating").alias("source"),
        pl.concat_str(
            [
                pl.lit(f"rating:{month}:"),
                pl.col("customer_id"),
                pl.lit(":"),
                pl.col("meter"),
                pl.lit(":"),
                pl.col("model").fill_null(""),
            ]
        ).alias("origin"),
        pl.lit("quantity").alias("field"),
        pl.col("reason"),
        pl.lit(KIND_MONEY_AT_RISK).alias("kind"),
        pl.col("detail").alias("message"),
        pl.col("quantity").cast(pl.String).alias("raw"),
        pl.lit(parse_month(month)[0]).alias("day"),
        pl.lit(None, pl.String).alias("account_key"),
        pl.col("customer_id"),
    )
    return conform(rows, QUARANTINE_SCHEMA)


def month_quarantine(
    usage_quarantine: pl.DataFrame,
    provider_cost_quarantine: pl.DataFrame,
    rating_at_risk: pl.DataFrame,
    month: str,
) -> pl.DataFrame:
    """The month's whole quarantine: usage records, cost records, rating's held customers."""
    return pl.concat(
        [usage_quarantine, provider_cost_quarantine, rating_quarantine(rating_at_risk, month)],
        how="vertical_relaxed",
    )


def hold_rows(quarantine: pl.DataFrame) -> list[dict]:
    """The money-at-risk rows of a month's quarantine as held records (ledger/holds.py
    ``record_holds``): one per origin, reason and customer, the first message kept."""
    return (
        quarantine.filter(pl.col("kind") == KIND_MONEY_AT_RISK)
        .select("origin", "source", "reason", "customer_id", "message")
        .unique(["origin", "reason", "customer_id"], keep="first", maintain_order=True)
        .to_dicts()
    )
