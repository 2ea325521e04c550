"""LocalStack: the store, the GraphQL endpoint (uvicorn in a thread) and the mappings, together.

Besides the stream mapping it emulates the backfill's queues (`queues`): the backfill
queue with its dead-letter queue and the progress queue, spoken over SQS's protocol on the
same port, and an SQS mapping (`sqs_mapping`) onto the same handler with a bounded
concurrency, as `template.yaml` deploys them; and the activity table the stream units
record their pairs in for the scheduled reconcile (`dynamodb`), over DynamoDB's protocol
on the same port, stored in the SQLite file.

The handler runs in the mappings' threads, or with ``sandboxes=N`` in Lambda-like worker
processes apart from the server (`sandboxes`), as a deployment runs it.
"""

from __future__ import annotations

__all__ = ["LocalStack"]

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import uvicorn

from metrics_agg.config import (
    COUNTER_ENV,
    EMF_ENV,
    ERRORS_ENV,
    INVOCATION_PATH_ENV,
    ZONE_MARGIN_ENV,
    Config,
)
from metrics_agg.local.server.app import LocalAppSync
from metrics_agg.local.server.dashboard import Delivery
from metrics_agg.local.server.faults import FaultPlan
from metrics_agg.local.server.mapping import EventSourceMapping, Handler
from metrics_agg.local.server.queues import LocalQueues
from metrics_agg.local.server.sandboxes import Invocation, Sandboxes, invoke_here
from metrics_agg.local.server.seeding import seed_records
from metrics_agg.local.server.sqs_mapping import SqsEventSourceMapping
from metrics_agg.local.server.store import Store
from metrics_agg.timestamps import format_bucket_time

log = logging.getLogger("metrics_agg.local.server")
_FROM_ENVIRONMENT = (ZONE_MARGIN_ENV, COUNTER_ENV, EMF_ENV, ERRORS_ENV, INVOCATION_PATH_ENV)

# The queue names `metrics-agg backfill --local` addresses (backfill.sqs.local_queue_url).
BACKFILL_QUEUE = "metrics-agg-backfill"
BACKFILL_DLQ = "metrics-agg-backfill-dlq"
PROGRESS_QUEUE = "metrics-agg-backfill-progress"
# The activity table's name: one per stack, as each deployment owns its table, so a warm
# process's memory of what it recorded (`aggregator.activity`) never spans two stacks.
ACTIVITY_TABLE_PREFIX = "metrics-agg-activity-"


