"""The predicates: each one's verdict, name and reason, and check() running them all."""

from __future__ import annotations

from snapshots import GiB, agent, session, snapshot

from vfd.plugins.types import Resources, UserLimits, Verdict
from vfd.scheduling import predicates
from vfd.scheduling.predicates import (
    PREDICATES,
    check,
    fits_agent,
    folders_reachable,
    group_allowed,
    image_allowed,
    within_concurrency,
    within_policy,
)
from vfd.scheduling.state import RoundState


def test_predicates_names_match_their_verdicts() -> None:
    s = session(0, "A", 1, GiB)
    state = RoundState(snapshot([s], [agent("n1", 4, 8 * GiB)]))
    for predicate in PREDICATES:
        assert predicate(s, None, state).name == predicate.__name__


def test_fits_agent_names_what_is_short() -> None:
    s = session(0, "A", 2, 6 * GiB)
    n1 = agent("n1", 4, 8 * GiB, used_cpu=3)
    n2 = agent("n2", 4, 8 * GiB, used_memory=4 * GiB)
    state = RoundState(snapshot([s], [n1, n2]))
    assert fits_agent(s, None, state) == Verdict(
        "fits_agent",
        False,
        "no agent of group default has 2 cpu and 6 GiB memory free "
        "(most free: 4 cpu on n2, 8 GiB on n1)",
    )
    assert fits_agent(s, n1, state) == Verdict("fits_agent", False, "agent n1: 2 cpu asked, 1 free")
    assert fits_agent(s, n2, state).reason == ("agent n2: 6 GiB memory asked, 4 GiB free")
    small = session(1, "A", 1, GiB)
    assert fits_agent(small, None, state) == Verdict(
        "fits_agent", True, "fits on 2 agent(s), e.g. n1"
    )


def test_fits_agent_follows_the_round() -> None:
    """A session placed earlier in the round takes its room."""
    first, second = session(0, "A", 3, GiB), session(1, "B", 3, GiB)
    state = RoundState(snapshot([first, second], [agent("n1", 4, 8 * GiB)]))
    assert fits_agent(second, None, state).ok
    state.place(first, "n1")
    assert not fits_agent(second, None, state).ok
    assert state.allocation(first.user_id) == Resources(3, GiB)
    assert state.running[first.user_id] == 1


def test_fits_agent_other_group_and_dead() -> None:
    s = session(0, "A", 1, GiB)
    other = agent("o1", 8, 8 * GiB, group="gpu")
    dead = agent("d1", 8, 8 * GiB, alive=False)
    state = RoundState(snapshot([s], [other, dead]))
    assert fits_agent(s, None, state).reason == "no alive agent in group default"
    assert fits_agent(s, other, state).reason == "agent o1: in group gpu"
    assert fits_agent(s, dead, state).reason == "agent d1: not alive"


def test_folders_reachable() -> None:
    s = session(0, "A", 1, GiB, storage_hosts=("local-n2", "shared"))
    n1 = agent("n1", 4, 8 * GiB, storage_hosts=frozenset({"local-n1", "shared"}))
    n2 = agent("n2", 4, 8 * GiB, storage_hosts=frozenset({"local-n2", "shared"}))
    anywhere = agent("n3", 4, 8 * GiB)  # None: reaches every host
    state = RoundState(snapshot([s], [n1, n2]))
    assert folders_reachable(s, n1, state) == Verdict(
        "folders_reachable", False, "agent n1 does not reach storage host local-n2"
    )
    assert folders_reachable(s, n2, state).ok
    assert folders_reachable(s, anywhere, state).ok
    assert folders_reachable(s, None, state).ok
    fitting, verdicts = check(s, state.snapshot, state)
    assert [a.id for a in fitting] == ["n2"]
    assert all(v.ok for v in verdicts)
    assert fits_agent(s, n1, state).reason == "agent n1: does not reach storage host local-n2"
    only_n1 = RoundState(snapshot([s], [n1]))
    assert folders_reachable(s, None, only_n1) == Verdict(
        "folders_reachable",
        False,
        "no alive agent of group default reaches every storage host it needs "
        "(local-n2 missing on some)",
    )
    assert folders_reachable(session(1, "A", 1, GiB), None, only_n1).reason == "mounts no folder"


