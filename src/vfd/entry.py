"""The entry point of both servers: ``python -m vfd.daemon`` and ``python -m vfd.fuse``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from vfd.config import Config, load_config
from vfd.errors import VfdError


def server_main(
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    serve: Callable[[], Callable[[Config], None]],
) -> int:
    """``python -m vfd.daemon`` / ``python -m vfd.fuse``: parse ``--state-dir``/``--config``,
    load the config and run ``serve()(config)``; a VfdError is one line and exit 1.

    ``serve`` is a thunk so the server's imports happen after parsing (``--help`` stays fast).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--state-dir", type=Path, help="keep everything under this directory")
    parser.add_argument("--config", type=Path, help="the TOML configuration file")
    args = parser.parse_args(argv)
    try:
        serve()(load_config(config_file=args.config, state_dir=args.state_dir))
    except VfdError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
