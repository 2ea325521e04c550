"""The one guard every `metrics-agg` command runs under.

A person's mistake, a closed pipe or Ctrl-C ends a command with one line and a documented
exit status, never a traceback: 2 for "could not run" (bad input, configuration, an API
that cannot be reached), 130 for an interrupt, and for a reader that went away (`| head`)
the quiet exit of a Unix tool killed by SIGPIPE. Exit status 1 stays reserved for
"differences or failures reported" by the command itself. With ``-v`` an unexpected
``OSError``/``ValueError`` also prints its traceback, for a bug report.
"""

from __future__ import annotations

__all__ = ["EXIT_INTERRUPTED", "EXIT_PIPE", "CliLogHandler", "describe_os_error", "run_guarded"]

import argparse
import contextlib
import logging
import os
import select
import sqlite3
import sys
import traceback
from collections.abc import Callable

from metrics_agg.errors import MetricsAggError
from metrics_agg.local.cli._messages import describe_error

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
EXIT_PIPE = 141  # 128 + SIGPIPE, what `yes | head -1` ends with under `set -o pipefail`

# What `pip install 'metrics-agg[local]'` adds (the local server's imports).
_LOCAL_EXTRA = frozenset({"ariadne", "uvicorn", "graphql", "starlette"})


class CliLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The human log on a terminal or pipe: a reader that went away is not an error.

    logging reports a failed write as a ``--- Logging error ---`` block with a traceback;
    for a closed pipe the command's own next write ends it quietly instead.
    """

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            return
        super().handleError(record)


def _closed_for_writing(stream: object) -> bool:
    """True when ``stream``'s reader has gone (a pipe whose other end is closed)."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False
    if not hasattr(select, "poll"):
        return True  # cannot tell: a broken pipe here is most likely ours
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))


def _quiet_closed_streams() -> None:
    """Point a closed stdout or stderr at /dev/null so the interpreter's final flush of its
    buffer cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        if _closed_for_writing(stream):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.dup2(devnull, stream.fileno())
    os.close(devnull)


def describe_os_error(exc: OSError) -> str:
    """One sentence for a file a person named that cannot be used."""
    name = exc.filename
    if name is None:
        return exc.strerror or str(exc)
    if isinstance(exc, IsADirectoryError):
        return f"{name} is a directory: give a file"
    if isinstance(exc, FileNotFoundError):
        return f"no such file or directory: {name}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {name}"
    if isinstance(exc, NotADirectoryError):
        return f"{name} has a file where a folder is expected"
    return f"cannot use {name}: {exc.strerror or exc}"


def _say(command: str, text: str) -> None:
    try:
        sys.stderr.write(f"{command}: {text}\n")
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass


def run_guarded(
    command: str, body: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """Run ``body(args)``; every way it can end becomes one line and an exit status."""
    verbose = bool(getattr(args, "verbose", False))
    try:
        return int(body(args))
    except BrokenPipeError:
        if _closed_for_writing(sys.stdout) or _closed_for_writing(sys.stderr):
            _quiet_closed_streams()
            return EXIT_PIPE
        _say(command, "a connection closed while writing to it (broken pipe); run it again")
        return 2
    except KeyboardInterrupt:
        if sys.stderr.isatty():
            sys.stderr.write("\n")  # past a progress line redrawn in place
        hint = getattr(args, "on_interrupt", None)
        _say(command, f"interrupted; {hint}" if hint else "interrupted")
        return EXIT_INTERRUPTED
    except MetricsAggError as exc:
        _say(command, describe_error(exc))
        return 2
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _LOCAL_EXTRA:
            raise
        _say(
            command,
            f"needs the `local` extra, {exc.name} is missing: pip install 'metrics-agg[local]'",
        )
        return 2
    except sqlite3.Error as exc:
        db = getattr(args, "db", None)
        _say(command, f"cannot use the database {db}: {exc}")
        return 2
    except OSError as exc:
        if verbose:
            traceback.print_exc()
        _say(command, describe_os_error(exc))
        return 2
    except ValueError as exc:
        if verbose:
            traceback.print_exc()
        _say(command, str(exc))
        return 2
