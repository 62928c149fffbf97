"""``python -m vfd.daemon [--state-dir DIR] [--config FILE]``: load the config and serve."""

from __future__ import annotations

import sys
from collections.abc import Callable

from vfd.config import Config
from vfd.entry import server_main


def _serve() -> Callable[[Config], None]:
    from vfd.daemon.server import serve

    return serve


def main(argv: list[str] | None = None) -> int:
    return server_main(argv, prog="vfd daemon", description="Serve the vfd HTTP API.", serve=_serve)


if __name__ == "__main__":
    sys.exit(main())
