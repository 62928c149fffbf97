"""How the CLI prints: rich tables and key/value panels for people, plain JSON for programs.

JSON goes to stdout untouched by rich (no markup, no wrapping), so ``vfd ... --json | jq``
always works. Errors are printed by :func:`print_error` only (called from the root command).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from vfd import wirenames
from vfd.errors import VfdError

if TYPE_CHECKING:  # rich is imported when something is printed through it
    from rich.console import Console


def make_console() -> Console:
    """The console for people-facing output on stdout: made when first used for more than
    what :func:`table`, :func:`key_values` and the empty line write plainly."""
    return cast("Console", LazyConsole())


_RICH_TERMINAL_ENV = ("TTY_COMPATIBLE", "FORCE_COLOR", "JUPYTER_COLUMNS", "JPY_PARENT_PID")
"""Variables that change what rich takes for a terminal: with one set, rich is asked."""


class LazyConsole:
    """Stands for the rich console (every attribute is the real one's) without importing
    rich until something needs it: importing it costs a ``vfd`` command about as much as its
    request. Tables and lines that go to a file or pipe plainly need nothing of it."""

    def __init__(self) -> None:
        object.__setattr__(self, "_real", None)

    def real(self) -> Console:
        found: Console | None = object.__getattribute__(self, "_real")
        if found is None:
            from rich.console import Console

            found = Console(highlight=False, soft_wrap=False)
            object.__setattr__(self, "_real", found)
        return found

    @property
    def is_terminal(self) -> bool:
        """Whether stdout is a terminal, as rich decides it, without importing rich when
        nothing in the environment changes rich's answer (output to a file or pipe needs no
        rich at all: a transfer's progress bar is not drawn there)."""
        found: Console | None = object.__getattribute__(self, "_real")
        if found is None and not any(k in os.environ for k in _RICH_TERMINAL_ENV):
            try:
                return os.isatty(sys.stdout.fileno())
            except (AttributeError, OSError, ValueError):
                pass
        return self.real().is_terminal

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.real(), name, value)

    def __enter__(self) -> Console:
        return self.real().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.real().__exit__(*exc)


def _plain_width(console: Console) -> int | None:
    """The width rich would lay out in, when ``console`` writes plain text (stdout is not a
    terminal, and nothing forces rich's styles); None when rich must do it."""
    if not isinstance(console, LazyConsole) or object.__getattribute__(console, "_real"):
        return None
    if "FORCE_COLOR" in os.environ or "TTY_COMPATIBLE" in os.environ:
        return None
    try:
        if sys.stdout.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        return int(columns) or None
    for fd in (0, 1, 2):  # as rich looks for a terminal's width
        try:
            return os.get_terminal_size(fd).columns or None
        except (OSError, ValueError):
            continue
    return 80


def _plain_lines(width: int, rows: list[list[str]], *, wrap_last: bool = False) -> str | None:
    """``rows`` laid out as rich lays out a table without borders (cells left-aligned and
    padded to their column's width, columns two spaces apart), when every cell is one line of
    printable ASCII and the rows fit in ``width``, or, with ``wrap_last``, fit once the last
    column's words are wrapped as rich wraps them (the other columns never wrap); else None."""
    if not rows:
        return None
    for row in rows:
        if len(row) != len(rows[0]):
            return None
        for cell in row:
            if not cell or not (cell.isascii() and cell.isprintable()):
                return None
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    room = width - sum(widths[:-1]) - 2 * (len(widths) - 1)
    if widths[-1] > room:
        if not wrap_last or room < 1:
            return None
        widths[-1] = room
    lines = []
    for row in rows:
        *first, last = row
        for n, piece in enumerate(_wrapped(last, room)):
            cells = first if n == 0 else [""] * len(first)
            lines.append(
                "  ".join([*(c.ljust(w) for c, w in zip(cells, widths[:-1], strict=True)), piece])
            )
    return "".join(line.ljust(sum(widths) + 2 * (len(widths) - 1)) + "\n" for line in lines)


