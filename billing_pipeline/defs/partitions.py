"""Days for ingestion, months for billing, hours for the gateway log's fresh view (alerts, hard
caps, month-to-date statements within the hour). A monthly asset reads all days of its month."""

import dagster as dg

START = "2024-01-01"

daily_partitions = dg.DailyPartitionsDefinition(start_date=START, end_offset=1, timezone="UTC")
monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=START, end_offset=1, timezone="UTC")
# end_offset=1: the hour in progress is a partition, so a line landing now is ingested now.
hourly_partitions = dg.HourlyPartitionsDefinition(
    start_date=f"{START}-00:00", end_offset=1, timezone="UTC"
)
HOUR_KEY_FORMAT = "%Y-%m-%d-%H:%M"  # hourly_partitions' keys: 2026-10-05-14:00
