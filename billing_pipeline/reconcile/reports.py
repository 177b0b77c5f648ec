"""How the month's finance CSVs write their money (``csv_files.MoneyColumns``).

Revenue and amounts at stake are invoice amounts, already in the customer's minor unit. Provider
cost is priced per token to 10^-12 of a dollar, so a cost, a margin and a cost drift are written
rounded for reading and again in full (``*_exact``) for reconciling against a provider's bill.
"""

from __future__ import annotations

import polars as pl

from billing_pipeline.catalog import Catalog
from billing_pipeline.csv_files import MoneyColumns

PROVIDER_CURRENCY = "USD"  # what the price book and the providers' cost pages are in


def customer_currencies(frame: pl.DataFrame, catalog: Catalog) -> pl.Series:
    """Each row's customer's currency; rows of no known customer (unattributed cost) are in the
    providers' currency."""
    currency = {cid: c.currency for cid, c in catalog.customers.items()}
    return pl.Series(
        "currency",
        [currency.get(cid, PROVIDER_CURRENCY) for cid in frame.get_column("customer_id")],
        dtype=pl.String,
    )


def reconciliation_columns(table: pl.DataFrame, catalog: Catalog) -> MoneyColumns:
    """reconciliation.csv: revenue, cost, margin, at_stake; cost and margin also exact."""
    return MoneyColumns(
        ("revenue", "cost", "margin", "at_stake"),
        exact=("cost", "margin"),
        currency=customer_currencies(table, catalog),
    )


def metering_drift_columns(drift: pl.DataFrame, catalog: Catalog) -> MoneyColumns:
    """metering_drift.csv: the revenue at stake, an invoice amount."""
    return MoneyColumns(("amount_at_stake",), currency=customer_currencies(drift, catalog))


COST_DRIFT_COLUMNS = MoneyColumns(
    ("computed_cost", "reported_cost", "difference"),
    exact=("computed_cost", "reported_cost", "difference"),
    currency=PROVIDER_CURRENCY,
)
