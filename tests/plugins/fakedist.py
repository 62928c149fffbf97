"""Installed-looking plugin distributions for tests: a directory with modules and a
``NAME-VERSION.dist-info`` (METADATA, entry_points.txt), found by ``importlib.metadata`` as
pip-installed ones are — on ``sys.path`` in the test process, or on a daemon's PYTHONPATH.
"""

from __future__ import annotations

import importlib.metadata
import textwrap
from pathlib import Path


def make_dist(
    site: Path,
    name: str,
    plugins: dict[str, str],
    modules: dict[str, str],
    version: str = "1.0",
) -> list[importlib.metadata.EntryPoint]:
    """Write distribution ``name`` into ``site``: ``modules`` (module name -> source) and
    ``plugins`` (entry-point name -> target in the ``vfd`` group); its entry points."""
    site.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[vfd]", *(f"{ep} = {target}" for ep, target in plugins.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return entry_points(site, name)


def entry_points(site: Path, name: str | None = None) -> list[importlib.metadata.EntryPoint]:
    """The ``vfd`` entry points of the distributions in ``site`` (of ``name`` only, if given)."""
    out = []
    for dist in importlib.metadata.distributions(path=[str(site)]):
        if name is None or dist.metadata["Name"] == name:
            out.extend(ep for ep in dist.entry_points if ep.group == "vfd")
    return out
