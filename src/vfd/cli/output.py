"""How the CLI prints: rich tables and key/value panels for people, plain JSON for programs.

JSON goes to stdout untouched by rich (no markup, no wrapping), so ``vfd ... --json | jq``
always works. Errors are printed by :func:`print_error` only (called from the root command).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from vfd import wirenames
from vfd.errors import VfdError

if TYPE_CHECKING:  # rich is imported when something is printed through it
    from rich.console import Console


def make_console() -> Console:
    """The console for people-facing output on stdout."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


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
    from rich.table import Table
    from rich.text import Text

    rows = list(rows)
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
