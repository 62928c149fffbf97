"""The root command's sub-commands: the module each comes from and its one-line help.

``vfd --help`` lists every sub-command from :data:`COMMANDS` without importing one, and a
command line imports only the module of the command it runs (:func:`load`): importing every
command group costs each ``vfd`` invocation more than most of them take to run. The one-line
help here must be the first paragraph of the real command's help, line breaks included; a
test compares them, and the whole ``vfd --help`` of both ways, so they cannot drift.
"""

from __future__ import annotations

import copy
import functools
import importlib
from collections.abc import Callable
from typing import NamedTuple

import typer
from typer._click.core import Command
from typer.models import CommandInfo, TyperInfo


class Entry(NamedTuple):
    """One sub-command of ``vfd``: the name of what adds it (:data:`_ATTACH`) and its help."""

    attach: str
    help: str


# in the order `vfd --help` lists them
COMMANDS: dict[str, Entry] = {
    "mount": Entry(
        "files",
        "Bind-mount a folder's view on this node (read-only with --ro or ro permission).",
    ),
    "umount": Entry("files", "Remove a bind mount made by `vfd mount`."),
    "status": Entry(
        "system",
        "Show whether the daemon and mountd answer, and you; for admins also versions, hosts,\n"
        "database, whether sessions run here (and if not, why), and this node's accelerator\n"
        "devices with their free slots.",
    ),
    "daemon": Entry(
        "system", "Run the control plane (REST API on the unix socket) in the foreground."
    ),
    "mountd": Entry(
        "system",
        "Run the FUSE mount server in the foreground (owns the mount and the backing trees).",
    ),
    "plugins": Entry(
        "plugins",
        "List the daemon's plugins: distribution and version, built in or not, the hooks each\n"
        "implements, and why one failed to load; then the schedulers, apps and accelerators they\n"
        "register (each accelerator with its slots and what it found on this node: its devices,\n"
        "or why there are none) and the plugins blocked by the config ([plugins] block).",
    ),
    "up": Entry(
        "up", "Run mountd and the daemon in the foreground until Ctrl-C (embedded defaults)."
    ),
    "console": Entry(
        "console",
        "Print a link that signs a browser in to the web console as you (once, within minutes).",
    ),
    "run": Entry(
        "run",
        "Run a command in a new session; follow its output and exit with its exit code.",
    ),
    "vfolder": Entry("vfolder", "Virtual folders: create, list, share, trash and purge them."),
    "admin": Entry("admin", "Administration: users, projects, policies, hosts, tokens."),
    "session": Entry(
        "session", "Compute sessions: list, inspect, follow, exec into and destroy them."
    ),
    "image": Entry("image", "Images sessions may run: those on this node."),
    "dotfile": Entry(
        "dotfile",
        "Dotfiles: files written into /home/work of every session, with their modes.",
    ),
}


@functools.cache
def _vfolder_app() -> typer.Typer:
    """``vfd vfolder`` with its file commands (added once: the app is a module global)."""
    from vfd.cli import files, vfolder

    files.register(vfolder.app, typer.Typer())
    return vfolder.app


@functools.cache
def _admin_app() -> typer.Typer:
    """``vfd admin`` with its ``quota``, ``uploads`` and ``scheduler`` groups (added once)."""
    from vfd.cli import admin, quota, scheduler_admin, uploads

    admin.app.add_typer(quota.app, name="quota")
    admin.app.add_typer(uploads.app, name="uploads")
    admin.app.add_typer(scheduler_admin.app, name="scheduler")
    return admin.app


def _attach_files(app: typer.Typer) -> None:
    from vfd.cli import files

    files.register(typer.Typer(), app)  # the root's mount and umount only


def _register(module: str) -> Callable[[typer.Typer], None]:
    def attach(app: typer.Typer) -> None:
        importlib.import_module(f"vfd.cli.{module}").register(app)

    return attach


def _group(module: str) -> Callable[[typer.Typer], None]:
    def attach(app: typer.Typer) -> None:
        app.add_typer(importlib.import_module(f"vfd.cli.{module}").app, name=module)

    return attach


_ATTACH: dict[str, Callable[[typer.Typer], None]] = {
    "files": _attach_files,
    "system": _register("system"),
    "plugins": _register("plugins"),
    "up": _register("up"),
    "console": _register("console"),
    "run": _register("run"),
    "vfolder": lambda app: app.add_typer(_vfolder_app(), name="vfolder"),
    "admin": lambda app: app.add_typer(_admin_app(), name="admin"),
    "session": _group("session"),
    "image": _group("image"),
    "dotfile": _group("dotfile"),
}


def attach_all(app: typer.Typer) -> None:
    """Add every sub-command to ``app`` (importing every command module)."""
    for attach in dict.fromkeys(entry.attach for entry in COMMANDS.values()):
        _ATTACH[attach](app)


def load(name: str, only: str | None = None) -> Command:
    """The click command of sub-command ``name``, importing only the module it needs.

    For a group, ``only`` (the word after ``name`` on the command line) naming one of its
    sub-commands builds that one alone: typer reads the signature of every command it builds,
    and a whole group (``vfd vfolder`` has ~30) costs more than its request. Anything else
    (an option, ``--help``, a mistyped name) builds the whole group, for its help and its
    suggestions.
    """
    scratch = typer.Typer()
    scratch.callback()(_nothing)
    _ATTACH[COMMANDS[name].attach](scratch)
    if only is not None:
        _narrow(scratch, name, only)
    group = typer.main.get_command(scratch)
    return group.commands[name]  # type: ignore[attr-defined, no-any-return]


def _narrow(scratch: typer.Typer, name: str, only: str) -> None:
    """Keep only sub-command ``only`` of group ``name`` in ``scratch`` (a copy of the group:
    the module's own app keeps every command); nothing changes when ``only`` names none of
    them or the group merges unnamed groups."""
    for index, info in enumerate(scratch.registered_groups):
        app = info.typer_instance
        if info.name != name or app is None:
            continue
        names = [_group_name(group) for group in app.registered_groups]
        if None in names:
            return
        commands = [c for c in app.registered_commands if _command_name(c) == only]
        groups = [g for g, n in zip(app.registered_groups, names, strict=True) if n == only]
        if len(commands) + len(groups) != 1:
            return
        narrowed = copy.copy(app)
        narrowed.registered_commands = commands
        narrowed.registered_groups = groups
        scratch.registered_groups[index] = copy.copy(info)
        scratch.registered_groups[index].typer_instance = narrowed
        return


def _command_name(info: CommandInfo) -> str | None:
    if info.name is not None:
        return info.name
    return typer.main.get_command_name(info.callback.__name__) if info.callback else None


def _group_name(info: TyperInfo) -> str | None:
    if info.name is not None:
        return info.name
    return info.typer_instance.info.name if info.typer_instance is not None else None


def _nothing() -> None:
    """(a group needs a callback)"""
