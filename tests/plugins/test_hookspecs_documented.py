"""Every hook vfd calls is documented and tested: a section ``## vfd_NAME`` in
docs/plugin-hooks.md (with its signature and the parts every section has) and a test named
``test_hook_vfd_NAME`` (in tests/plugins/, or tests/sessions/ for hooks that need a running
session). Every hook follows the rules of the specification module too."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from vfd.plugins import hookspecs

REPO = Path(__file__).parents[2]
DOC = REPO / "docs" / "plugin-hooks.md"
TEST_DIRS = [REPO / "tests" / "plugins", REPO / "tests" / "sessions", REPO / "tests" / "apps"]
HOOKS = sorted(
    name
    for name, fn in vars(hookspecs).items()
    if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
)


def sections() -> dict[str, str]:
    """docs/plugin-hooks.md's ``## NAME`` sections, by name."""
    parts = re.split(r"^## ", DOC.read_text(), flags=re.M)[1:]
    return {part.split("\n", 1)[0].strip(): part for part in parts}


def test_hookspecs_are_all_vfd_prefixed_and_typed() -> None:
    assert len(HOOKS) >= 13
    for name in HOOKS:
        assert name.startswith("vfd_"), name
        fn = getattr(hookspecs, name)
        hints = inspect.get_annotations(fn)
        assert "return" in hints, f"{name} has no return annotation"
        for param in inspect.signature(fn).parameters:
            assert param in hints, f"{name}({param}) is not annotated"
        assert fn.__doc__, f"{name} has no docstring"


@pytest.mark.parametrize("hook", HOOKS)
def test_hookspecs_documented_in_plugin_hooks_md(hook: str) -> None:
    found = sections()
    assert hook in found, f"docs/plugin-hooks.md has no section '## {hook}'"
    text = found[hook]
    assert f"def {hook}(" in text, f"the {hook} section shows no signature"
    for part in ("**Parameters:**", "**When:**", "**Example:**"):
        assert part in text, f"the {hook} section has no {part}"
    assert "**Returns:**" in text or "**Veto:**" in text, f"{hook}: no return or veto contract"
    params = inspect.signature(getattr(hookspecs, hook)).parameters
    for param in params:
        assert f"`{param}`" in text, f"the {hook} section does not describe `{param}`"


def test_hookspecs_documented_no_stale_sections() -> None:
    stale = set(sections()) - set(HOOKS)
    assert not stale, f"docs/plugin-hooks.md documents hooks vfd does not have: {stale}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hookspecs_each_hook_has_its_test(hook: str) -> None:
    wanted = re.compile(rf"^(async )?def test_hook_{hook}\(", re.M)
    files = [f for d in TEST_DIRS for f in sorted(d.glob("test_*.py"))]
    assert any(wanted.search(f.read_text()) for f in files), (
        f"no test_hook_{hook} in {', '.join(str(d.relative_to(REPO)) for d in TEST_DIRS)}"
    )
