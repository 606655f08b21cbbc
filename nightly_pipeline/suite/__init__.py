"""The nightly tests as plain Python (no Dagster): specs, scenarios, and how their
results become store records. Today: the engine self-check; Tests 01–15 follow."""
