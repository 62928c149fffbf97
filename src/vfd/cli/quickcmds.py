"""The console script's fast path for the read-only commands people run most: read without
typer, run by the same functions as their typer commands.

``vfd vfolder list`` answers in a few milliseconds; starting typer and building the command
would cost it several times that. A command line of one of :data:`QUICK`'s commands that this
module is sure about (the root's options, the command's name, its flags and arguments in the
forms typer takes them) is run here; anything else (``--help``, an option not in the table, a
value with ``=``, ``--``, a missing or extra argument) is left to typer, which prints its
usage, help or error as ever. ``tests/cli/test_quick.py`` checks :data:`QUICK` against the
typer commands and runs both ways side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from vfd.cli import folderview
from vfd.cli.quickargs import NotSure, finish, global_options
from vfd.cli.state import CliState


class Quick(NamedTuple):
    """A command of the fast path: its flags (name -> keyword), its arguments, and what runs
    it (with the state, the flags and the arguments as keywords)."""

    flags: dict[str, str]
    arguments: tuple[str, ...]
    run: Callable[..., None]


QUICK: dict[tuple[str, ...], Quick] = {
    ("vfolder", "list"): Quick(
        {"--trash": "trash", "--automount": "automount", "--json": "json"},
        (),
        folderview.list_folders,
    ),
    ("vfolder", "info"): Quick({"--json": "json"}, ("name",), folderview.show_folder),
    ("vfolder", "list-hosts"): Quick({"--json": "json"}, (), folderview.list_hosts),
    ("vfolder", "storage-status"): Quick({"--json": "json"}, (), folderview.storage_status),
}
"""The commands read here, by their path under ``vfd`` (two words; ``--json`` goes to the
state)."""


def parse(argv: list[str]) -> tuple[CliState, Quick, dict[str, Any]]:
    """The state, the command and its keywords of ``vfd ARGV`` (:class:`NotSure` when this
    module does not read it)."""
    given, at = global_options(argv)
    path = tuple(argv[at : at + 2])
    quick = QUICK.get(path)
    if quick is None:
        raise NotSure
    values: dict[str, Any] = {dest: False for dest in quick.flags.values()}
    words: list[str] = []
    for word in argv[at + len(path) :]:
        if word.startswith("-") and word != "-":
            dest = quick.flags.get(word)  # (--help, --, --flag=value, -x: typer's)
            if dest is None:
                raise NotSure
            values[dest] = True
        elif not word or word == "-":  # what typer makes of these is typer's business
            raise NotSure
        else:
            words.append(word)
    if len(words) != len(quick.arguments):  # typer says what is missing or extra
        raise NotSure
    values.update(zip(quick.arguments, words, strict=True))
    cli = CliState(**given, json=values.pop("json", False))
    return cli, quick, values


def run(argv: list[str]) -> int | None:
    """Run ``vfd ARGV`` when it is a command this module reads; its exit status, or None for
    typer to read it."""
    try:
        cli, quick, values = parse(argv)
    except NotSure:
        return None
    return finish(cli, lambda: quick.run(cli, **values))
