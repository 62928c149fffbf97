"""``python -m vfd.fuse [--state-dir DIR] [--config FILE]``: run mountd in the foreground."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vfd.config import load_config
from vfd.errors import VfdError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vfd mountd", description="Serve vfd folders as one FUSE mount."
    )
    parser.add_argument("--state-dir", type=Path, help="keep everything under this directory")
    parser.add_argument("--config", type=Path, help="the TOML configuration file")
    args = parser.parse_args(argv)
    try:
        from vfd.fuse.mountd import serve

        serve(load_config(config_file=args.config, state_dir=args.state_dir))
    except VfdError as exc:
        print(f"vfd mountd: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
