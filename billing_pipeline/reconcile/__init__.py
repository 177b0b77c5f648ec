"""What we pay providers against what we charge customers."""

from billing_pipeline.reconcile.drift import (
    COST_DRIFT_SCHEMA,
    DRIFT_SCHEMA,
    cost_drift,
    metering_drift,
)
from billing_pipeline.reconcile.margins import RECONCILIATION_SCHEMA, allocate_revenue, reconcile
from billing_pipeline.reconcile.provider_cost import COST_SCHEMA, provider_cost

__all__ = [
    "COST_DRIFT_SCHEMA",
    "COST_SCHEMA",
    "DRIFT_SCHEMA",
    "RECONCILIATION_SCHEMA",
    "allocate_revenue",
    "cost_drift",
    "metering_drift",
    "provider_cost",
    "reconcile",
]
