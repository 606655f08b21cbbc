"""The one-method channel interface and the implementations shared by every channel.

    Channel.post(message) -> Delivery      never raises for a delivery failure

``WebhookChannel`` posts a channel's JSON (from its ``render``) through the retrying
``WebhookPoster``; ``DryRunChannel`` logs the JSON and sends nothing; ``RefusedChannel``
reports a destination or setting that cannot be used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from nightly_pipeline.alerts.formatting import Message
from nightly_pipeline.alerts.model import Delivery
from nightly_pipeline.alerts.webhook import WebhookPoster

log = logging.getLogger("nightly_pipeline.alerts")

Render = Callable[[Message], Mapping[str, Any]]


class Channel(Protocol):
    name: str

    def post(self, message: Message) -> Delivery: ...


class WebhookChannel:
    """A webhook that takes the JSON ``render(message)`` returns."""

    name = "webhook"

    def __init__(self, url: str, poster: WebhookPoster) -> None:
        self._url = url
        self._poster = poster

    def render(self, message: Message) -> Mapping[str, Any]:
        raise NotImplementedError

    def post(self, message: Message) -> Delivery:
        result = self._poster.post_json(self._url, self.render(message), channel=self.name)
        return Delivery(
            channel=self.name,
            ok=result.ok,
            attempts=result.attempts,
            error=result.error,
            status_code=result.status_code,
            night=message.night,
            alerts=message.total,
        )


class DryRunChannel:
    """Builds the channel's JSON and logs it; sends nothing."""

    def __init__(self, name: str, render: Render, destination: str) -> None:
        self.name = name
        self._render = render
        self._destination = destination

    def post(self, message: Message) -> Delivery:
        payload = json.dumps(self._render(message), ensure_ascii=False)
        log.info("dry run: %s alert to %s not sent: %s", self.name, self._destination, payload)
        return Delivery(
            self.name, ok=True, attempts=0, dry_run=True, night=message.night, alerts=message.total
        )


class RefusedChannel:
    """A channel that cannot be used (destination not allowed, invalid settings)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self._reason = reason

    def post(self, message: Message) -> Delivery:
        log.error("%s alert not sent: %s", self.name, self._reason)
        return Delivery(
            self.name, ok=False, attempts=0, error=self._reason, night=message.night,
            alerts=message.total,
        )  # fmt: skip
