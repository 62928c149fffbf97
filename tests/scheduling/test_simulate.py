"""``vfd admin scheduler simulate`` through the real command line (no daemon): placements and
verdicts of each installed scheduler, the node's plugin config, and precise errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from vfd.cli.main import app

GPU0 = {"slot": "cuda.device", "device": "G0", "capacity": 1}

PAPER = {
    "agents": [{"id": "n1", "cpu": 9, "memory": "18G"}],
    "pending": [
        {"name": f"{u}{i}", "user": user, "cpu": cpu, "memory": memory}
        for i in range(1, 5)
        for u, user, cpu, memory in (("a", "alice", 1, "4G"), ("b", "bob", 3, "1G"))
    ],
}


def simulate(
    tmp_path: Path, snapshot: Any, *args: str, config: str = "", raw: str | None = None
) -> Result:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    (state / "vfd.toml").write_text(config)
    path = tmp_path / "snap.json"
    path.write_text(raw if raw is not None else json.dumps(snapshot))
    env = {"VFD_STATE_DIR": str(state), "VFD_CONFIG": None, "COLUMNS": "200"}
    return CliRunner().invoke(
        app, ["admin", "scheduler", "simulate", "--input", str(path), *args], env=env
    )


def test_simulate_drf_paper_example(tmp_path: Path) -> None:
    result = simulate(tmp_path, PAPER, "--scheduler", "drf", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [(p["session"], p["user"], p["agent"]) for p in out["placed"]] == [
        ("a1", "alice", "n1"),
        ("b1", "bob", "n1"),
        ("a2", "alice", "n1"),
        ("b2", "bob", "n1"),
        ("a3", "alice", "n1"),
    ]
    assert [w["session"] for w in out["waiting"]] == ["b3", "a4", "b4"]
    b3 = out["waiting"][0]["verdicts"]
    assert [v["name"] for v in b3] == [
        "group_allowed",
        "image_allowed",
        "within_concurrency",
        "within_policy",
        "folders_reachable",
        "fits_agent",
        "queue",
    ]
    assert b3[5] == {
        "name": "fits_agent",
        "ok": False,
        "reason": "no agent of group default has 3 cpu and 1 GiB memory free "
        "(most free: 0 cpu on n1, 4 GiB on n1)",
    }
    assert out["unaccounted"] == []


def test_simulate_human_output_fifo_default(tmp_path: Path) -> None:
    result = simulate(tmp_path, PAPER)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "fifo on group default: 5 placed, 3 waiting"
    assert lines[1].split() == ["SESSION", "USER", "AGENT", "CPU", "MEMORY"]
    assert lines[2].split() == ["a1", "alice", "n1", "1", "4", "GiB"]
    assert "b3 (bob) waits:" in lines
    assert (
        "  ok queue              first in line (round 1 of 3): the sessions behind it wait "
        "until it fits"
    ) in lines
    assert (
        "  NO queue              waiting behind session b3 (first in line, round 1 of 3)" in lines
    )


def test_simulate_memo_carries_rounds(tmp_path: Path) -> None:
    """The memo printed is the next round's input: past hol_rounds the others are tried."""
    snapshot = {
        "agents": [{"id": "n1", "cpu": 4, "memory": "8G"}],
        "pending": [
            {"name": "big", "user": "alice", "cpu": 8, "memory": "1G"},
            {"name": "small", "user": "bob", "cpu": 1, "memory": "1G"},
        ],
    }
    result = simulate(tmp_path, snapshot, "--json", config="[plugins.fifo]\nhol_rounds = 1\n")
    out = json.loads(result.stdout)
    assert out["placed"] == []
    snapshot["memo"] = out["memo"]
    result = simulate(tmp_path, snapshot, "--json", config="[plugins.fifo]\nhol_rounds = 1\n")
    out = json.loads(result.stdout)
    assert [p["session"] for p in out["placed"]] == ["small"]
    assert out["memo"]["rounds"] == 2


