"""Partitions: a night is one UTC day, the key of every test asset; Test 15 is weekly."""

import dagster as dg

NIGHTS = dg.DailyPartitionsDefinition(start_date="2026-11-01", timezone="UTC")
SUNDAYS = dg.WeeklyPartitionsDefinition(start_date="2026-11-01", day_offset=0, timezone="UTC")
"""Weeks Sunday to Saturday; the snapshot of a week runs after it, judging up to its end."""