def test_within_policy_counts_allocation_plus_request() -> None:
    s = session(0, "A", 2, 2 * GiB)
    limits = {"A": UserLimits(max_cpu=4, max_memory=4 * GiB)}
    nodes = [agent("n1", 16, 64 * GiB)]
    ok = RoundState(snapshot([s], nodes, allocations={"A": Resources(2, GiB)}, limits=limits))
    assert within_policy(s, None, ok) == Verdict(
        "within_policy", True, "within the user's cpu and memory limits"
    )
    over = RoundState(snapshot([s], nodes, allocations={"A": Resources(3, 3 * GiB)}, limits=limits))
    assert within_policy(s, None, over) == Verdict(
        "within_policy",
        False,
        "user's sessions would hold 5 cpu with this one, policy allows 4; "
        "5 GiB memory with this one, policy allows 4 GiB",
    )
    assert within_policy(s, None, RoundState(snapshot([s], nodes))).reason == (
        "no cpu or memory limit"
    )


def test_within_concurrency() -> None:
    s = session(0, "A", 1, GiB)
    nodes = [agent("n1", 16, 64 * GiB)]
    limits = {"A": UserLimits(max_sessions=2)}
    assert within_concurrency(
        s, None, RoundState(snapshot([s], nodes, running={"A": 1}, limits=limits))
    ) == Verdict("within_concurrency", True, "user has 1 of 2 live sessions")
    assert within_concurrency(
        s, None, RoundState(snapshot([s], nodes, running={"A": 2}, limits=limits))
    ) == Verdict("within_concurrency", False, "user has 2 live sessions, policy allows 2")


def test_group_and_image_allowed_match_patterns() -> None:
    nodes = [agent("n1", 16, 64 * GiB)]
    limits = {
        "A": UserLimits(allowed_images=("python:*", "ghcr.io/lab/*"), allowed_groups=("def*",))
    }
    good = session(0, "A", 1, GiB, image="ghcr.io/lab/train:2")
    bad = session(1, "A", 1, GiB, image="ubuntu:24.04", group="gpu")
    state = RoundState(snapshot([good, bad], nodes, limits=limits))
    assert image_allowed(good, None, state).ok
    assert group_allowed(good, None, state).ok
    assert image_allowed(bad, None, state) == Verdict(
        "image_allowed",
        False,
        "image ubuntu:24.04 not allowed by the user's policy (allowed: python:*, ghcr.io/lab/*)",
    )
    assert group_allowed(bad, None, state) == Verdict(
        "group_allowed", False, "group gpu not allowed by the user's policy (allowed: def*)"
    )
    _, verdicts = check(bad, state.snapshot)
    assert [v.name for v in verdicts if not v.ok] == ["group_allowed", "image_allowed"]


def test_size_for_people() -> None:
    assert predicates.size(512) == "512 B"
    assert predicates.size(1536 * 2**20) == "1.5 GiB"
    assert predicates.size(2**42) == "4 TiB"


def test_unlimited_is_what_user_predicates_say_without_limits() -> None:
    s = session(0, "A", 1, GiB, image="any:1", group="default")
    state = RoundState(snapshot([s], [agent("n1", 4, 8 * GiB)], running={"A": 50}))
    assert tuple(p(s, None, state) for p in predicates.USER_PREDICATES) == predicates.UNLIMITED


def test_image_allowed_without_an_image() -> None:
    s = session(0, "A", 1, GiB)
    limits = {"A": UserLimits(allowed_images=("python:*",))}
    state = RoundState(snapshot([s], [agent("n1", 4, 8 * GiB)], limits=limits))
    assert image_allowed(s, None, state).reason == (
        "image (none) not allowed by the user's policy (allowed: python:*)"
    )
