"""Daily usage alerts: limits, spikes and hard caps, delivered as signed webhooks from an outbox."""

from billing_pipeline.alerts.rules import (
    Alert,
    AlertRules,
    daily_spend,
    limit_alerts,
    over_hard_cap,
    spike_alerts,
)

__all__ = ["Alert", "AlertRules", "daily_spend", "limit_alerts", "over_hard_cap", "spike_alerts"]
