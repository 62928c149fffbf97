"""The API's one error shape: every ErrorCode, validation failures, unknown routes, crashes.

``vfd.daemon.errors`` is the single place failures become HTTP answers; these tests run it in
an app of its own (every code, and an unexpected exception) and against the real daemon.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from vfd.daemon import errors
from vfd.errors import ErrorCode, VfdError


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str
    count: int = 0


def _app() -> FastAPI:
    app = FastAPI()
    errors.install(app)

    @app.get("/raise/{wire}")
    async def raise_code(wire: str) -> dict[str, Any]:
        raise VfdError(ErrorCode(wire), f"failed with {wire}", wire=wire)

    @app.post("/body")
    async def body(payload: _Body) -> dict[str, Any]:
        return payload.model_dump()

    @app.get("/crash")
    async def crash() -> dict[str, Any]:
        raise RuntimeError("unexpected")

    return app


class _Client:
    """Calls an app in-process through httpx's ASGI transport, one event loop per call."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.request(method, url, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


@pytest.fixture(scope="module")
def client() -> _Client:
    return _Client(_app())


def assert_error(resp: Any, code: ErrorCode) -> dict[str, Any]:
    """The answer has ``code``'s status and exactly the shape {error: {code, message, details}}."""
    assert resp.status_code == code.http, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code.value
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    details: dict[str, Any] = body["error"]["details"]
    return details


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_errors_every_code_maps_to_its_status(client: Any, code: ErrorCode) -> None:
    details = assert_error(client.get(f"/raise/{code.value}"), code)
    assert details == {"wire": code.value}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "name"),
        ({"name": 3}, "name"),
        ({"name": "x", "count": "3"}, "count"),
        ({"name": "x", "extra": 1}, "extra"),
        ([1, 2], "body"),
    ],
    ids=["missing", "wrong-type", "no-coercion", "unknown-field", "not-an-object"],
)
def test_errors_validation_names_the_field(client: Any, payload: Any, field: str) -> None:
    details = assert_error(client.post("/body", json=payload), ErrorCode.INVALID_ARGUMENT)
    assert details["field"] == field


def test_errors_invalid_json_is_invalid_argument(client: Any) -> None:
    resp = client.post("/body", content=b"{not json", headers={"content-type": "application/json"})
    assert assert_error(resp, ErrorCode.INVALID_ARGUMENT)["field"] == "body"


def test_errors_unknown_route_is_not_found(client: Any) -> None:
    assert_error(client.get("/nowhere"), ErrorCode.NOT_FOUND)


def test_errors_wrong_method_is_method_not_allowed(client: Any) -> None:
    assert_error(client.delete("/crash"), ErrorCode.METHOD_NOT_ALLOWED)


def test_errors_unexpected_exception_is_internal_and_logged(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert_error(client.get("/crash"), ErrorCode.INTERNAL)
    assert any(
        r.levelname == "ERROR" and r.exc_info and "unexpected" in str(r.exc_info[1])
        for r in caplog.records
    )


def test_errors_real_daemon_uses_the_same_shape(vfd_daemon: Any) -> None:
    http = vfd_daemon.http
    assert_error(http.get("/v1/nowhere"), ErrorCode.NOT_FOUND)
    assert_error(http.get("/v1/vfolders/no-such-folder"), ErrorCode.VFOLDER_NOT_FOUND)
    # an empty name leaves a trailing slash: an unknown route in the error shape, not a 307
    for path in ("/v1/vfolders/", "/v1/sessions/", "/v1/status/"):
        assert_error(http.get(path), ErrorCode.NOT_FOUND)
    assert_error(http.put("/v1/status"), ErrorCode.METHOD_NOT_ALLOWED)
    bad = http.post("/v1/vfolders", json={"name": "x", "bogus": True})
    assert assert_error(bad, ErrorCode.INVALID_ARGUMENT)["field"] == "bogus"
    bad = http.get("/v1/vfolders", params={"trash": "maybe"})
    assert assert_error(bad, ErrorCode.INVALID_ARGUMENT)["field"] == "trash"
    bad = http.post("/v1/vfolders", content=b"[", headers={"content-type": "application/json"})
    assert assert_error(bad, ErrorCode.INVALID_ARGUMENT)["field"] == "body"
