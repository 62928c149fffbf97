"""Docker's exceptions become vfd errors at one place (``containers.translated``), and
``available`` says plainly why sessions cannot run — without a node, in-process."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import anyio
import docker.errors
import pytest
import requests

from vfd.config import SessionOptions, load_config
from vfd.daemon import containers
from vfd.daemon.mountlink import MountdLink
from vfd.daemon.services.context import Daemon
from vfd.errors import ErrorCode, VfdError
from vfd.store.db import make_engine


def _api_error(cls: type[docker.errors.APIError], status: int) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return cls("boom", response=response, explanation=f"docker says {status}")


def _translate(exc: BaseException) -> VfdError:
    with pytest.raises(VfdError) as raised, containers.translated("container abc"):
        raise exc
    return raised.value


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (_api_error(docker.errors.ImageNotFound, 404), ErrorCode.IMAGE_NOT_FOUND),
        (_api_error(docker.errors.NotFound, 404), ErrorCode.SESSION_NOT_RUNNING),
        (_api_error(docker.errors.APIError, 409), ErrorCode.SESSION_NOT_RUNNING),
        (_api_error(docker.errors.APIError, 400), ErrorCode.INVALID_ARGUMENT),
        (_api_error(docker.errors.APIError, 500), ErrorCode.RUNTIME_UNAVAILABLE),
        (docker.errors.DockerException("no socket"), ErrorCode.RUNTIME_UNAVAILABLE),
        (requests.exceptions.ConnectionError("refused"), ErrorCode.RUNTIME_UNAVAILABLE),
        (requests.exceptions.ReadTimeout("slow"), ErrorCode.RUNTIME_UNAVAILABLE),
    ],
)
def test_runtime_errors_docker_exceptions_mapped(exc: BaseException, code: ErrorCode) -> None:
    got = _translate(exc)
    assert got.code is code
    assert "container abc" in got.message or "docker" in got.message


def test_runtime_errors_every_docker_exception_is_mapped() -> None:
    """Whatever docker-py raises (every class of docker.errors) comes out a VfdError."""
    classes = [
        cls
        for _, cls in inspect.getmembers(docker.errors, inspect.isclass)
        if issubclass(cls, docker.errors.DockerException)
    ]
    assert docker.errors.ImageNotFound in classes
    for cls in classes:
        if issubclass(cls, docker.errors.APIError):
            exc: BaseException = _api_error(cls, 500)
        else:
            try:
                exc = cls("x")
            except TypeError:
                exc = cls.__new__(cls)
        assert isinstance(_translate(exc), VfdError), cls


def _daemon(tmp_path: Path, **options: object) -> Daemon:
    config = load_config(state_dir=tmp_path, env={})
    config = dataclasses.replace(
        config,
        sessions=dataclasses.replace(SessionOptions(), **options),  # type: ignore[arg-type]
    )
    return Daemon(
        config=config,
        engine=make_engine(config.database_url),
        mountd=MountdLink(config.mountd_socket),
    )


def test_runtime_errors_available_says_how_to_enable(tmp_path: Path) -> None:
    off = _daemon(tmp_path, enabled="off")
    why = anyio.run(containers.available, off)
    assert why is not None and '[sessions] enabled = "off"' in why
    gone = _daemon(tmp_path, enabled="on", docker_url=f"unix://{tmp_path}/no-docker.sock")
    why = anyio.run(containers.available, gone)
    assert why is not None
    assert f"docker is not answering at unix://{tmp_path}/no-docker.sock" in why
    assert "apt-get install docker.io; start dockerd" in why
    off.engine.dispose()
    gone.engine.dispose()
