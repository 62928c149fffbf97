"""What one ``vfd`` invocation knows: its global options, and the config, client and output
mode built from them on first use.

No typer here: the console script's fast path for ``vfd run`` (:mod:`vfd.cli.quickrun`) uses
it without the command-line framework. :mod:`vfd.cli.context` hands it to typer commands.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vfd import wirenames
from vfd.cli.output import make_console, print_json

if TYPE_CHECKING:  # each imported when first used: most commands need only some of them
    from rich.console import Console

    from vfd.cli.client import VfdClient
    from vfd.config import Config


class CliState:
    """Global options of the root command and what is built from them, lazily.

    A plain class, not a dataclass: ``dataclasses`` (and the ``inspect`` it imports) cost
    every command about 7 ms before it does anything (docs/transfers.md, "A fast CLI")."""

    __slots__ = ("_client", "_config", "_console", "act_as", "config_file", "json", "state_dir")

    def __init__(
        self,
        state_dir: Path | None = None,
        config_file: Path | None = None,
        act_as: str | None = None,
        json: bool = False,
    ) -> None:
        self.state_dir = state_dir
        self.config_file = config_file
        self.act_as = act_as
        self.json = json
        self._console: Console | None = None
        self._config: Config | None = None
        self._client: VfdClient | None = None

    def __repr__(self) -> str:
        return (
            f"CliState(state_dir={self.state_dir!r}, config_file={self.config_file!r}, "
            f"act_as={self.act_as!r}, json={self.json!r})"
        )

    @property
    def console(self) -> Console:
        """The rich console for people-facing output (made on first use)."""
        if self._console is None:
            self._console = make_console()
        return self._console

    def config(self) -> Config:
        """The configuration (``--state-dir``/``--config``/``VFD_*``); loaded once."""
        if self._config is None:
            from vfd.config import load_config

            self._config = load_config(config_file=self.config_file, state_dir=self.state_dir)
        return self._config

    def api_socket(self) -> Path:
        """The daemon's socket: the built-in one when no config file and no ``VFD_*``
        variable but ``VFD_STATE_DIR`` can change it (without importing :mod:`vfd.config`,
        whose dataclasses cost every command milliseconds), else the config's."""
        if self._config is None:
            quick = default_api_socket(self.config_file, self.state_dir, os.environ)
            if quick is not None:
                return quick
        return self.config().api_socket

    def client(self) -> VfdClient:
        """A client of the daemon named by the config; closed when the command ends."""
        if self._client is None:
            from vfd.cli.client import VfdClient

            self._client = VfdClient(self.api_socket(), act_as=self.act_as)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def emit(
        self, result: dict[str, Any] | Callable[[], dict[str, Any]], human: Callable[[], object]
    ) -> None:
        """Print ``result`` (or what it returns, when a function: made only then) as JSON
        with ``--json``, else call ``human`` to render it.

        ``human`` may return a string, which is printed as a message.
        """
        if self.json:
            print_json(result() if callable(result) else result)
            return
        rendered = human()
        if isinstance(rendered, str):  # a message: written as it is (rich adds nothing to it)
            sys.stdout.write(wirenames.readable(rendered) + "\n")
            sys.stdout.flush()


_SYSTEM_CONFIG = Path("/etc/vfd/vfd.toml")  # vfd.config's SYSTEM_CONFIG and SYSTEM_RUN
_SYSTEM_SOCKET = Path("/run/vfd/vfd.sock")


def default_api_socket(
    config_file: Path | None, state_dir: Path | None, env: os._Environ[str] | dict[str, str]
) -> Path | None:
    """The API socket :func:`vfd.config.load_config` would name, when it is the built-in one:
    no config file (given, in ``VFD_CONFIG``, in the state directory or ``/etc/vfd``) and no
    ``VFD_*`` variable but ``VFD_STATE_DIR``; None otherwise (the config decides, and
    checks what it reads). A test holds the two to the same answer."""
    if config_file is not None or any(
        key.startswith("VFD_") and key != "VFD_STATE_DIR" for key in env
    ):
        return None
    if state_dir is None and env.get("VFD_STATE_DIR"):
        state_dir = Path(env["VFD_STATE_DIR"])
    if state_dir is None:
        return None if _SYSTEM_CONFIG.exists() else _SYSTEM_SOCKET
    state_dir = state_dir.absolute()
    if (state_dir / "vfd.toml").exists():
        return None
    return state_dir / "run" / "vfd.sock"
