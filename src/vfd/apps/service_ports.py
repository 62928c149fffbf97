"""The service ports an image declares: what ``vfd session apps`` lists and ``vfd session app``
starts.

An image declares them with labels (set by ``LABEL`` in its Dockerfile, or ``docker commit
--change``), or the node's config for images without the label (``[apps.service_ports]``,
image patterns to declarations)::

    ai.vfd.service-ports = "files:http:8080,board:http:6006"
    ai.vfd.service.files.command = '["httpd", "-f", "-p", "8080", "-h", "/home/work"]'

The first names each service, its protocol and the port it listens on inside the container;
the optional second is the command (a JSON list of strings) the daemon runs in the session to
start that service when nothing answers on its port yet — without it, the session's own
command is expected to run the service. Only ``http`` services are served (through the
daemon's proxy); a service of another protocol is listed, and starting it is refused.

Nothing here talks to docker: :func:`from_labels` reads the labels docker reports.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vfd.errors import ErrorCode, VfdError

PORTS_LABEL = "ai.vfd.service-ports"
COMMAND_LABEL = "ai.vfd.service.{name}.command"
PROTOCOLS = frozenset({"http", "tcp"})
"""Protocols a service may declare; only those in :data:`PROXIED` can be started."""
PROXIED = frozenset({"http"})
RESERVED = frozenset({"sftp", "filebrowser"})
"""Names of vfd's own apps: a service may not take them."""
MAX_SERVICES = 32
_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")


@dataclass(frozen=True)
class ServicePort:
    """One service of a session's image."""

    name: str
    protocol: str
    port: int
    command: tuple[str, ...] = ()
    """What starts it in the session (empty: the session's own command runs it)."""

    @property
    def proxied(self) -> bool:
        return self.protocol in PROXIED


def _bad(text: str, why: str, source: str | None) -> VfdError:
    where = source or f"the image's label {PORTS_LABEL}"
    return VfdError(
        ErrorCode.INVALID_ARGUMENT,
        f"{where}={text!r} is not valid: {why} "
        '(expected "NAME:PROTOCOL:PORT,...", e.g. "files:http:8080")',
        label=PORTS_LABEL,
    )


def parse(text: str, source: str | None = None) -> list[ServicePort]:
    """The services of a ``NAME:PROTOCOL:PORT[,...]`` declaration, in its order.

    Raises ``invalid_argument`` naming where it comes from (``source``; default: the image's
    label) and what is wrong with it."""
    services: list[ServicePort] = []
    seen_names: set[str] = set()
    seen_ports: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        fields = part.split(":")
        if len(fields) != 3:
            raise _bad(text, f"{part!r} is not NAME:PROTOCOL:PORT", source)
        name, protocol, port_text = (f.strip() for f in fields)
        if not _NAME.fullmatch(name):
            raise _bad(
                text,
                f"service name {name!r}: 1-32 lowercase letters, digits or '-', "
                "starting with a letter",
                source,
            )
        if name in RESERVED:
            raise _bad(text, f"service name {name!r} is one of vfd's own apps", source)
        if protocol not in PROTOCOLS:
            known = ", ".join(sorted(PROTOCOLS))
            raise _bad(text, f"protocol {protocol!r} of {name}: one of {known}", source)
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise _bad(text, f"port {port_text!r} of {name}: a number from 1 to 65535", source)
        port = int(port_text)
        if name in seen_names:
            raise _bad(text, f"service {name} is declared twice", source)
        if port in seen_ports:
            raise _bad(text, f"port {port} is declared twice", source)
        seen_names.add(name)
        seen_ports.add(port)
        services.append(ServicePort(name=name, protocol=protocol, port=port))
    if len(services) > MAX_SERVICES:
        raise _bad(text, f"more than {MAX_SERVICES} services", source)
    return services


def _command(labels: Mapping[str, str], name: str) -> tuple[str, ...]:
    key = COMMAND_LABEL.format(name=name)
    text = labels.get(key)
    if text is None:
        return ()
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(arg, str) and arg and "\0" not in arg for arg in value)
    ):
        raise VfdError(
            ErrorCode.INVALID_ARGUMENT,
            f"the image's label {key}={text!r} is not valid: expected a JSON list of "
            'non-empty strings, e.g. ["httpd", "-f", "-p", "8080"]',
            label=key,
        )
    return tuple(value)


def from_labels(
    labels: Mapping[str, str], configured: Sequence[tuple[str, str]] = (), image: str = ""
) -> list[ServicePort]:
    """The services an image's (or its container's) labels declare; without the label, those
    of the first ``configured`` pattern (``[apps.service_ports]``) matching ``image``."""
    text = labels.get(PORTS_LABEL)
    source = None
    if text is None:
        found = [(p, d) for p, d in configured if fnmatch.fnmatchcase(image, p)]
        if not found:
            return []
        source = f"[apps.service_ports] {found[0][0]!r}"
        text = found[0][1]
    return [
        ServicePort(s.name, s.protocol, s.port, _command(labels, s.name))
        for s in parse(text, source)
    ]


def find(services: list[ServicePort], name: str) -> ServicePort:
    """The service ``name`` of ``services``; ``app_not_found`` listing those there are."""
    for service in services:
        if service.name == name:
            return service
    known = ", ".join(s.name for s in services) or "none"
    raise VfdError(
        ErrorCode.APP_NOT_FOUND,
        f"the session's image declares no service {name!r} (its services: {known}; "
        f"an image declares them with the label {PORTS_LABEL})",
        app=name,
    )
