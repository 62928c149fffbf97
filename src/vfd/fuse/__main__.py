"""``python -m vfd.fuse [--state-dir DIR] [--config FILE]``: run mountd in the foreground."""

from __future__ import annotations

import sys
from collections.abc import Callable

from vfd.config import Config
from vfd.entry import server_main


def _serve() -> Callable[[Config], None]:
    from vfd.fuse.server import serve

    return serve


def main(argv: list[str] | None = None) -> int:
    return server_main(
        argv, prog="vfd mountd", description="Serve vfd folders as one FUSE mount.", serve=_serve
    )


if __name__ == "__main__":
    sys.exit(main())
