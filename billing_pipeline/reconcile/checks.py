"""The checks on cost and reconciliation: every cost line read, every usage event costed, and the
reconciliation neither losing nor making revenue or cost."""

from __future__ import annotations

import polars as pl

from billing_pipeline.checks import WARN, CheckOutcome
from billing_pipeline.money import decimal_sum


def cost_lines_readable_check(cost_quarantine: pl.DataFrame) -> CheckOutcome:
    """Every line of the providers' cost pages was read; the first unreadable ones are named. A
    warning only: a cost line bills nobody, so it holds no invoice."""
    return CheckOutcome(
        passed=cost_quarantine.height == 0,
        severity=WARN,
        metadata={
            "quarantined": cost_quarantine.height,
            "first": ", ".join(
                f"{o} ({r})"
                for o, r in cost_quarantine.select("origin", "reason").head(5).iter_rows()
            )
            or "none",
        },
    )


def priced_check(costs: pl.DataFrame) -> CheckOutcome:
    """Every usage event is priced by the price book or carries the provider's reported cost;
    unpriced provider/model/meter triples are listed. A warning: margins are off, not invoices."""
    unpriced = costs.filter(pl.col("cost_basis") == "unpriced")
    models = sorted(
        {
            f"{p}/{m or '-'}/{meter}"
            for p, m, meter in unpriced.select("provider", "model_family", "meter").iter_rows()
        }
    )
    return CheckOutcome(
        passed=unpriced.height == 0,
        severity=WARN,
        metadata={
            "unpriced": ", ".join(models) or "none",
            "unpriced_events": int(unpriced["events"].sum() or 0),
        },
    )


def revenue_check(reconciliation: pl.DataFrame, rated_charges: pl.DataFrame) -> CheckOutcome:
    """The reconciliation's revenue is exactly the rated lines' amount."""
    revenue = decimal_sum(reconciliation["revenue"])
    rated = decimal_sum(rated_charges["amount"])
    return CheckOutcome(
        passed=revenue == rated,
        metadata={"reconciled_revenue": str(revenue), "rated_lines": str(rated)},
    )


def cost_check(reconciliation: pl.DataFrame, provider_cost: pl.DataFrame) -> CheckOutcome:
    """Attributed plus unattributed cost in the reconciliation is exactly the provider cost."""
    cost = decimal_sum(reconciliation["cost"])
    provider_total = decimal_sum(provider_cost["cost"])
    unattributed = decimal_sum(reconciliation.filter(pl.col("customer_id").is_null())["cost"])
    return CheckOutcome(
        passed=cost == provider_total,
        metadata={
            "reconciled_cost": str(cost),
            "provider_total": str(provider_total),
            "unattributed": str(unattributed),
        },
    )
