"""Lambda execution environments as processes: the handler runs apart from the server.

In AWS the aggregator's Lambda runs in execution environments of its own, apart from
AppSync, DynamoDB and SQS. With ``LocalStack(sandboxes=N)`` the local stack does the same:
each invocation runs `pipeline.handle_event` in a spawned worker process, one invocation
per process at a time, and the process stays warm for the next one, as Lambda reuses an
environment. ``N`` start warm with the stack; more start (cold, about half a second) when
more invocations run at once than are idle, as Lambda scales out.

Without sandboxes the handler runs in the mapping's threads, in the server's process. The
server's parsing and the aggregator's counting then take turns on one interpreter lock,
which no deployment has (docs/reliability.md, "Where the lag tail comes from").

A worker's log records come back over its own pipe, before its reply, and go to the
parent's handlers, at the levels the parent's loggers had when the sandboxes started, so
the lines look the same either way (a traceback travels as text).
A sandbox that dies mid-invocation fails that invocation (the mapping retries the batch,
as Lambda does after a runtime crash) and a fresh one takes its place on the next.
"""

from __future__ import annotations

__all__ = ["Invocation", "SandboxError", "Sandboxes", "invoke_here"]

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the pipeline is imported in the workers, not by the server
    from metrics_agg.aggregator.emf import InvocationMetrics
    from metrics_agg.aggregator.pipeline import InvocationResponse
    from metrics_agg.config import Config

log = logging.getLogger("metrics_agg.local.server.sandboxes")


@dataclass(frozen=True, slots=True)
class Invocation:
    """What one invocation returned, and the metrics it emitted (None: it emitted none)."""

    response: InvocationResponse
    metrics: InvocationMetrics | None


class SandboxError(RuntimeError):
    """The handler raised in its sandbox, or the sandbox ended during the invocation."""


def invoke_here(event: dict[str, Any], config: Config) -> Invocation:
    """Run ``pipeline.handle_event(event, config=config)`` in this process: a sandbox's
    body, and the stack's handler without sandboxes.

    Raises:
        Exception: whatever the handler raised.
    """
    from metrics_agg.aggregator import pipeline  # lazy: the pipeline is optional for the server

    emitted: list[InvocationMetrics] = []
    response = pipeline.handle_event(event, config=config, metrics_sink=emitted.append)
    return Invocation(response, emitted[-1] if emitted else None)


def _logger_levels() -> dict[str, int]:
    """The parent's explicitly set logger levels (root included), for a worker to copy."""
    levels = {"": logging.getLogger().level}
    manager = logging.root.manager
    for name, logger in list(manager.loggerDict.items()):  # other threads may add loggers
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


