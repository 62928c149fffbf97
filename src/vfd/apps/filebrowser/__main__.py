"""The file manager app's server: ``python -m vfd.apps.filebrowser``, started by the daemon.

It reads its :class:`~vfd.apps.confine.ConfineSpec` on stdin, builds the whole server (the
page's files read, every module imported, uvicorn's configuration loaded) while it can still
see the system, confines itself to the session's folders as the session's user
(:mod:`vfd.apps.confine`: ``/`` then holds one directory per folder), opens ``/`` and serves
on the socket the daemon bound, reporting ``ready`` once it accepts requests and
``stopped`` when SIGTERM ends it. Spec options: ``token`` (required), ``stall``,
``page``, ``header_timeout`` and ``body_timeout`` (see
:class:`~vfd.apps.filebrowser.spec.BrowserSpec`).
"""

from __future__ import annotations

# Everything the server needs is imported before it confines itself: afterwards only the
# session's folders exist.
import encodings.idna
import http.cookies
import socket
import sys

import anyio._backends._asyncio
import uvloop

from vfd.apps import confine
from vfd.apps.filebrowser.server import load_assets, server_for
from vfd.apps.filebrowser.spec import parse_spec
from vfd.apps.filebrowser.tree import Tree
from vfd.logs import setup_logging

_PRELOADED = (encodings.idna, http.cookies, anyio._backends._asyncio)
OPTIONS = ("token", "stall", "page", "header_timeout", "body_timeout")


def main() -> None:
    setup_logging("warning", stream=sys.stderr)
    try:
        spec = confine.read_spec()
        listener = socket.socket(fileno=spec.listen_fd)
        listener.setblocking(False)
        options = {
            "root": "/",
            "folders": [{"name": f.name, "readonly": f.read_only} for f in spec.folders],
            **{k: v for k, v in spec.options.items() if k in OPTIONS},
        }
        browser = parse_spec(options)
        tree = Tree(browser.root, browser.folders)
        port = listener.getsockname()[1]
        server = server_for(
            browser,
            tree,
            listener,
            load_assets(),
            on_ready=lambda: confine.report(ready={"port": port}),
        )
        confine.confine(spec)
        tree.open()
    except Exception as exc:
        confine.report(error=f"{type(exc).__name__}: {getattr(exc, 'message', exc)}")
        sys.exit(1)
    try:
        uvloop.run(server.serve(sockets=[listener]))
    finally:
        tree.close()
    confine.report(stopped="stopped by the daemon")


if __name__ == "__main__":
    main()
