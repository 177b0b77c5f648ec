"""What we pay providers against what we charge customers."""

from billing_pipeline.reconcile.margins import RECONCILIATION_SCHEMA, allocate_revenue, reconcile
from billing_pipeline.reconcile.provider_cost import COST_SCHEMA, provider_cost

__all__ = ["COST_SCHEMA", "RECONCILIATION_SCHEMA", "allocate_revenue", "provider_cost", "reconcile"]