class LocalStack:
    """AppSync-compatible endpoint over SQLite plus stream delivery, on 127.0.0.1.

        with LocalStack(tmp_path / "db.sqlite", mapping=False) as stack:
            stack.endpoint, stack.api_key, stack.store, stack.faults, stack.config()

    `handler` defaults to `stack.invoke(event).response`: the aggregator's
    `metrics_agg.aggregator.pipeline.handle_event(event, config=stack.config())`, in the
    mapping's thread (imported on first delivery), or with ``sandboxes=N`` in a worker
    process (`sandboxes`; N start warm with the stack).

    Raises (start):
        OSError: the host/port cannot be bound (the message says which).
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = "local-dev-key",
        latency_ms: float = 0,
        index_lag_ms: float = 0,
        mapping: bool = True,
        backfill_queue: bool | None = None,
        batch_window: float | None = None,
        batching: Mapping[str, tuple[int, float]] | None = None,
        handler: Handler | None = None,
        max_retries: int = 3,
        backfill_concurrency: int = 5,
        backfill_visibility_timeout: float = 5.0,
        backfill_max_receives: int = 3,
        sandboxes: int = 0,
    ) -> None:
        self.db_path = os.fspath(db_path)
        self.host = host
        self.port = port
        self.api_key = api_key
        self.latency_ms = latency_ms
        self.index_lag_ms = index_lag_ms
        self.faults = FaultPlan()
        # Faults and request counts of the activity table (``dynamodb.BatchWriteItem``,
        # ``dynamodb.Query``), apart from the GraphQL ones.
        self.activity_faults = FaultPlan()
        self.activity_table = ACTIVITY_TABLE_PREFIX + secrets.token_hex(4)
        self._use_mapping = mapping
        # The backfill queue's consumer follows the stream mapping unless told otherwise:
        # `serve --no-mapping` turns off stream delivery, not the units a backfill sends.
        self._use_backfill = mapping if backfill_queue is None else backfill_queue
        self._batch_window = batch_window
        self._batching = batching
        self._handler = handler
        self._max_retries = max_retries
        self.queues = LocalQueues()
        self.queues.create(BACKFILL_DLQ)
        self.queues.create(
            BACKFILL_QUEUE,
            visibility_timeout=backfill_visibility_timeout,
            dead_letter=BACKFILL_DLQ,
            max_receives=backfill_max_receives,
        )
        self.queues.create(PROGRESS_QUEUE)
        self._backfill_concurrency = backfill_concurrency
        self.sandboxes = Sandboxes(sandboxes) if sandboxes > 0 else None
        self.backfill: SqsEventSourceMapping | None = None
        self._store: Store | None = None
        self.mapping: EventSourceMapping | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        self._store = Store(self.db_path)
        self._store.index_lag = max(0.0, self.index_lag_ms / 1000.0)
        try:
            # An explicit IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted connections of
            # a socket it recognises as TCP, and without it every keep-alive request waits ~40 ms
            # on Nagle + delayed ACK.
            sock = socket.socket(
                socket.AF_INET6 if ":" in self.host else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
            )
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.port))
            except OSError as exc:
                sock.close()
                raise OSError(
                    f"cannot listen on {self.host}:{self.port} ({exc.strerror}); "
                    "pick another --port (0 = any free port)"
                ) from exc
            self._sock = sock
            self.port = sock.getsockname()[1]
            app = LocalAppSync(
                self.store,
                api_key=self.api_key,
                latency_ms=self.latency_ms,
                faults=self.faults,
                queues=self.queues,
                activity_table=self.activity_table,
                activity_faults=self.activity_faults,
                delivery=self._delivery,
            )
            config = uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=2,
                http="h11",
                loop="asyncio",
            )
            self._server = uvicorn.Server(config)
            self._thread = threading.Thread(
                target=self._server.run,
                kwargs={"sockets": [sock]},
                name="local-appsync",
                daemon=True,
            )
            self._thread.start()
            deadline = time.monotonic() + timeout
            while not self._server.started:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the local GraphQL server did not start")
                time.sleep(0.01)
            if self.sandboxes is not None:
                self.sandboxes.start(self.config())
            if self._use_mapping:
                self.mapping = EventSourceMapping(
                    self.store,
                    self._handler or self._default_handler,
                    batch_window=self._batch_window,
                    batching=self._batching,
                    max_retries=self._max_retries,
                )
                self.mapping.start()
            if self._use_backfill:
                self.backfill = SqsEventSourceMapping(
                    self.queues,
                    BACKFILL_QUEUE,
                    self._handler or self._default_handler,
                    max_concurrency=self._backfill_concurrency,
                )
                self.backfill.start()
        except BaseException as exc:
            # The start failure is the error worth seeing; a stop that times out too is a note
            # on it, not a replacement for it.
            try:
                self.stop()
            except RuntimeError as stop_error:
                exc.add_note(f"and stopping what had started failed: {stop_error}")
            raise

    def _delivery(self) -> Delivery:
        """What runs now, for the dashboard's status (not what was asked for)."""
        return Delivery(
            stream_mapping=self.mapping is not None, backfill_queue=self.backfill is not None
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop delivery first (its handler talks to the server), then the server, then the DB.

        Each step waits for its threads to end, so the store is never closed with a thread
        still inside SQLite (closing a connection under a running `execute` can crash
        CPython 3.11's sqlite3, issue 10).

        Raises:
            RuntimeError: a mapping (stream or backfill queue) or server thread did not end
                within `timeout` seconds per step. Nothing after that step is stopped or
                closed, and the stack stays as it is, so `stop` can be called again once the
                thread has ended.
        """
        if self.backfill is not None:
            self.backfill.stop(timeout)
            self.backfill = None
        if self.mapping is not None:
            self.mapping.stop(timeout)
            self.mapping = None
        if self.sandboxes is not None:
            self.sandboxes.stop()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(
                    f"the local GraphQL server thread is still running after {timeout:g} s; "
                    "the store is left open"
                )
            self._thread = None
        self._server = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- what clients and tests use ----------------------------------------------------------
    @property
    def store(self) -> Store:
        """The stack's store (the truth for tests).

        Raises:
            RuntimeError: the stack is not running.
        """
        if self._store is None:
            raise RuntimeError("the local stack is not running: use `with LocalStack(...)`")
        return self._store

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/graphql"

    def config(self, **overrides: Any) -> Config:
        """A Config pointing at this stack (keyword overrides as in `Config`).

        The activity table is the stack's (``activity_table=None`` turns recording off and
        the scheduled pass back to discovery). The zone margin, the counter backend, the EMF
        switch and the error rules come from the environment (METRICS_AGG_ZONE_MARGIN_MINUTES,
        METRICS_AGG_COUNTER, METRICS_AGG_EMF, METRICS_AGG_ERRORS, and
        METRICS_AGG_INVOCATION_PATH for the cost comparison), as in Lambda,
        so the local mapping (`serve`, `demo`) behaves the way a deployment would; the
        tuning knobs keep their defaults.
        """
        env = {k: os.environ[k] for k in _FROM_ENVIRONMENT if k in os.environ}
        env.update(PLEXUS_API_URL=self.endpoint, PLEXUS_API_KEY=self.api_key)
        overrides.setdefault("progress_queue_url", self.queue_url(PROGRESS_QUEUE))
        # As the template wires it: rechecks go to the backfill queue (docs/incremental.md).
        overrides.setdefault("recheck_queue_url", self.queue_url(BACKFILL_QUEUE))
        # As the template wires it: units record their pairs, the reconcile reads them.
        overrides.setdefault("activity_table", self.activity_table)
        overrides.setdefault("activity_endpoint", self.endpoint.rsplit("/graphql", 1)[0])
        return Config.from_env(env, **overrides)

    def queue_url(self, name: str) -> str:
        """The SQS URL of one of the stack's queues (botocore's endpoint is its host)."""
        from metrics_agg.backfill.sqs import local_queue_url

        return local_queue_url(self.endpoint, name)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once every table's stream is delivered, no batch is in flight and the
        backfill queue is empty.

        Without a mapping there is nothing to wait for: True at once.
        """
        if self.mapping is not None and not self.mapping.wait_idle(timeout):
            return False
        deadline = time.monotonic() + timeout
        while self.backfill is not None and not self.backfill.idle():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def fill_history(
        self, accounts: Sequence[str], models: Sequence[str], per_pair: int, *, seed: int
    ) -> None:
        """Seed ``per_pair`` records of each model for each account over the previous and
        current hour, as history (no stream records), and recount those hours directly, so
        that the load a benchmark then runs lands in hours whose buckets exist."""
        from metrics_agg.aggregator import pipeline  # lazy, as in `_default_handler`

        now = datetime.now(UTC).replace(second=0, microsecond=0)
        start = now.replace(minute=0) - timedelta(hours=1)
        for a, account in enumerate(accounts):
            for m, model in enumerate(models):
                if per_pair:
                    seed_records(
                        self.store, model, account, per_pair, start, now,
                        seed=seed * 1000 + a * 10 + m, stream=False,
                    )  # fmt: skip
                end = start + timedelta(hours=2)
                window = {"start": format_bucket_time(start), "end": format_bucket_time(end)}
                event = {"recount": {"accountId": account, "model": model, **window}}
                response = pipeline.handle_event(event, config=self.config())
                if response.get("status") != "SUCCESS":
                    raise RuntimeError(f"recounting the seeded hours failed: {response}")

    def invoke(self, event: dict[str, Any], config: Config | None = None) -> Invocation:
        """Run the aggregator's handler on ``event`` (``config`` defaults to `config()`):
        in a sandbox process when the stack has them, else in the calling thread.

        Raises:
            SandboxError: in a sandbox, the handler raised or the sandbox ended.
            Exception: in the calling thread, whatever the handler raised.
        """
        config = config or self.config()
        if self.sandboxes is not None:
            return self.sandboxes.invoke(event, config)
        return invoke_here(event, config)

    def _default_handler(self, event: dict[str, Any]) -> Any:
        return self.invoke(event).response
