"""The console checks folder names as they are typed with a copy of the daemon's rules
(``static/js/logic.js``, ``nameProblem``): this test runs that copy under Node.js on names
that reach every rule and compares its verdict and words with ``validate_name``'s, so that the
two cannot drift apart unnoticed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vfd.errors import VfdError
from vfd.folders.names import RESERVED_NAMES, validate_name

LOGIC = Path(__file__).parents[2] / "src" / "vfd" / "console" / "static" / "js" / "logic.js"

NAMES = [
    "data",
    "x" * 64,
    "x" * 65,
    "é" * 64,
    "é" * 65,
    "\U0001f600" * 64,
    "\U0001f600" * 65,
    "",
    ".",
    "..",
    "...",
    "a/b",
    " a",
    "a ",
    "a\t",
    "\u3000a",
    "a b",
    "ev\u202eil",
    "a\u200bb",
    "a\u2028b",
    "a\u2029b",
    "a\ue000",
    "a\x07",
    "a\x85",
    "a\u0378",
    ".local",
    ".config",
    ".venv",
    ".bashrc",
    ".zshrc",
    ".bash_profile",
    ".Bashrc",
    ".ssh",
    *sorted(RESERVED_NAMES),
]


def python_verdict(name: str) -> dict[str, str] | None:
    try:
        validate_name(name)
    except VfdError as exc:
        return {"code": exc.code.value, "message": exc.message}
    return None


def test_console_pages_names_match_the_daemon() -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is required in CI (apt-get install nodejs)")
        print("name rules test skipped: node is not installed")
        pytest.skip("node is not installed")
    script = (
        f"import {{ nameProblem }} from {json.dumps(LOGIC.as_uri())};\n"
        "const names = JSON.parse(process.argv[1]);\n"
        "process.stdout.write(JSON.stringify(names.map((n) => nameProblem(n))));\n"
    )
    done = subprocess.run(
        [node, "--input-type=module", "-e", script, json.dumps(NAMES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    console = json.loads(done.stdout)
    mismatches = [
        (name, python_verdict(name), verdict)
        for name, verdict in zip(NAMES, console, strict=True)
        if python_verdict(name) != verdict
    ]
    assert mismatches == [], "\n".join(f"{n!r}: daemon {p}, console {c}" for n, p, c in mismatches)
