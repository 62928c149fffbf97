"""``python -m vfd.daemon [--state-dir DIR] [--config FILE]``: load the config and serve."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vfd.config import load_config
from vfd.errors import VfdError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vfd.daemon", description=__doc__)
    parser.add_argument("--state-dir", type=Path, help="keep all state under this directory")
    parser.add_argument("--config", type=Path, help="configuration file (TOML)")
    args = parser.parse_args(argv)
    from vfd.daemon.server import serve  # after argument parsing: --help stays fast

    try:
        serve(load_config(config_file=args.config, state_dir=args.state_dir))
    except VfdError as exc:
        print(f"vfd daemon: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
