"""The real GraphQL client, keeping what it sends, for tests against the local stack.

Tests count and inspect the requests a path sends (scans, ranges, conditions, requests in
flight) through the real client and transport, without patching either.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metrics_agg.config import Config
from metrics_agg.deadline import Deadline
from metrics_agg.graphql.transport import GraphQLClient, GraphQLResponse, Kind


@dataclass(frozen=True, slots=True)
class Sent:
    """One request as the client was asked to send it."""

    document: str
    variables: Mapping[str, Any]
    kind: Kind


class RecordingClient(GraphQLClient):
    """The real client; keeps every request, in order, and the most in flight at once.

    `before_send` runs before each request goes out (a subclass's hook to act in between).
    """

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.requests: list[Sent] = []
        self.max_in_flight = 0
        self._flight_lock = threading.Lock()
        self._in_flight = 0

    def before_send(self, sent: Sent) -> None:
        """Called before each request is sent; nothing by default."""

    def execute(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        kind: Kind,
        deadline: Deadline | None = None,
    ) -> GraphQLResponse:
        sent = Sent(document, dict(variables or {}), kind)
        with self._flight_lock:
            self.requests.append(sent)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            self.before_send(sent)
            return super().execute(document, variables, kind=kind, deadline=deadline)
        finally:
            with self._flight_lock:
                self._in_flight -= 1
