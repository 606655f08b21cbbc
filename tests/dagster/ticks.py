"""Ticks of one sensor as the daemon evaluates them: on a real instance, against the
Definitions' repository, each from the cursor the last one left."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from nightly_pipeline.definitions import defs


class SensorTicks:
    """One sensor's ticks on ``instance`` with ``resources``, keeping its cursor."""

    def __init__(
        self,
        sensor: dg.SensorDefinition,
        instance: dg.DagsterInstance,
        resources: Mapping[str, Any],
        cursor: str | None = None,
    ) -> None:
        self.sensor = sensor
        self.instance = instance
        self.resources = dict(resources)
        self.cursor = cursor

    def tick(self) -> dg.SensorResult:
        with dg.build_sensor_context(  # exited: it leaves no instance current
            instance=self.instance,
            cursor=self.cursor,
            resources=self.resources,
            repository_def=defs.get_repository_def(),
        ) as context:
            result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor
        return result
