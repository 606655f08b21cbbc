"""The nightly tests as plain Python (no Dagster): one module per test in ``scenarios/``
(listed by ``catalog``), what they need of a platform (``target``), how a test runs and is
judged (``runner``, ``sampling``, ``delivery``), which failures are retried (``errors``),
and how results become store records (``results``). See docs/adding-a-test.md."""
