"""The ``filebrowser`` app: vfd's web file manager (:mod:`vfd.apps.filebrowser`) over the
session's folders, registered through ``vfd_register_apps`` like any app plugin's.

Each launch gets a fresh random token, sent in the server's spec and kept with the app while
it runs (its ``secret``, cleared when it ends); the endpoint recorded and shown in ``vfd
session info`` is the bare address, and only the session's user gets the URL with the token
(``GET /v1/sessions/{ref}/filebrowser``, printed by ``vfd vfolder web``).
"""

from __future__ import annotations

import secrets

from vfd.plugins.hookspecs import hookimpl
from vfd.plugins.types import AppContext, AppLaunch, AppSpec


def plan(ctx: AppContext) -> AppLaunch:
    token = secrets.token_urlsafe(32)
    return AppLaunch(options={"token": token}, secret=token, endpoint="http://{host}:{port}/")


@hookimpl
def vfd_register_apps() -> list[AppSpec]:
    return [
        AppSpec(
            name="filebrowser",
            description="web file manager over the session's folders (vfd vfolder web NAME)",
            module="vfd.apps.filebrowser",
            plan=plan,
            link=True,
        )
    ]
