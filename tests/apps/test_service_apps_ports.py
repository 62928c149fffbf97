"""The service-port labels of an image (``vfd.apps.service_ports``): what is read, what is
refused and how the refusal reads."""

from __future__ import annotations

import pytest

from vfd.apps.service_ports import ServicePort, find, from_labels, parse
from vfd.errors import ErrorCode, VfdError


def test_service_ports_parsed_in_order() -> None:
    assert parse(" files:http:8080 , board:http:6006,raw:tcp:9000,") == [
        ServicePort("files", "http", 8080),
        ServicePort("board", "http", 6006),
        ServicePort("raw", "tcp", 9000),
    ]
    assert parse("") == []


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("files:http", "is not NAME:PROTOCOL:PORT"),
        ("files:http:80:1", "is not NAME:PROTOCOL:PORT"),
        ("Files:http:80", "service name 'Files'"),
        ("1st:http:80", "service name '1st'"),
        ("sftp:http:80", "one of vfd's own apps"),
        ("filebrowser:http:80", "one of vfd's own apps"),
        ("web:udp:80", "protocol 'udp' of web"),
        ("web:http:0", "port '0' of web"),
        ("web:http:65536", "port '65536' of web"),
        ("web:http:8o", "port '8o' of web"),
        ("web:http:80,web:http:81", "service web is declared twice"),
        ("a:http:80,b:http:80", "port 80 is declared twice"),
    ],
)
def test_service_ports_refused(text: str, why: str) -> None:
    with pytest.raises(VfdError) as refused:
        parse(text)
    assert refused.value.code is ErrorCode.INVALID_ARGUMENT
    assert why in refused.value.message
    assert "ai.vfd.service-ports" in refused.value.message


def test_service_ports_commands_from_labels() -> None:
    labels = {
        "ai.vfd.service-ports": "files:http:8080,board:http:6006",
        "ai.vfd.service.files.command": '["httpd", "-f", "-p", "8080"]',
        "other": "x",
    }
    files, board = from_labels(labels)
    assert files.command == ("httpd", "-f", "-p", "8080") and files.proxied
    assert board.command == ()
    assert from_labels({"other": "x"}) == []
    for bad in ('"httpd -f"', "[]", '["httpd", ""]', '["a", 1]', "not json"):
        with pytest.raises(VfdError) as refused:
            from_labels({**labels, "ai.vfd.service.files.command": bad})
        assert "ai.vfd.service.files.command" in refused.value.message


def test_service_ports_find_names_the_known() -> None:
    services = parse("files:http:8080,raw:tcp:9000")
    assert find(services, "raw").port == 9000
    with pytest.raises(VfdError) as missing:
        find(services, "nope")
    assert missing.value.code is ErrorCode.APP_NOT_FOUND
    assert "files, raw" in missing.value.message
