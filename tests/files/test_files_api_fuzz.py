"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema.

Every operation of ``GET /openapi.json`` is driven by schemathesis' hypothesis strategies, in
both of its modes (requests that fit the schema, and requests that break it: wrong types,
missing fields, out-of-range numbers), as root (an administrator) and as an ordinary user
(root acting through ``X-Vfd-Act-As``), against a real node (``vfd up``: daemon and mountd),
so that the file routes reach real mounts: some cases name the caller's real folder, file and
upload key instead of the generated ones, and some carry a value known to break servers in
one field (lone surrogates, NUL, bidi controls, 10 KB strings, integers past 64 bits, floats,
odd ``Range`` headers). Any 5xx fails, and so does a traceback or an error
line (journald priority 0-3) that the node logs meanwhile.

Bounded: ``VFD_FUZZ_EXAMPLES`` cases per operation, identity and mode (default 12), and no
more than ``VFD_FUZZ_SECONDS`` (default 60) per store backend, after which each remaining
operation still gets a couple of cases so that every route is covered. ``VFD_FUZZ_SEED``
(default 1) seeds the generation; a failure prints the request to resend and the seed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import hypothesis
import hypothesis.strategies as st
import pytest
import schemathesis
from filenode import Node
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode

from vfd import mountinfo

SEED = int(os.environ.get("VFD_FUZZ_SEED", "1"))
EXAMPLES = int(os.environ.get("VFD_FUZZ_EXAMPLES", "12"))
SECONDS = float(os.environ.get("VFD_FUZZ_SECONDS", "60"))
LATE_EXAMPLES = 2
"""Cases per operation, identity and mode once the time is spent."""

DATA = b"fuzz me\n" * 64
KEY = "fuzzkey0001"


@dataclass
class Identity:
    """Who the requests come from, and what of theirs a case may name."""

    label: str
    headers: dict[str, str]
    folder: str
    email: str


@dataclass
class Run:
    node: Node
    http: httpx.Client
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    unsatisfiable: list[str] = field(default_factory=list)
    reached: Counter[str] = field(default_factory=Counter)
    waited: float = 0.0

    def send(self, case: Any, who: Identity, pick: int, hostile: Hostile | None) -> None:
        """Send one case (``pick`` chooses which real things it names; ``hostile``, a value
        put in place of one of its fields) and check the answer."""
        if pick < 2 and "name" in case.path_parameters and not _changes_folder(case):
            case.path_parameters["name"] = quote(who.folder, safe="")
        if pick < 2 and "email" in case.path_parameters and case.path.startswith("/v1/vfolders"):
            case.path_parameters["email"] = quote(who.email, safe="")
        if pick == 0 and isinstance(case.query, dict):
            if "path" in case.query:
                case.query["path"] = "f.bin"
            if "key" in case.query:
                case.query["key"] = KEY
        if hostile is not None:
            hostile.apply(case)
        kwargs = case.as_transport_kwargs(base_url="http://vfd")
        if hostile is not None and isinstance(kwargs.get("json"), dict):
            hostile.apply_body(kwargs["json"])  # after: schemathesis cannot encode a surrogate
        headers = {
            k: v
            for k, v in kwargs.get("headers", {}).items()
            if k.lower() not in ("x-schemathesis-testcaseid", "user-agent", "connection")
        }
        headers.update(who.headers)
        request: dict[str, Any] = {
            "method": kwargs["method"],
            "url": kwargs["url"],
            "headers": headers,
            "params": kwargs.get("params") or None,
        }
        if "json" in kwargs:  # written here: ASCII escapes keep lone surrogates and NaN
            request["content"] = json.dumps(kwargs["json"]).encode()
            headers["Content-Type"] = "application/json"
        elif "data" in kwargs:
            request["content"] = kwargs["data"]
        sent = time.monotonic()
        try:
            resp = self.http.request(**request)
        except (httpx.LocalProtocolError, UnicodeEncodeError):
            hypothesis.reject()  # the client cannot send it: nothing reaches the daemon
        finally:
            self.waited += time.monotonic() - sent
        self.requests += 1
        self.reached[f"{case.method.upper()} {case.path}"] += 1
        self.statuses[resp.status_code] += 1
        if resp.status_code >= 500:
            self.failures.append(
                f"{resp.status_code} as {who.label}: {_repro(request)}\n  answer: {resp.text[:500]}"
            )


