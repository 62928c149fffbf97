"""What one ``vfd`` invocation knows: its global options, and the config, client and output
mode built from them on first use.

No typer here: the console script's fast path for ``vfd run`` (:mod:`vfd.cli.quickrun`) uses
it without the command-line framework. :mod:`vfd.cli.context` hands it to typer commands.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vfd import wirenames
from vfd.cli.output import make_console, print_json

if TYPE_CHECKING:  # each imported when first used: most commands need only some of them
    from rich.console import Console

    from vfd.cli.client import VfdClient
    from vfd.config import Config


@dataclass
class CliState:
    """Global options of the root command and what is built from them, lazily."""

    state_dir: Path | None = None
    config_file: Path | None = None
    act_as: str | None = None
    json: bool = False
    _console: Console | None = None
    _config: Config | None = None
    _client: VfdClient | None = None

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

    def client(self) -> VfdClient:
        """A client of the daemon named by the config; closed when the command ends."""
        if self._client is None:
            from vfd.cli.client import VfdClient

            self._client = VfdClient(self.config().api_socket, act_as=self.act_as)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def emit(self, result: dict[str, Any], human: Callable[[], object]) -> None:
        """Print ``result`` as JSON with ``--json``, else call ``human`` to render it.

        ``human`` may return a string, which is printed as a message.
        """
        if self.json:
            print_json(result)
            return
        rendered = human()
        if isinstance(rendered, str):  # a message: written as it is (rich adds nothing to it)
            sys.stdout.write(wirenames.readable(rendered) + "\n")
            sys.stdout.flush()
