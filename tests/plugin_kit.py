"""Helpers for tests that build plugins and distributions on the fly."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent

GOOD_HANDLER = """
from core.plugin import BaseHandler, public

@public
class Hello(BaseHandler):
    def get(self):
        self.finish({"hello": __name__})
"""


def write_plugin(root: Path, name: str, init: str, **modules: str) -> Path:
    """Create package ``root/name`` with ``__init__.py`` = ``init`` and extra modules."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(textwrap.dedent(init))
    for module, source in modules.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(source))
    return folder


def link_project_plugins(root: Path, *names: str) -> None:
    """Make the project's own plugins (auth, site...) part of ``root`` by symlink."""
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).symlink_to(PROJECT / "plugins" / name, target_is_directory=True)


def install_distribution(site: Path, package: Path, name: str, version: str, entry_points: dict[str, str]) -> Path:
    """Install ``package`` into ``site`` as distribution ``name`` the way a wheel install lays it out.

    Copies the package and writes ``NAME-VERSION.dist-info`` with METADATA,
    ``entry_points.txt`` (group ``turnstile.plugins``) and RECORD, which is what
    ``importlib.metadata`` reads.
    """
    site.mkdir(parents=True, exist_ok=True)
    shutil.copytree(package, site / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[turnstile.plugins]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    (info / "RECORD").write_text("")
    return info
