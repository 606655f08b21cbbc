"""``python -m nightly_pipeline.testbed.consumer --config FILE --metrics-port N [--name N]``"""

from __future__ import annotations

from collections.abc import Sequence

from nightly_pipeline.testbed.consumer.loop import open_consumer
from nightly_pipeline.testbed.consumer.metrics import ConsumerMetrics
from nightly_pipeline.testbed.metrics import Registry
from nightly_pipeline.testbed.service import parse_args, run_worker


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args("python -m nightly_pipeline.testbed.consumer", argv)
    registry = Registry()
    metrics = ConsumerMetrics(registry)
    return run_worker(
        lambda: open_consumer(args.config, args.pg_dsn, metrics, args.name), registry, args
    )


if __name__ == "__main__":
    raise SystemExit(main())
