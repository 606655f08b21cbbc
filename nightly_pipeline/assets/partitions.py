"""The night a run belongs to: one UTC day, the partition key of every test asset."""

import dagster as dg

NIGHTS = dg.DailyPartitionsDefinition(start_date="2026-11-01", timezone="UTC")
