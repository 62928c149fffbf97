"""Plugin contributions merged into a session's container spec: what vfd sets is vfd's, and
two plugins may not set the same thing (in-process: no docker needed)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from vfd.daemon.containers import Bind
from vfd.daemon.spec import merge
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.types import BindMount, ContainerContribution, DeviceRequest, SessionView

VIEW = SessionView(
    id=uuid.uuid4(),
    name="s",
    user_id=uuid.uuid4(),
    user_email="a@example.org",
    uid=2000,
    gid=2000,
    node="n",
    image="img",
    command=(),
    env={},
    cpu=1.0,
    memory=0,
    mounts=(),
    status="preparing",
    created_at=datetime.now(UTC),
)
FOLDERS = [Bind("/mnt/rw/abc", "/home/work/data", read_only=False)]


def test_runtime_spec_contributions_merged() -> None:
    env, labels, binds, devices, limits = merge(
        VIEW,
        FOLDERS,
        [
            (
                "a",
                ContainerContribution(
                    env={"A": "1"}, labels={"x.a": "1"}, limits={"pids_limit": 64}
                ),
            ),
            (
                "b",
                ContainerContribution(
                    env={"B": "2"},
                    mounts=[BindMount("/opt/tools", "/opt/tools")],
                    device_requests=[DeviceRequest(driver="nvidia", count=1)],
                ),
            ),
        ],
    )
    assert env == {"A": "1", "B": "2"} and labels == {"x.a": "1"}
    assert binds == [Bind("/opt/tools", "/opt/tools", read_only=True)]
    assert limits == {"pids_limit": 64}
    assert devices[0]["driver"] == "nvidia" and devices[0]["count"] == 1


@pytest.mark.parametrize(
    ("contribution", "words"),
    [
        (ContainerContribution(env={"HOME": "/root"}), "sets env HOME"),
        (ContainerContribution(env={"VFD_SESSION_ID": "x"}), "sets env VFD_SESSION_ID"),
        (ContainerContribution(labels={"vfd.user": "x"}), "sets label vfd.user"),
        (ContainerContribution(limits={"mem_limit": 1}), "sets mem_limit"),
        (ContainerContribution(limits={"privileged": 1}), "sets privileged"),
        (ContainerContribution(mounts=[BindMount("/x", "/home/work")]), "onto /home/work"),
        (ContainerContribution(mounts=[BindMount("/x", "/home/work/data/in")]), "onto /home"),
        (ContainerContribution(mounts=[BindMount("/x", "rel")]), "not an absolute path"),
    ],
)
def test_runtime_spec_plugin_may_not_set_what_vfd_sets(
    contribution: ContainerContribution, words: str
) -> None:
    with pytest.raises(VfdError) as refused:
        merge(VIEW, FOLDERS, [("meddler", contribution)])
    assert refused.value.code is ErrorCode.PLUGIN_FAILED
    assert refused.value.details["plugin"] == "meddler"
    assert "plugin meddler" in refused.value.message and words in refused.value.message


@pytest.mark.parametrize(
    "contribution",
    [
        ContainerContribution(env={"K": "1"}),
        ContainerContribution(labels={"k": "1"}),
        ContainerContribution(limits={"shm_size": 1}),
        ContainerContribution(mounts=[BindMount("/a", "/opt/x")]),
    ],
)
def test_runtime_spec_two_plugins_clash(contribution: ContainerContribution) -> None:
    with pytest.raises(VfdError) as refused:
        merge(VIEW, FOLDERS, [("first", contribution), ("second", contribution)])
    assert "plugins first and second both" in refused.value.message
