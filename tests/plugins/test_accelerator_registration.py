"""vfd_register_accelerators: accelerators registered as AcceleratorSpec records, checked as
the plugin loads (a malformed answer fails the plugin with its reason, one accelerator or
slot name from two plugins names both), built from the plugin's section and asked for their
devices once when the daemon starts (a factory that raises fails the plugin, an inventory
that raises is a status), and reported for the node."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from vfd.config import Config, load_config
from vfd.errors import ErrorCode, VfdError
from vfd.plugins import (
    AcceleratorSpec,
    DeviceInfo,
    Inventory,
    SlotSpec,
    SlotUnit,
    hookimpl,
)
from vfd.plugins.testing import make_plugins


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(state_dir=tmp_path / "state", env={})


class Boards:
    """An accelerator of FPGA boards listed in its section (``ids``)."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        if "ids" not in options:
            raise ValueError("[plugins.fpga] ids must be set")
        self.ids = list(options["ids"])
        self.asked: list[list[str]] = []

    def inventory(self) -> Inventory:
        devices = tuple(DeviceInfo(id=i, name="board", memory=2**30, sm=1) for i in self.ids)
        units = tuple(SlotUnit("fpga.board", d.id, 1.0, numa=0) for d in devices)
        return Inventory(devices, units, f"{len(devices)} boards")

    def usage(self, devices: Sequence[str]) -> Mapping[str, Mapping[str, Any]]:
        self.asked.append(list(devices))
        return {d: {"utilization": 7} for d in devices}


def fpga_spec(factory: Any = Boards, name: str = "fpga", slots: Any = None) -> AcceleratorSpec:
    if slots is None:
        slots = (SlotSpec(f"{name}.board", 1.0, "a whole board"),)
    return AcceleratorSpec(name, "FPGA boards", slots, factory)


class Registers:
    def __init__(self, *answer: Any) -> None:
        self.answer = list(answer)

    @hookimpl
    def vfd_register_accelerators(self) -> Any:
        return self.answer


def started(*plugins: object, sections: Mapping[str, Mapping[str, Any]] | None = None) -> Any:
    manager = make_plugins(*plugins, sections=sections)
    asyncio.run(manager.start())
    return manager


def test_hook_vfd_register_accelerators() -> None:
    manager = started(("fpga", Registers(fpga_spec())), sections={"fpga": {"ids": ["b0", "b1"]}})
    assert list(manager.accelerators()) == ["fpga"]
    assert manager.accelerators()["fpga"][0] == "fpga"
    assert manager.slot_specs() == {"fpga.board": SlotSpec("fpga.board", 1.0, "a whole board")}
    inventory = manager.inventories()["fpga"]
    assert [d.id for d in inventory.devices] == ["b0", "b1"]
    assert manager.agent_accelerators() == {
        "fpga": {
            "status": "2 boards",
            "devices": [d.as_json() for d in inventory.devices],
            "units": [
                {"slot": "fpga.board", "device": i, "capacity": 1.0, "numa": 0, "near": {}}
                for i in ("b0", "b1")
            ],
        }
    }
    (listed,) = manager.listing()["accelerators"]
    assert listed == {
        "name": "fpga",
        "plugin": "fpga",
        "description": "FPGA boards",
        "slots": [{"name": "fpga.board", "quantum": 1.0, "description": "a whole board"}],
        "status": "2 boards",
        "devices": 2,
    }
    assert manager.device_usage(["b1", "elsewhere"]) == {"b1": {"utilization": 7}}


