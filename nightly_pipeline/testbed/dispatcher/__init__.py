"""The dispatcher process: outbox → Redis Stream (see ``loop``), run as
``python -m nightly_pipeline.testbed.dispatcher --config FILE --metrics-port N``."""

from nightly_pipeline.testbed.dispatcher.loop import (
    Dispatcher,
    DispatchSettings,
    open_dispatcher,
    stream_fields,
)
from nightly_pipeline.testbed.dispatcher.metrics import DispatcherMetrics

__all__ = [
    "DispatchSettings",
    "Dispatcher",
    "DispatcherMetrics",
    "open_dispatcher",
    "stream_fields",
]