def _wrapped(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width``, broken as rich breaks a line of ASCII text:
    before a word that does not fit (a word keeps the spaces after it), a word longer than a
    line folded; spaces past the width dropped."""
    if len(text) <= width:
        return [text]
    breaks: list[int] = []
    offset = 0
    start = 0
    while start < len(text):
        end = start
        while end < len(text) and text[end] == " ":
            end += 1
        while end < len(text) and text[end] != " ":
            end += 1
        while end < len(text) and text[end] == " ":
            end += 1
        word = text[start:end]
        length = len(word.rstrip())
        if width - offset >= length:
            offset += len(word)
        elif length > width:
            at = start
            pieces = [word[i : i + width] for i in range(0, len(word), width)]
            for n, piece in enumerate(pieces):
                if at:
                    breaks.append(at)
                if n == len(pieces) - 1:
                    offset = len(piece)
                else:
                    at += len(piece)
        elif offset and start:
            breaks.append(start)
            offset = len(word)
        start = end
    bounds = [0, *breaks, len(text)]
    return [text[a:b][:width] for a, b in itertools.pairwise(bounds)]


def _no_markup(texts: Iterable[str]) -> bool:
    """Whether rich would print these strings as they are (no ``[style]`` markup, no
    ``:emoji:`` codes)."""
    return not any("[" in text or ":" in text for text in texts)


def _write_plain(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout, one trailing newline. A string that is not UTF-8
    (a local file name) is written as the API writes such names (:mod:`vfd.wirenames`)."""
    sys.stdout.write(json.dumps(wirenames.json_safe(value), indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def print_error(error: VfdError, *, as_json: bool) -> None:
    """The one error output: ``error: <message> [<code>]`` on stderr, or the JSON shape on
    stdout when the command was given ``--json``."""
    if as_json:
        print_json(error.to_json())
    else:
        sys.stderr.write(f"error: {wirenames.readable(error.message)} [{error.code.value}]\n")
        sys.stderr.flush()


def print_warning(message: str) -> None:
    sys.stderr.write(f"warning: {wirenames.readable(message)}\n")
    sys.stderr.flush()


def table(
    console: Console,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    title: str | None = None,
    empty: str = "nothing to show",
) -> None:
    """Print rows under ``columns``, or the ``empty`` line when there are none."""
    rows = list(rows)
    width = _plain_width(console)
    if width is not None and title is None and _no_markup([*columns, empty]):
        cells = [[str(c) for c in columns], *([cell_text(c) for c in row] for row in rows)]
        plain = _plain_lines(width, [[f"({empty})"]] if not rows else cells)
        if plain is not None:
            _write_plain(plain)
            return
    from rich.table import Table
    from rich.text import Text

    if not rows:
        console.print(f"({empty})", style="dim", markup=False)
        return
    out = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*(Text(cell_text(cell)) for cell in row))
    console.print(out)


def key_values(console: Console, pairs: Iterable[tuple[str, object]]) -> None:
    """Print ``key  value`` lines aligned, for one object (``vfd vfolder info``)."""
    pairs = list(pairs)
    width = _plain_width(console)
    if width is not None and _no_markup([key for key, _ in pairs]):
        rows = [[key, cell_text(value)] for key, value in pairs]
        plain = _plain_lines(width, rows, wrap_last=True)
        if plain is not None:
            _write_plain(plain)
            return
    from rich.table import Table
    from rich.text import Text

    out = Table(box=None, show_header=False, pad_edge=False)
    out.add_column(style="bold", no_wrap=True)
    out.add_column(overflow="fold")
    for key, value in pairs:
        out.add_row(key, Text(cell_text(value)))
    console.print(out)


def cell_text(value: object) -> str:
    """One cell: ``-`` for nothing, lists joined by commas, booleans as yes/no."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    return wirenames.readable(str(value))


def short_id(value: object) -> str:
    """The first 8 hex digits of an id, enough to tell folders apart in a table."""
    return str(value or "")[:8]
