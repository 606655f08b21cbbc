"""The reference platform in Docker containers (DESIGN.md §11): a daemon to run on
(``daemon``), a hermetic image built locally (``contents``, ``image``), the platform on its
own network (``platform``), and its fault handles (``faults``)."""
