"""The service-port labels of an image (``vfd.apps.service_ports``): what is read, what is
refused and how the refusal reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from vfd.apps.service_ports import ServicePort, find, from_labels, parse
from vfd.config import load_config
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


def test_service_ports_from_config_for_unlabelled_images() -> None:
    configured = [("vfd-test/*:latest", "web:http:8080"), ("*", "any:http:1")]
    [web] = from_labels({}, configured, "vfd-test/busybox:latest")
    assert (web.name, web.port, web.command) == ("web", 8080, ())
    assert [s.name for s in from_labels({}, configured, "other:1")] == ["any"]
    assert from_labels({}, [], "vfd-test/busybox:latest") == []
    # a label wins over the config
    labelled = from_labels({"ai.vfd.service-ports": "x:http:1"}, configured, "vfd-test/b:latest")
    assert [s.name for s in labelled] == ["x"]


def test_service_ports_config_checked_at_load(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[apps.service_ports]\n"img/*" = "web:http:8080"\n')
    assert load_config(config_file=good, env={}).apps.service_ports == (("img/*", "web:http:8080"),)
    bad = tmp_path / "bad.toml"
    bad.write_text('[apps.service_ports]\n"img/*" = "web:http"\n')
    with pytest.raises(VfdError) as refused:
        load_config(config_file=bad, env={})
    assert refused.value.code is ErrorCode.CONFIG_INVALID
    assert "apps.service_ports.img/*" in refused.value.message
    assert "'web:http' is not NAME:PROTOCOL:PORT" in refused.value.message
