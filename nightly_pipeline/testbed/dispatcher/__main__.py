"""``python -m nightly_pipeline.testbed.dispatcher --config FILE --metrics-port N``"""

from __future__ import annotations

from collections.abc import Sequence

from nightly_pipeline.testbed.dispatcher.loop import open_dispatcher
from nightly_pipeline.testbed.dispatcher.metrics import DispatcherMetrics
from nightly_pipeline.testbed.metrics import Registry
from nightly_pipeline.testbed.service import parse_args, run_worker


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args("python -m nightly_pipeline.testbed.dispatcher", argv)
    registry = Registry()
    metrics = DispatcherMetrics(registry)
    return run_worker(lambda: open_dispatcher(args.config, args.pg_dsn, metrics), registry, args)


if __name__ == "__main__":
    raise SystemExit(main())
