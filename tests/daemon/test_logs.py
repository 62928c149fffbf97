"""Journald priority prefixes on every line the daemon logs."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from vfd.logs import priority, setup_logging


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_logs_priority_matches_syslog_levels() -> None:
    assert [priority(n) for n in (10, 20, 30, 40, 50)] == [7, 6, 4, 3, 2]


def test_logs_every_line_has_its_prefix(restore_root_logger: None) -> None:
    out = io.StringIO()
    setup_logging("debug", stream=out)
    log = logging.getLogger("vfd.test")
    log.debug("detail")
    log.warning("careful")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = out.getvalue().splitlines()
    assert lines[0] == "<7>vfd.test: detail"
    assert lines[1] == "<4>vfd.test: careful"
    assert lines[2] == "<3>vfd.test: failed"
    assert len(lines) > 4 and all(line.startswith("<3>") for line in lines[2:])
    assert "ValueError: boom" in lines[-1]


def test_logs_level_filters_and_setup_is_idempotent(restore_root_logger: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("info", stream=first)
    setup_logging("warning", stream=second)
    logging.getLogger("vfd.test").info("hidden")
    logging.getLogger("vfd.test").error("shown")
    assert first.getvalue() == ""
    assert second.getvalue() == "<3>vfd.test: shown\n"
