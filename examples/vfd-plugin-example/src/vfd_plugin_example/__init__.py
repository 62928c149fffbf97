"""An example vfd plugin (see vfd's docs/plugins.md).

- ``vfd_configure`` reads ``[plugins.example]``::

      [plugins.example]
      deny_images = ["untrusted/*", "*:latest"]   # glob patterns (fnmatch) on the image name
      env = { EXAMPLE_PLUGIN = "1" }              # added to every container (the default)

- ``vfd_session_before_start`` vetoes a session whose image matches a ``deny_images`` pattern:
  the session ends ``cancelled`` and ``vfd session info`` shows the reason with this plugin's
  name;
- ``vfd_container_spec`` adds ``env`` to every container;
- ``vfd_register_schedulers`` offers the ``sjf`` scheduler (:mod:`vfd_plugin_example.sjf`):
  shortest job first by requested lifetime; a resource group uses it with
  ``vfd admin resource-group update NAME --scheduler sjf``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from vfd.plugins import ContainerContribution, Reject, SchedulerSpec, SessionView, hookimpl
from vfd_plugin_example.sjf import ShortestJobFirst

DEFAULT_ENV = {"EXAMPLE_PLUGIN": "1"}
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ExamplePlugin:
    """The plugin object the ``vfd`` entry point names; configured once at daemon start."""

    def __init__(self) -> None:
        self.deny_images: tuple[str, ...] = ()
        self.env: dict[str, str] = dict(DEFAULT_ENV)

    @hookimpl
    def vfd_configure(self, sections: Mapping[str, Mapping[str, Any]]) -> None:
        """Read ``[plugins.example]``; a bad value raises, and vfd lists this plugin as failed
        (``vfd plugins``) instead of running it half-configured."""
        mine = sections.get("example", {})
        unknown = set(mine) - {"deny_images", "env"}
        if unknown:
            raise ValueError(f"[plugins.example]: unknown keys {sorted(unknown)}")
        deny = mine.get("deny_images", [])
        if not isinstance(deny, list) or not all(isinstance(p, str) and p for p in deny):
            raise ValueError("[plugins.example] deny_images must be a list of glob patterns")
        env = mine.get("env", DEFAULT_ENV)
        if not isinstance(env, Mapping) or not all(
            isinstance(k, str) and ENV_NAME.fullmatch(k) and isinstance(v, str)
            for k, v in env.items()
        ):
            raise ValueError('[plugins.example] env must be a table of NAME = "value"')
        taken = sorted(k for k in env if k == "HOME" or k.startswith("VFD_"))
        if taken:
            raise ValueError(f"[plugins.example] env: {taken} are set by vfd (HOME, VFD_*)")
        self.deny_images = tuple(deny)
        self.env = dict(env)

    @hookimpl
    def vfd_session_before_start(self, session: SessionView) -> None:
        for pattern in self.deny_images:
            if fnmatch.fnmatchcase(session.image, pattern):
                raise Reject(f"image {session.image} is not allowed here (matches {pattern!r})")

    @hookimpl
    def vfd_container_spec(self, session: SessionView) -> ContainerContribution:
        return ContainerContribution(env=dict(self.env))

    @hookimpl
    def vfd_register_schedulers(self) -> list[SchedulerSpec]:
        return [
            SchedulerSpec(
                name="sjf",
                description="shortest job first: the shortest requested lifetime starts first",
                factory=lambda options: ShortestJobFirst(),
            )
        ]


plugin = ExamplePlugin()
