"""The Docker faults' common part: a named container of a platform that has container
handles (``chaos.backend.ContainerBackend``). A dead run's containers are removed with
the run (``testbed.docker.owner``): there is nothing of these faults left to revert."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nightly_pipeline.chaos.backend import ContainerBackend
from nightly_pipeline.chaos.platform_faults.base import FaultError, PlatformFault


class ContainerFault(PlatformFault):
    params_allowed = frozenset({"process"})

    @property
    def containers(self) -> ContainerBackend:
        if not isinstance(self.backend, ContainerBackend):
            raise FaultError(
                f"fault {self.type_name!r} needs the Docker platform (`--target docker`); "
                "this platform's processes are not containers"
            )
        return self.backend

    @property
    def process(self) -> str:
        name = str(self._require("process"))
        if name not in self.backend.process_names():
            known = ", ".join(self.backend.process_names())
            raise ValueError(f"fault {self.type_name!r}: no container {name!r}; known: {known}")
        return name

    @classmethod
    def revert_leftover(cls, leftover: Mapping[str, Any]) -> str:
        return "nothing: a dead run's containers are removed with it"