HOSTILE_TEXT = (
    "\ud800",  # a lone surrogate: valid JSON, no Unicode text
    "\udcff",
    "a\x00b",
    "ev\u202eil",  # a bidi override
    "a\u200bb",  # a zero-width space
    "\x85\u2028",
    "x" * 10000,
    "..",
    "../../etc",
    "/",
    "",
    " ",
    "%00",
    "\U0010ffff",
)
HOSTILE_NUMBERS = (2**70, 2**64, 2**63, 2**63 - 1, 2**32, 2**31, -1, -(2**63) - 1, 1e308, 0.5)
HOSTILE_URL_TEXT = tuple(t for t in HOSTILE_TEXT if "\ud800" not in t and "\udcff" not in t)
HOSTILE_RANGES = (
    "bytes=0-" + "9" * 5000,
    "bytes=" + "9" * 30 + "-",
    "bytes=5-3",
    "bytes=0-1,3-4,0-9",
    "bytes=-0",
    "bytes=-",
    "items=0-1",
    "bytes=0-0,-1",
)


@dataclass(frozen=True)
class Hostile:
    """A value known to break servers, put in place of one field of a case: a body field, a
    query or path parameter, or a header (``slot`` picks which one there is)."""

    where: str
    slot: int
    value: Any

    def apply_body(self, body: dict[str, Any]) -> None:
        if self.where == "body":
            keys = sorted(body) or ["name"]
            body[keys[self.slot % len(keys)]] = self.value

    def apply(self, case: Any) -> None:
        if self.where == "query" and isinstance(case.query, dict) and case.query:
            keys = sorted(case.query)
            case.query[keys[self.slot % len(keys)]] = str(self.value)
        elif self.where == "path" and case.path_parameters:
            keys = sorted(case.path_parameters)
            case.path_parameters[keys[self.slot % len(keys)]] = quote(str(self.value), safe="")
        elif self.where == "range":
            case.headers = {**(case.headers or {}), "Range": self.value}


def hostile_values() -> st.SearchStrategy[Hostile | None]:
    """No change (half the time), or one hostile value in one place."""
    slot = st.integers(0, 7)
    return st.one_of(
        st.none(),
        st.builds(Hostile, st.just("body"), slot, st.sampled_from(HOSTILE_TEXT + HOSTILE_NUMBERS)),
        st.builds(
            Hostile, st.just("query"), slot, st.sampled_from(HOSTILE_URL_TEXT + HOSTILE_NUMBERS)
        ),
        st.builds(
            Hostile, st.just("path"), slot, st.sampled_from(HOSTILE_URL_TEXT + HOSTILE_NUMBERS)
        ),
        st.builds(Hostile, st.just("range"), slot, st.sampled_from(HOSTILE_RANGES)),
    )


def _changes_folder(case: Any) -> bool:
    """Operations that would trash, rename or purge the identity's folder: left to generated
    names, so that the other operations keep finding it."""
    return (case.method.upper(), case.path) in {
        ("DELETE", "/v1/vfolders/{name}"),
        ("PATCH", "/v1/vfolders/{name}"),
        ("POST", "/v1/vfolders/{name}/purge"),
        ("POST", "/v1/vfolders/{name}/restore"),
        ("POST", "/v1/vfolders/{name}/leave"),
    }


def _repro(request: dict[str, Any]) -> str:
    parts = [f"{request['method']} {request['url']}"]
    for key in ("params", "headers", "json", "content"):
        if request.get(key) not in (None, {}):
            parts.append(f"{key}={request[key]!r}")
    return " ".join(parts)


def _identity(node: Node, http: httpx.Client, label: str, email: str | None) -> Identity:
    headers = {"X-Vfd-Act-As": email} if email else {}
    name = f"fz-{label}-{secrets.token_hex(3)}"
    resp = http.post("/v1/vfolders", json={"name": name}, headers=headers)
    assert resp.status_code == 201, resp.text
    resp = http.put(
        f"/v1/vfolders/{name}/upload",
        params={"path": "f.bin", "key": KEY, "size": len(DATA)},
        content=DATA,
        headers=headers,
    )
    assert resp.status_code == 200 and resp.json()["complete"], resp.text
    me = http.get("/v1/whoami", headers=headers).json()
    return Identity(label, headers, name, me["email"])


def _operations(raw: dict[str, Any]) -> list[Any]:
    schema = schemathesis.openapi.from_dict(raw)
    ops = [result.ok() for result in schema.get_all_operations()]
    return sorted(ops, key=lambda op: (op.path, op.method))


