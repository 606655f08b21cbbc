"""The control plane of a test: log users in and create conversations over plain HTTP
(httpx, sync — not the hot path), before the load starts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from nightly_pipeline.loadgen.safety import check_target
from nightly_pipeline.testbed.target import Target


class ControlPlaneError(RuntimeError):
    """The target refused a set-up step; the message says which and what it answered."""


@dataclass(frozen=True)
class Conversation:
    id: str
    owner: str
    participants: tuple[str, ...]  # usernames, the owner included


class ControlPlane:
    def __init__(self, target: Target, timeout_s: float = 10.0) -> None:
        check_target(target.base_url, target.allow_hosts)
        self.target = target
        self._client = httpx.Client(base_url=target.base_url, timeout=timeout_s, trust_env=False)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ok(self, response: httpx.Response, what: str) -> dict:
        if response.status_code >= 300:
            raise ControlPlaneError(
                f"{what} on {self.target.name}: HTTP {response.status_code} {response.text[:300]}"
            )
        return response.json()

    def login(self, username: str) -> str:
        body = {"username": username, "password": self.target.password}
        response = self._client.post("/v1/auth/login", json=body)
        return self._ok(response, f"login of {username}")["access_token"]

    def create_conversation(self, token: str, owner: str, others: Sequence[str]) -> Conversation:
        response = self._client.post(
            "/v1/conversations",
            json={"title": f"nightly {owner}", "participants": list(others)},
            headers={"Authorization": f"Bearer {token}"},
        )
        conversation = self._ok(response, f"create a conversation for {owner}")
        return Conversation(conversation["id"], owner, (owner, *others))
