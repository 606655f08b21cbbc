"""The reference messaging platform (DESIGN §4, details in CONTRACT.md) and what runs it:
the embedded stack launcher (``stack``), the platform on it (``embedded``, started on
demand for a run by ``on_demand``), and the loopback echo target of the engine's
self-check (``echo``). The platform implements what the suite needs of a target
(``nightly_pipeline.suite.target.Target``)."""
