"""Output for people: aligned tables, sparklines, a TTY progress line, human numbers.

No third-party dependency: `rich` would add its import time to every CLI start, and a
package plus `pygments`/`markdown-it` to the install, for what fits in this module.
Unicode box drawing and block characters are used when the output stream can encode
them, plain ASCII otherwise.
"""

from __future__ import annotations

__all__ = [
    "Column",
    "Progress",
    "can_encode",
    "format_duration",
    "format_si",
    "format_table",
    "sparkline",
]

import sys
import threading
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, TextIO

_BLOCKS = "▁▂▃▄▅▆▇█"
_ASCII_LEVELS = "_.-=+*#@"


def can_encode(stream: TextIO, text: str = "█│✓") -> bool:
    """Whether ``stream`` can print ``text`` (pipes with an ASCII locale cannot)."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _width(text: str) -> int:
    """Display width: east-asian wide characters take two cells, combining marks none."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _pad(text: str, width: int, align: Literal["<", ">", "^"]) -> str:
    gap = max(0, width - _width(text))
    if align == ">":
        return " " * gap + text
    if align == "^":
        left = gap // 2
        return " " * left + text + " " * (gap - left)
    return text + " " * gap


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its header and alignment ('>' for numbers, '<' for text)."""

    header: str
    align: Literal["<", ">", "^"] = "<"


def format_table(
    columns: Sequence[Column | str],
    rows: Iterable[Sequence[object]],
    *,
    style: Literal["unicode", "plain", "auto"] = "auto",
    stream: TextIO | None = None,
    indent: str = "",
) -> str:
    """Rows under their headers, every column aligned; returns the text (no trailing newline).

    ``style="auto"`` draws unicode box rules when ``stream`` (default stdout) can encode
    them, ASCII otherwise. Cells are ``str()``-ed; ``None`` prints as an empty cell.
    """
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    for row in cells:
        if len(row) != len(cols):
            raise ValueError(f"row has {len(row)} cells, table has {len(cols)} columns")
    widths = [_width(c.header) for c in cols]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], _width(cell))
    if style == "auto":
        style = "unicode" if can_encode(stream or sys.stdout, "─│┼") else "plain"
    sep, rule_char, cross = (" │ ", "─", "─┼─") if style == "unicode" else (" | ", "-", "-+-")

    def line(values: Sequence[str], aligns: Sequence[Literal["<", ">", "^"]]) -> str:
        return (
            indent
            + sep.join(
                _pad(v, w, a) for v, w, a in zip(values, widths, aligns, strict=True)
            ).rstrip()
        )

    out = [
        line([c.header for c in cols], [c.align for c in cols]),
        indent + cross.join(rule_char * w for w in widths),
    ]
    out.extend(line(row, [c.align for c in cols]) for row in cells)
    return "\n".join(out)


def sparkline(
    values: Sequence[int | float],
    *,
    width: int | None = None,
    ascii_only: bool = False,
) -> str:
    """One character per value, scaled from 0 to the maximum.

    Zero is always the lowest block and any non-zero value at least the second, so an
    empty bucket stays distinguishable from a quiet one. With ``width``, consecutive
    values are summed into at most ``width`` characters (a 120-minute series becomes 60
    two-minute cells), which keeps totals meaningful.
    """
    levels = _ASCII_LEVELS if ascii_only else _BLOCKS
    series = list(values)
    if width is not None and width > 0 and len(series) > width:
        group = -(-len(series) // width)  # ceil
        series = [sum(series[i : i + group]) for i in range(0, len(series), group)]
    if not series:
        return ""
    top = max(series)
    if top <= 0:
        return levels[0] * len(series)
    out = []
    for v in series:
        if v <= 0:
            out.append(levels[0])
        else:
            idx = 1 + int((v / top) * (len(levels) - 2) + 0.5)
            out.append(levels[min(idx, len(levels) - 1)])
    return "".join(out)


def format_si(n: float) -> str:
    """Short magnitude for progress lines: ``950``, ``12.3k``, ``1.2M``."""
    a = abs(n)
    if a < 1000:
        return f"{n:.0f}"
    for unit, scale in (("k", 1e3), ("M", 1e6), ("G", 1e9)):
        if a < scale * 1000 or unit == "G":
            value = n / scale
            return f"{value:.1f}{unit}" if abs(value) < 100 else f"{value:.0f}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def format_duration(seconds: float) -> str:
    """``850 ms``, ``12.3 s``, ``2 min 05 s``, ``1 h 02 min``: units always shown."""
    if seconds < 0:
        seconds = 0.0
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        m, s = divmod(round(seconds), 60)
        return f"{m} min {s:02d} s"
    h, rest = divmod(round(seconds), 3600)
    return f"{h} h {rest // 60:02d} min"


class Progress:
    """A one-line progress indicator on a TTY; silent when the stream is not a terminal.

    Usage::

        with Progress("Writing records", total=n) as bar:
            for ...:
                bar.advance()

    Redraws at most ten times a second from the caller's thread (no background thread),
    and erases itself on exit so the next line of output starts clean.
    """

    def __init__(
        self,
        label: str,
        *,
        total: int | None = None,
        unit: str = "",
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._ascii = not can_encode(self._stream, "█░")
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._lock = threading.Lock()
        self._drawn = 0

    @property
    def enabled(self) -> bool:
        return self._enabled

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        self._draw(force=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
        self._draw()

    def set(self, done: int, label: str | None = None) -> None:
        with self._lock:
            self.done = done
            if label is not None:
                self.label = label
        self._draw(force=label is not None)

    def render(self) -> str:
        """The line as it would be drawn (exposed for tests)."""
        elapsed = format_duration(time.monotonic() - self._started)
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            frac = min(1.0, self.done / self.total)
            full, empty = ("#", ".") if self._ascii else ("█", "░")
            cells = int(frac * 20)
            bar = full * cells + empty * (20 - cells)
            return (
                f"{self.label} {bar} {frac * 100:3.0f}%  "
                f"{format_si(self.done)}/{format_si(self.total)}{unit}  {elapsed}"
            )
        return f"{self.label}  {format_si(self.done)}{unit}  {elapsed}"

    def _draw(self, *, force: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        text = self.render()
        pad = " " * max(0, self._drawn - len(text))
        self._stream.write("\r" + text + pad)
        self._stream.flush()
        self._drawn = len(text)

    def close(self) -> None:
        if self._enabled and self._drawn:
            self._stream.write("\r" + " " * self._drawn + "\r")
            self._stream.flush()
            self._drawn = 0
