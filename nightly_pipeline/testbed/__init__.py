"""Targets the suite runs against: today the loopback echo target; the reference
messaging platform and the embedded stack launcher arrive with the Testbed issue."""
