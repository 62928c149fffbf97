"""The image of the service-app tests: the session tests' busybox with service labels
(``ai.vfd.service-ports``: busybox ``httpd`` serving ``/home/work`` as ``files``), made with
``docker commit --change LABEL`` (no registry, no build)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "sessions"))
from sessionnode import build_image

SERVICE_IMAGE = "vfd-test/busybox-httpd:2"
SERVICE_LABELS = {
    "ai.vfd.service-ports": "files:http:8080,idle:http:9100,raw:tcp:9000,broken:http:9200",
    "ai.vfd.service.files.command": json.dumps(["httpd", "-f", "-p", "8080", "-h", "/home/work"]),
    "ai.vfd.service.broken.command": json.dumps(["sh", "-c", "exit 3"]),
}


def build_service_image() -> str:
    """The test image with service labels (made again when its labels differ)."""
    seen = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", SERVICE_IMAGE],
        capture_output=True,
        text=True,
    )
    if seen.returncode == 0 and json.loads(seen.stdout or "null") == SERVICE_LABELS:
        return SERVICE_IMAGE
    made = subprocess.run(
        ["docker", "create", build_image()], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        changes: list[str] = []
        for key, value in SERVICE_LABELS.items():
            changes += ["--change", f"LABEL {key}={json.dumps(value)}"]
        subprocess.run(
            ["docker", "commit", *changes, made, SERVICE_IMAGE], capture_output=True, check=True
        )
    finally:
        subprocess.run(["docker", "rm", "-f", made], capture_output=True)
    return SERVICE_IMAGE
