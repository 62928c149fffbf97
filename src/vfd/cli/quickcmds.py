"""The console script's fast path for the commands people run most (the read-only folder
commands, uploads and downloads): read without typer, run by the same functions as their
typer commands.

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
from pathlib import Path
from typing import Any, NamedTuple

from vfd.cli import folderview
from vfd.cli.quickargs import NotSure, finish, global_options
from vfd.cli.state import CliState


class Quick(NamedTuple):
    """A command of the fast path: its flags (name -> keyword), its arguments, and what runs
    it (with the state, the flags and the arguments as keywords). ``options`` are those that
    take a value (name -> keyword; each given at most once here, as ``--name VALUE``), with
    their defaults in ``defaults``; a last argument in ``many`` takes one word or more, as a
    list; ``convert`` turns a keyword's words into what typer would give (``Path``)."""

    flags: dict[str, str]
    arguments: tuple[str, ...]
    run: Callable[..., None]
    options: dict[str, str] = {}
    defaults: dict[str, Any] = {}
    many: str | None = None
    convert: dict[str, Callable[[str], Any]] = {}


def _upload(cli: CliState, **values: Any) -> None:
    from vfd.cli import transferview

    transferview.upload(cli, **values)


def _download(cli: CliState, **values: Any) -> None:
    from vfd.cli import transferview

    transferview.download(cli, **values)


QUICK: dict[tuple[str, ...], Quick] = {
    ("vfolder", "list"): Quick(
        {"--trash": "trash", "--automount": "automount", "--json": "json"},
        (),
        folderview.list_folders,
    ),
    ("vfolder", "info"): Quick({"--json": "json"}, ("name",), folderview.show_folder),
    ("vfolder", "list-hosts"): Quick({"--json": "json"}, (), folderview.list_hosts),
    ("vfolder", "storage-status"): Quick({"--json": "json"}, (), folderview.storage_status),
    ("vfolder", "upload"): Quick(
        {"--overwrite": "overwrite", "--json": "json"},
        ("name", "sources"),
        _upload,
        options={"--dest": "dest", "-d": "dest"},
        defaults={"dest": ""},
        many="sources",
        convert={"sources": Path},
    ),
    ("vfolder", "download"): Quick(
        {"--json": "json"},
        ("name", "paths"),
        _download,
        options={"--dest": "dest", "-d": "dest"},
        defaults={"dest": Path(".")},
        many="paths",
        convert={"dest": Path},
    ),
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
    values.update(quick.defaults)
    given_options: set[str] = set()
    words: list[str] = []
    rest = iter(argv[at + len(path) :])
    for word in rest:
        if word.startswith("-") and word != "-":
            option = quick.options.get(word)
            if option is not None:
                value = next(rest, None)
                # a second time, a missing value, or one that looks like an option: typer's
                if option in given_options or not value or value.startswith("-"):
                    raise NotSure
                given_options.add(option)
                values[option] = value
                continue
            dest = quick.flags.get(word)  # (--help, --, --flag=value, -x: typer's)
            if dest is None:
                raise NotSure
            values[dest] = True
        elif not word or word == "-":  # what typer makes of these is typer's business
            raise NotSure
        else:
            words.append(word)
    if quick.many is not None and len(words) >= len(quick.arguments):
        cut = len(quick.arguments) - 1
        values.update(zip(quick.arguments[:cut], words[:cut], strict=True))
        values[quick.many] = words[cut:]
    elif len(words) == len(quick.arguments):
        values.update(zip(quick.arguments, words, strict=True))
    else:  # typer says what is missing or extra
        raise NotSure
    for key, turn in quick.convert.items():
        value = values[key]
        if isinstance(value, str):
            values[key] = turn(value)
        elif isinstance(value, list):
            values[key] = [turn(v) for v in value]
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
