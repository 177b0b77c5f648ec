"""Pricing models and the month's rating: usage in, explained line items out."""

from billing_pipeline.rating.assign import AT_RISK_SCHEMA, NEGATIVE_QUANTITY, QUANTITY_OVERFLOW
from billing_pipeline.rating.engine import UNRATED_SCHEMA, RatedMonth, rate_month
from billing_pipeline.rating.lines import LINE_SCHEMA
from billing_pipeline.rating.pricing import Priced, TierSlice, describe_prices, price_quantity
from billing_pipeline.rating.vectorized import AMOUNT_OVERFLOW

__all__ = [
    "AMOUNT_OVERFLOW",
    "AT_RISK_SCHEMA",
    "NEGATIVE_QUANTITY",
    "QUANTITY_OVERFLOW",
    "LINE_SCHEMA",
    "UNRATED_SCHEMA",
    "Priced",
    "RatedMonth",
    "TierSlice",
    "describe_prices",
    "price_quantity",
    "rate_month",
]