@pytest.mark.parametrize("name", ["fifo", "lifo", "drf"])
def test_simulate_every_builtin(tmp_path: Path, name: str) -> None:
    result = simulate(tmp_path, PAPER, "--scheduler", name, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert len(out["placed"]) + len(out["waiting"]) == 8


def test_simulate_unknown_scheduler(tmp_path: Path) -> None:
    result = simulate(tmp_path, PAPER, "--scheduler", "sjf-nope", "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "plugin_not_found"
    assert "no plugin registers a scheduler named 'sjf-nope' (registered: " in error["message"]


def test_simulate_blocked_scheduler_is_not_loaded(tmp_path: Path) -> None:
    result = simulate(tmp_path, PAPER, "--scheduler", "drf", config='[plugins]\nblock = ["drf"]\n')
    assert result.exit_code == 1
    assert "no plugin registers a scheduler named 'drf'" in result.output


def test_simulate_bad_option_in_config(tmp_path: Path) -> None:
    result = simulate(tmp_path, PAPER, "--json", config="[plugins.fifo]\nhol_rounds = -2\n")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "config_invalid"
    assert error["message"] == (
        "scheduler fifo: hol_rounds must be a whole number of rounds >= 0, not -2"
    )


@pytest.mark.parametrize(
    ("snapshot", "path", "message"),
    [
        ([], "$", "must be an object, not a list"),
        ({"agents": {}}, "$.agents", "must be a list, not an object"),
        ({"agents": [{"id": "n1", "cpu": 4}]}, "$.agents[0].memory", "missing"),
        (
            {"agents": [{"id": "n1", "cpu": "four", "memory": 1}]},
            "$.agents[0].cpu",
            "must be a number, not the string 'four'",
        ),
        (
            {"pending": [{"name": "s", "user": "u", "cpu": 1, "memory": "4X"}]},
            "$.pending[0].memory",
            "'4X' is not a size: use bytes or a number with K, M, G, T or P (binary units), "
            "e.g. 512M, 10G, 1.5T",
        ),
        (
            {"pending": [{"name": "s", "user": "u", "cpu": -1}]},
            "$.pending[0].cpu",
            "must be a finite number >= 0, not -1",
        ),
        (
            {"pending": [{"name": "s", "user": "u", "cpu": 1, "colour": "red"}]},
            "$.pending[0].colour",
            "unknown key (known: cpu, created_at, group, id, image, lifetime, memory, name, "
            "project, slots, storage_hosts, user)",
        ),
        (
            {"pending": [{"name": "s", "user": "u", "cpu": 1, "created_at": "yesterday"}]},
            "$.pending[0].created_at",
            "'yesterday' is not an ISO 8601 time (e.g. 2026-12-01T08:00:00Z)",
        ),
        (
            {
                "pending": [
                    {"name": "s", "user": "u", "cpu": 1},
                    {"name": "s", "user": "v", "cpu": 1},
                ]
            },
            "$.pending[1]",
            "session 's' has the id of $.pending[0]",
        ),
        (
            {"agents": [{"id": "n", "cpu": 1, "memory": 1}, {"id": "n", "cpu": 1, "memory": 1}]},
            "$.agents[1].id",
            "agent 'n' is listed twice",
        ),
        (
            {"limits": {"alice": {"max_sessions": 1.5}}},
            "$.limits.alice.max_sessions",
            "must be a whole number >= 0, not 1.5",
        ),
        ({"running": {"alice": True}}, "$.running.alice", "must be a whole number >= 0, not True"),
        (
            {"agents": [{"id": "n", "cpu": 1, "memory": 1, "storage_hosts": ["a", 3]}]},
            "$.agents[0].storage_hosts[1]",
            "must be a non-empty string, not 3",
        ),
        (
            {"agents": [{"id": "n", "cpu": 1, "memory": 1, "units": [{"slot": "cuda.device"}]}]},
            "$.agents[0].units[0].capacity",
            "missing",
        ),
        (
            {"agents": [{"id": "n", "cpu": 1, "memory": 1, "units": {"slot": "cuda.device"}}]},
            "$.agents[0].units",
            "must be a list, not an object",
        ),
        (
            {"agents": [{"id": "n", "cpu": 1, "memory": 1, "units": [GPU0, {**GPU0, "used": 1}]}]},
            "$.agents[0].units[1].device",
            "device 'G0' is listed twice",
        ),
        (
            {"agents": [{"id": "n", "cpu": 1, "memory": 1, "units": [{**GPU0, "used": 2}]}]},
            "$.agents[0].units[0].used",
            "2 used of a device worth 1",
        ),
        (
            {
                "agents": [
                    {"id": "n", "cpu": 1, "memory": 1, "units": [{**GPU0, "near": {"G1": -1}}]}
                ]
            },
            "$.agents[0].units[0].near.G1",
            "must be a whole number >= 0, not -1",
        ),
        (
            {"pending": [{"name": "s", "user": "u", "cpu": 1, "slots": {"cuda.device": 0}}]},
            "$.pending[0].slots.cuda.device",
            "must be a number > 0, not 0",
        ),
        (
            {"limits": {"alice": {"max_slots": {"cuda.device": "two"}}}},
            "$.limits.alice.max_slots.cuda.device",
            "must be a number, not the string 'two'",
        ),
    ],
)
def test_simulate_bad_snapshot_names_the_json_path(
    tmp_path: Path, snapshot: Any, path: str, message: str
) -> None:
    result = simulate(tmp_path, snapshot, "--json")
    assert result.exit_code == 1, result.output
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "invalid_argument"
    assert error["details"] == {"path": path}
    assert error["message"] == f"{tmp_path / 'snap.json'}: {path}: {message}"


def test_simulate_not_json(tmp_path: Path) -> None:
    result = simulate(tmp_path, None, "--json", raw='{"agents": [}')
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "invalid_argument"
    assert error["message"] == (
        f"{tmp_path / 'snap.json'}: $: not JSON: Expecting value at line 1 column 13"
    )


def test_simulate_missing_file(tmp_path: Path) -> None:
    env = {"VFD_STATE_DIR": str(tmp_path), "VFD_CONFIG": None}
    result = CliRunner().invoke(
        app, ["admin", "scheduler", "simulate", "--input", str(tmp_path / "no.json")], env=env
    )
    assert result.exit_code == 1
    assert f"cannot read {tmp_path / 'no.json'}: [Errno 2] No such file or directory" in (
        result.output
    )


def test_simulate_the_vfd_script_reads_stdin(tmp_path: Path) -> None:
    """The installed ``vfd`` script, the snapshot on stdin."""
    vfd = Path(sys.executable).with_name("vfd")
    env = {**os.environ, "VFD_STATE_DIR": str(tmp_path)}
    env.pop("VFD_CONFIG", None)
    done = subprocess.run(
        [
            str(vfd),
            "admin",
            "scheduler",
            "simulate",
            "--input",
            "-",
            "--scheduler",
            "lifo",
            "--json",
        ],
        input=json.dumps(PAPER),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["scheduler"] == "lifo"
    assert out["placed"][0]["session"] == "b4"  # newest first


def test_simulate_slots_placed_with_their_devices(tmp_path: Path) -> None:
    """Agents' devices and sessions' slots: a placed session gets the devices the daemon
    would give it, one asking shares never lands on a node of whole devices, and a user's
    allocation and max_slots count."""
    near = {"G1": 10}
    snapshot = {
        "agents": [
            {
                "id": "g1",
                "cpu": 32,
                "memory": "256G",
                "units": [
                    {**GPU0, "numa": 0, "near": near},
                    {"slot": "cuda.device", "device": "G1", "capacity": 1, "numa": 0},
                    {"slot": "cuda.device", "device": "G2", "capacity": 1, "numa": 1},
                    {"slot": "cuda.device", "device": "G3", "capacity": 1, "numa": 1},
                ],
            },
            {
                "id": "s1",
                "cpu": 8,
                "memory": "32G",
                "units": [{"slot": "cuda.shares", "device": "S0", "capacity": 1, "used": 0.3}],
            },
        ],
        "pending": [
            {"name": "pair", "user": "alice", "cpu": 4, "slots": {"cuda.device": 2}},
            {"name": "frac", "user": "bob", "cpu": 1, "slots": {"cuda.shares": 0.7}},
            {"name": "over", "user": "carol", "cpu": 1, "slots": {"cuda.device": 1}},
            {"name": "more", "user": "bob", "cpu": 1, "slots": {"cuda.shares": 0.1}},
        ],
        "allocations": {"carol": {"cpu": 1, "slots": {"cuda.device": 1}}},
        "limits": {"carol": {"max_slots": {"cuda.device": 1}}},
    }
    result = simulate(tmp_path, snapshot, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    placed = {p["session"]: (p["agent"], p["allocation"]) for p in out["placed"]}
    assert placed == {
        "pair": (
            "g1",
            [
                {"slot": "cuda.device", "device": "G0", "amount": 1.0},
                {"slot": "cuda.device", "device": "G1", "amount": 1.0},
            ],
        ),
        "frac": ("s1", [{"slot": "cuda.shares", "device": "S0", "amount": 0.7}]),
    }
    assert next(p for p in out["placed"] if p["session"] == "frac")["slots"] == {"cuda.shares": 0.7}
    waiting = {w["session"]: w["verdicts"] for w in out["waiting"]}
    assert {
        "name": "within_policy",
        "ok": False,
        "reason": ("user's sessions would hold 2 cuda.device with this one, policy allows 1"),
    } in waiting["over"]
    fits = next(v for v in waiting["more"] if v["name"] == "fits_agent")
    assert fits["reason"] == (
        "no agent of group default has room for it (agent g1: 0.1 cuda.shares asked, it offers "
        "cuda.device only; agent s1: 0.1 cuda.shares asked, 0 free)"
    )
