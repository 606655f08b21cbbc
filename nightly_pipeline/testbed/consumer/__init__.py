"""The delivery consumer process: Redis Stream consumer group → gateway (see ``loop``), run
as ``python -m nightly_pipeline.testbed.consumer --config FILE --metrics-port N``."""

from nightly_pipeline.testbed.consumer.entry import Entry, parse_entry
from nightly_pipeline.testbed.consumer.loop import (
    DELIVER_CHANNEL,
    DELIVERED_KEY,
    Consumer,
    ConsumerSettings,
    open_consumer,
)
from nightly_pipeline.testbed.consumer.metrics import ConsumerMetrics
from nightly_pipeline.testbed.consumer.participants import INVALIDATE_CHANNEL, ParticipantCache

__all__ = [
    "DELIVERED_KEY",
    "DELIVER_CHANNEL",
    "INVALIDATE_CHANNEL",
    "Consumer",
    "ConsumerMetrics",
    "ConsumerSettings",
    "Entry",
    "ParticipantCache",
    "open_consumer",
    "parse_entry",
]
