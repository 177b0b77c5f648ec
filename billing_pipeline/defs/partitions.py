"""Days for ingestion, months for billing. A monthly asset reads all days of its month."""

import dagster as dg

START = "2024-01-01"

daily_partitions = dg.DailyPartitionsDefinition(start_date=START, end_offset=1, timezone="UTC")
monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=START, end_offset=1, timezone="UTC")