class _Channel:
    """A sandbox's end of its pipe: replies and log records, one message at a time (the
    aggregator logs from its worker threads too)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, message: tuple[str, Any, Any]) -> None:
        with self.lock:
            self.conn.send(message)


class _PipeHandler(logging.Handler):
    """Sends each record, formatted into its message, to the parent (`_forward`)."""

    def __init__(self, channel: _Channel) -> None:
        super().__init__()
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            shipped = logging.makeLogRecord(record.__dict__)
            shipped.msg, shipped.args, shipped.exc_info = message, None, None
            self.channel.send(("log", shipped, None))
        except Exception:
            self.handleError(record)


def _worker(conn: Connection, levels: Mapping[str, int], init: Config) -> None:
    """A sandbox's init (with the stack's config), then its loop: (event, config) in; log
    records and then ("ok" | "raised", payload, metrics) out."""
    # Ctrl-C reaches every process of the terminal's group; the stack stops its sandboxes.
    # SIGINT was blocked while this process started (`_Sandbox`): ignore it, then unblock.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    from metrics_agg import logs
    from metrics_agg.aggregator import pipeline  # noqa: F401 - warm: imported before any event
    from metrics_agg.aggregator.lambda_support import prepare

    channel = _Channel(conn)
    handler = _PipeHandler(channel)
    logs.configure(os.environ, handler=handler, level=levels.get("metrics_agg", logging.NOTSET))
    handler.setFormatter(logging.Formatter("%(message)s"))  # the parent's handlers format
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    prepare(init)  # as the Lambda shell's init does
    channel.send(("ready", os.getpid(), None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        event, config = message
        reply: tuple[str, Any, InvocationMetrics | None]
        try:
            done = invoke_here(event, config)
        except BaseException as exc:  # a raising handler fails its batch, as in Lambda
            reply = ("raised", f"{type(exc).__name__}: {exc}", None)
        else:
            reply = ("ok", done.response, done.metrics)
        channel.send(reply)


def _forward(record: logging.LogRecord) -> None:
    """A worker's record, handled by the parent's logger of the same name."""
    logging.getLogger(record.name).handle(record)


class _Sandbox:
    def __init__(self, context: Any, levels: Mapping[str, int], config: Config) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_worker, args=(child, dict(levels), config), name="lambda-sandbox", daemon=True
        )
        # A Ctrl-C while the child starts (before it ignores SIGINT) would print its
        # KeyboardInterrupt: the child inherits this thread's blocked SIGINT.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        child.close()

    def receive(self) -> tuple[str, Any, Any]:
        """The next reply, handing the log records before it to the parent's loggers.

        Raises:
            EOFError, OSError: the process ended.
        """
        while True:
            message: tuple[str, Any, Any] = self.conn.recv()
            if message[0] != "log":
                return message
            _forward(message[1])

    def wait_ready(self) -> None:
        try:
            self.receive()
        except (EOFError, OSError):
            raise SandboxError(
                f"a Lambda sandbox process did not start (exit code {self.process.exitcode})"
            ) from None

    def ask_to_end(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # already gone
            self.conn.send(None)

    def end(self, deadline: float) -> None:
        self.ask_to_end()
        self.process.join(max(0.0, deadline - time.monotonic()))
        if self.process.is_alive():
            self.process.kill()
            self.process.join(1.0)
        self.conn.close()


class Sandboxes:
    """Warm worker processes running the aggregator's handler, one invocation each."""

    def __init__(self, warm: int) -> None:
        self._warm = warm
        self._context = multiprocessing.get_context("spawn")
        self._levels: dict[str, int] = {}
        self._config: Config | None = None
        self._idle: list[_Sandbox] = []
        self._all: list[_Sandbox] = []
        self._lock = threading.Lock()
        self._stopped = False
        self.cold_starts = 0

    def start(self, config: Config) -> None:
        """Start ``warm`` sandboxes, and wait until each has imported the pipeline and
        made its clients for ``config`` (`lambda_support.prepare`).

        Raises:
            SandboxError: a sandbox process ended before it was ready.
        """
        self._levels = _logger_levels()
        self._config = config
        started = [self._spawn() for _ in range(self._warm)]
        for sandbox in started:
            sandbox.wait_ready()
        with self._lock:
            self._idle.extend(started)

    def invoke(self, event: dict[str, Any], config: Config) -> Invocation:
        """Run ``pipeline.handle_event(event, config=config)`` in an idle sandbox.

        Raises:
            SandboxError: the handler raised (the message names the exception), the
                sandbox ended during the invocation, the event cannot be pickled, or the
                sandboxes are stopped.
        """
        sandbox = self._take()
        try:
            payload = pickle.dumps((event, config))
        except Exception as exc:  # nothing was sent: the sandbox stays warm
            with self._lock:
                self._idle.append(sandbox)
            raise SandboxError(f"the event cannot be sent to a sandbox: {exc}") from None
        try:
            sandbox.conn.send_bytes(payload)
            status, result, metrics = sandbox.receive()
        except (EOFError, OSError) as exc:
            self._discard(sandbox)
            raise SandboxError(
                f"the Lambda sandbox (pid {sandbox.process.pid}) ended during the invocation "
                f"(exit code {sandbox.process.exitcode}): {type(exc).__name__}"
            ) from None
        except BaseException:  # interrupted mid-invocation: its reply would confuse the next
            self._discard(sandbox)
            raise
        with self._lock:
            self._idle.append(sandbox)
        if status == "raised":
            raise SandboxError(result)
        return Invocation(result, metrics)

    def stop(self, timeout: float = 10.0) -> None:
        """End every sandbox within ``timeout`` seconds in all (after the mappings stopped,
        so none is mid-invocation); one that does not end is killed."""
        with self._lock:
            self._stopped = True
            sandboxes, self._all, self._idle = self._all, [], []
        for sandbox in sandboxes:
            sandbox.ask_to_end()
        deadline = time.monotonic() + timeout
        for sandbox in sandboxes:
            sandbox.end(deadline)

    def _spawn(self) -> _Sandbox:
        assert self._config is not None, "start() first"
        sandbox = _Sandbox(self._context, self._levels, self._config)
        with self._lock:
            self._all.append(sandbox)
        return sandbox

    def _take(self) -> _Sandbox:
        with self._lock:
            if self._stopped:
                raise SandboxError("the sandboxes are stopped")
            if self._idle:
                return self._idle.pop()
            self.cold_starts += 1
        sandbox = self._spawn()  # a cold start, as Lambda scales out
        log.debug("cold start: sandbox pid %s", sandbox.process.pid)
        try:
            sandbox.wait_ready()
        except SandboxError:
            self._discard(sandbox)
            raise
        return sandbox

    def _discard(self, sandbox: _Sandbox) -> None:
        with self._lock:
            if sandbox in self._all:
                self._all.remove(sandbox)
        sandbox.end(time.monotonic() + 1.0)
