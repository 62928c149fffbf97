"""A GPU session's container spec and the checks of the slots a request names (in-process:
no docker needed): the ``vfd.allocation`` label holds what the session holds, one plugin's cpu
set is taken and two clash, and each bad slot amount is refused with its reason."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from vfd.daemon.services.session_slots import check
from vfd.daemon.spec import ALLOCATION_LABEL, merge_cpuset, vfd_labels
from vfd.errors import ErrorCode, VfdError
from vfd.plugins.testing import session_view
from vfd.plugins.types import Allotment, ContainerContribution, SlotSpec
from vfd.scheduling.slots import allotments_from_json

VIEW = session_view()
SPECS = {
    "cuda.device": SlotSpec("cuda.device", 1.0, "whole GPUs"),
    "cuda.shares": SlotSpec("cuda.shares", 0.1, "GPU shares"),
    "npu.core": SlotSpec("npu.core", 1.0, "cores"),
}


def test_gpu_spec_allocation_label_round_trips() -> None:
    assert ALLOCATION_LABEL not in vfd_labels(VIEW)
    held = (
        Allotment("cuda.device", "GPU-a", 1.0),
        Allotment("cuda.device", "GPU-b", 1.0),
    )
    labels = vfd_labels(dataclasses.replace(VIEW, allocation=held))
    text = labels[ALLOCATION_LABEL]
    assert " " not in text
    assert allotments_from_json(json.loads(text)) == held


def test_gpu_spec_cpuset_of_one_plugin_and_a_clash() -> None:
    none = ContainerContribution(env={"A": "1"})
    numa = ContainerContribution(cpuset_cpus="0-15,32-47")
    assert merge_cpuset([("a", none)]) is None
    assert merge_cpuset([("a", none), ("cuda", numa)]) == "0-15,32-47"
    with pytest.raises(VfdError) as clash:
        merge_cpuset([("cuda", numa), ("other", ContainerContribution(cpuset_cpus="1"))])
    assert clash.value.code is ErrorCode.PLUGIN_FAILED
    assert "plugins cuda and other both set the cpu set" in clash.value.message


def test_gpu_spec_slots_checked() -> None:
    assert check({}, SPECS) == {}
    assert check({"cuda.shares": 0.3}, SPECS) == {"cuda.shares": 0.3}
    assert check({"cuda.device": 2, "npu.core": 1}, SPECS) == {"cuda.device": 2.0, "npu.core": 1.0}
    assert check({"cuda.device": 0, "npu.core": 3}, SPECS, allow_zero=True) == {"npu.core": 3.0}


@pytest.mark.parametrize(
    ("slots", "words"),
    [
        ({"cuda.shares": 0.25}, "cuda.shares is taken in steps of 0.1; 0.25 is not one"),
        ({"cuda.device": 1.5}, "cuda.device is taken in steps of 1"),
        ({"cuda.device": 0}, "cuda.device must be a positive number"),
        ({"cuda.shares": -0.1}, "must be a positive number"),
        ({"cuda.shares": math.nan}, "must be a positive number"),
        ({"cuda.shares": math.inf}, "must be a positive number"),
        ({"cuda.shares": "0.5"}, "cuda.shares must be a number"),
        ({"cuda.shares": True}, "cuda.shares must be a number"),
        ({"cuda.device": 1, "cuda.shares": 0.5}, "cannot be asked together"),
        ({"tpu.core": 1}, "no slot 'tpu.core' (this daemon offers cuda.device, cuda.shares"),
    ],
)
def test_gpu_spec_bad_slots_refused(slots: dict[str, object], words: str) -> None:
    with pytest.raises(VfdError) as refused:
        check(slots, SPECS)
    assert refused.value.code is ErrorCode.INVALID_ARGUMENT
    assert refused.value.details["field"] == "slots"
    assert words in refused.value.message, refused.value.message


def test_gpu_spec_no_accelerator_plugin() -> None:
    with pytest.raises(VfdError) as refused:
        check({"cuda.device": 1}, {})
    assert "none: no accelerator plugin is loaded" in refused.value.message
