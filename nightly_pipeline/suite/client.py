"""The control plane of a test: plain, synchronous HTTP (httpx) to log users in, create
conversations and read them, before the load or in bounded observation phases. Never the
hot path: the load goes through the engine's own client (``vu.http``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from nightly_pipeline.loadgen.safety import check_target
from nightly_pipeline.suite.target import Target

TOKEN_REFRESH_S = 600.0
"""Log in again before the platform's 15-minute access tokens expire."""


class ControlPlaneError(RuntimeError):
    """The target refused a set-up step; the message says which and what it answered."""


@dataclass
class Session:
    """A logged-in user; ``token`` is replaced when a scenario logs in again."""

    username: str
    user_id: int
    token: str

    def headers(self, *extra: tuple[str, str]) -> list[tuple[str, str]]:
        return [("Authorization", f"Bearer {self.token}"), *extra]


@dataclass(frozen=True)
class Conversation:
    id: str
    owner: str
    participants: tuple[str, ...]  # usernames, the owner included


class PlatformClient:
    """The platform's API over httpx, for one target (loopback or its ``allow_hosts``)."""

    def __init__(self, target: Target, timeout_s: float = 10.0) -> None:
        check_target(target.base_url, target.allow_hosts)
        self.target = target
        self.client = httpx.Client(base_url=target.base_url, timeout=timeout_s, trust_env=False)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ok(self, response: httpx.Response, what: str) -> Any:
        if response.status_code >= 300:
            raise ControlPlaneError(
                f"{what} on {self.target.name}: HTTP {response.status_code} {response.text[:300]}"
            )
        return response.json()

    def login(self, username: str) -> Session:
        body = {"username": username, "password": self.target.password}
        answer = self._ok(self.client.post("/v1/auth/login", json=body), f"login of {username}")
        return Session(username, int(answer["user_id"]), answer["access_token"])

    def create_conversation(
        self, owner: Session, others: Sequence[Session], title: str | None = None
    ) -> Conversation:
        response = self.client.post(
            "/v1/conversations",
            json={
                "title": title or f"nightly {owner.username}",
                "participants": [o.user_id for o in others],
            },
            headers=dict(owner.headers()),
        )
        created = self._ok(response, f"create a conversation for {owner.username}")
        return Conversation(
            created["id"], owner.username, (owner.username, *(o.username for o in others))
        )

    def get_conversation(self, session: Session, conversation_id: str) -> httpx.Response:
        """The raw answer (200, 403, 404...) with its ``X-Cache`` header."""
        return self.client.get(
            f"/v1/conversations/{conversation_id}", headers=dict(session.headers())
        )

    def read_storage_cache(self, key: str) -> bool:
        """One cache read through the storage probe (a miss fills it): did it hit?"""
        response = self.client.get("/v1/storage/cache", params={"key": key})
        return bool(self._ok(response, f"read the storage cache ({key})").get("hit"))