def test_accelerator_none_registered_reports_none() -> None:
    manager = started()
    assert manager.accelerators() == {}
    assert manager.slot_specs() == {}
    assert manager.agent_accelerators() is None
    assert manager.device_usage(["GPU-1"]) == {}


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (fpga_spec(), "must return a list of AcceleratorSpec, not AcceleratorSpec"),
        ("oops", "must return a list of AcceleratorSpec, not str"),
        (["oops"], "vfd_register_accelerators returned 'oops': an AcceleratorSpec was expected"),
        (
            [fpga_spec(name="FPGA", slots=(SlotSpec("FPGA.board", 1, "x"),))],
            "accelerator name 'FPGA': 1-32 lowercase",
        ),
        ([fpga_spec(factory=None)], "accelerator fpga: factory is not callable"),
        ([fpga_spec(slots=())], "accelerator fpga: slots must be a list of SlotSpec"),
        ([fpga_spec(slots=("fpga.board",))], "slot 'fpga.board': a SlotSpec was expected"),
        (
            [fpga_spec(slots=(SlotSpec("gpu.board", 1, "x"),))],
            "slot name 'gpu.board' is not 'fpga.KIND'",
        ),
        (
            [fpga_spec(slots=(SlotSpec("fpga.Board", 1, "x"),))],
            "slot name 'fpga.Board' is not 'fpga.KIND'",
        ),
        (
            [fpga_spec(slots=(SlotSpec("fpga.board", 0, "x"),))],
            "slot fpga.board: quantum 0 is not a positive number",
        ),
        (
            [fpga_spec(slots=(SlotSpec("fpga.board", float("nan"), "x"),))],
            "slot fpga.board: quantum nan is not a positive number",
        ),
        (
            [fpga_spec(slots=(SlotSpec("fpga.board", 1, "x"), SlotSpec("fpga.board", 1, "y")))],
            "accelerator fpga offers slot fpga.board twice",
        ),
        ([fpga_spec(), fpga_spec()], "one name twice"),
    ],
)
def test_accelerator_malformed_registration_fails_the_plugin(answer: Any, error: str) -> None:
    plugin = Registers()
    plugin.answer = answer
    manager = make_plugins(("fpga", plugin))
    (record,) = manager.records
    assert record.error is not None and error in record.error, record.error
    assert record.hooks == ()
    assert manager.accelerators() == {} and manager.slot_specs() == {}


def test_accelerator_registration_must_not_be_awaitable() -> None:
    class Async:
        @hookimpl
        async def vfd_register_accelerators(self) -> Any:
            return [fpga_spec()]

    manager = make_plugins(("fpga", Async()))
    assert manager.records[0].error == (
        "vfd_register_accelerators must return its list, not an awaitable"
    )


def test_accelerator_name_clash_names_both_plugins() -> None:
    with pytest.raises(VfdError) as caught:
        make_plugins(("one", Registers(fpga_spec())), ("two", Registers(fpga_spec())))
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert caught.value.message == (
        "plugins one and two both register an accelerator named 'fpga': block one of them in "
        'the config ([plugins] block = ["two"])'
    )
    assert caught.value.details["plugins"] == ["one", "two"]


def test_accelerator_slot_clash_names_both_plugins(config: Config) -> None:
    other = fpga_spec(name="fpga2", slots=(SlotSpec("fpga2.board", 1, "x"),))
    # a slot named after another accelerator cannot be registered (the prefix rule), so a
    # slot clash is two accelerators of one name offering it: the accelerator clash first
    with pytest.raises(VfdError) as caught:
        make_plugins(("one", Registers(fpga_spec(), other)), ("two", Registers(other)))
    assert "plugins one and two both register an accelerator named 'fpga2'" in (
        caught.value.message
    )
    blocked = make_plugins(
        ("one", Registers(fpga_spec(), other)),
        ("two", Registers(other)),
        config=config.__class__(**{**config.__dict__, "plugin_block": ("two",)}),
    )
    assert sorted(blocked.slot_specs()) == ["fpga.board", "fpga2.board"]


def test_accelerator_factory_raising_fails_the_plugin() -> None:
    manager = started(("fpga", Registers(fpga_spec())), sections={"fpga": {}})
    (record,) = manager.records
    assert record.error == "accelerator fpga: ValueError: [plugins.fpga] ids must be set"
    assert manager.accelerators() == {} and manager.slot_specs() == {}
    assert manager.agent_accelerators() is None


class Broken(Boards):
    def inventory(self) -> Inventory:
        raise OSError("the board's bus is gone")


class Lying(Boards):
    def inventory(self) -> Inventory:
        return Inventory((), (SlotUnit("fpga.board", "b9", 1.0),), "1 board")


@pytest.mark.parametrize(
    ("factory", "status"),
    [
        (Broken, "discovery failed: OSError: the board's bus is gone"),
        (Lying, "discovery failed: ValueError: a unit of device 'b9', which it did not list"),
        (lambda options: object(), "discovery failed: AttributeError"),
    ],
)
def test_accelerator_inventory_failing_is_its_status(factory: Any, status: str) -> None:
    manager = started(("fpga", Registers(fpga_spec(factory))), sections={"fpga": {"ids": []}})
    assert manager.records[0].error is None
    entry = manager.agent_accelerators()["fpga"]
    assert entry["status"].startswith(status), entry
    assert entry["devices"] == [] and entry["units"] == []
    assert manager.listing()["accelerators"][0]["status"] == entry["status"]
