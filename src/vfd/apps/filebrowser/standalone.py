"""``python -m vfd.apps.filebrowser.standalone``: the file manager on a plain directory.

Reads its spec (:mod:`vfd.apps.filebrowser.spec`) as JSON on standard input, binds, prints
one JSON line ``{"url": ..., "port": ...}`` on standard output once it listens, and serves
until SIGTERM or SIGINT. It runs with the identity it was started with: the daemon's launch
of a session's file manager confines it to the session's folders first.
"""

from __future__ import annotations

import json
import os
import sys

import uvloop

from vfd.apps.filebrowser.server import bind, serve
from vfd.apps.filebrowser.spec import parse_spec
from vfd.errors import VfdError
from vfd.logs import setup_logging


def main() -> int:
    setup_logging("info", stream=sys.stderr)
    try:
        spec = parse_spec(json.loads(sys.stdin.read() or "null"))
    except (ValueError, VfdError) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    os.umask(0o022)
    sock = bind(spec.host, spec.port)
    port = sock.getsockname()[1]
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    url = f"http://{host}:{port}/?vfd_token={spec.token}"
    print(json.dumps({"url": url, "port": port}), flush=True)
    uvloop.run(serve(spec, sock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