def _breakable(raw: dict[str, Any], op: Any) -> bool:
    """Whether a request can break the operation's schema: it has a body, or a parameter that
    is not free text (an integer, a boolean). Free text takes anything, so the negative mode
    would search in vain."""
    spec = raw["paths"][op.path][op.method.lower()]
    params = json.dumps(spec.get("parameters", []))
    return "requestBody" in spec or '"integer"' in params or '"boolean"' in params


def _fuzz(run: Run, op: Any, who: Identity, mode: GenerationMode, examples: int) -> None:
    @hypothesis.seed(SEED)
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    @hypothesis.given(
        case=op.as_strategy(generation_mode=mode),
        pick=st.integers(0, 3),
        hostile=hostile_values(),
    )
    def check(case: Any, pick: int, hostile: Hostile | None) -> None:
        run.send(case, who, pick, hostile)

    try:
        check()
    except hypothesis.errors.Unsatisfiable:
        # no case of this mode exists (nothing in the operation's schema can be broken) or
        # none could be sent; the other mode covers the operation
        run.unsatisfiable.append(f"{op.method.upper()} {op.path} ({who.label}, {mode.value})")


def _stray_vfd_mounts(node: Node) -> list[str]:
    """Bind mounts of this node's views that the fuzzing made (a generated target that
    happened to be an empty directory): removed, and listed. Only mounts of this node's own
    FUSE file system (its device) that bind a view, never the mount itself nor another
    node's."""
    mnt = str(node.config.mount_point)
    entries = mountinfo.read()
    devices = {e.device for e in entries if e.mount_point == mnt and e.fstype == "fuse.vfd"}
    stray = [
        e.mount_point
        for e in entries
        if e.device in devices and e.root != "/" and e.mount_point != mnt
    ]
    for point in reversed(stray):
        subprocess.run(["umount", "-l", point], check=False)
    return stray


def _bad_log_lines(text: str) -> list[str]:
    """Tracebacks and lines logged at error level (``vfd up`` shows journald priorities 0-3
    as ``error:``)."""
    return [
        line
        for line in text.splitlines()
        if "Traceback" in line or " | error: " in line or line[:3] in ("<0>", "<1>", "<2>", "<3>")
    ]


@pytest.mark.slow
def test_files_api_fuzz_no_5xx_and_no_errors_logged(node: Node, database_url: str) -> None:
    with node.http() as http:
        raw = http.get("/openapi.json").json()
        ops = _operations(raw)
        assert len(ops) >= 40, [f"{op.method} {op.path}" for op in ops]
        user = node.user()
        identities = [
            _identity(node, http, "root", None),
            _identity(node, http, "user", user["email"]),
        ]
        log_from = node.log.stat().st_size
        run = Run(node, http)
        started = time.monotonic()
        runs = 0
        for who in identities:
            for op in ops:
                modes = [GenerationMode.POSITIVE]
                if _breakable(raw, op):
                    modes.append(GenerationMode.NEGATIVE)
                for mode in modes:
                    runs += 1
                    late = time.monotonic() - started > SECONDS
                    _fuzz(run, op, who, mode, LATE_EXAMPLES if late else EXAMPLES)
        elapsed = time.monotonic() - started
    stray = _stray_vfd_mounts(node)
    with node.log.open("rb") as f:
        f.seek(log_from)
        logged = f.read().decode(errors="replace")
    backend = database_url.split(":", 1)[0]
    print(
        f"\nAPI fuzz ({backend}): {run.requests} requests, {len(ops)} operations x "
        f"{len(identities)} identities, {runs} (operation, identity, mode) runs, "
        f"{elapsed:.1f}s ({run.waited:.1f}s waiting for answers), seed {SEED}; "
        f"statuses {dict(sorted(run.statuses.items()))}; "
        f"stray mounts removed: {stray or 'none'}; "
        f"no case could be made for {run.unsatisfiable or 'none'}"
    )
    reproduce = (
        f"reproduce: VFD_FUZZ_SEED={SEED} VFD_FUZZ_EXAMPLES={EXAMPLES} "
        f"VFD_FUZZ_SECONDS={SECONDS:g} pytest tests/files/test_files_api_fuzz.py -k {backend}"
    )
    assert not run.failures, "\n".join([*run.failures[:20], reproduce])
    bad = _bad_log_lines(logged)
    assert not bad, "\n".join([*bad[:40], reproduce])
    unreached = {f"{op.method.upper()} {op.path}" for op in ops} - set(run.reached)
    assert not unreached, (unreached, run.unsatisfiable)
