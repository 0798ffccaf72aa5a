"""The docs' notes plugin works installed both ways: dropped into plugins/, and as a distribution with an entry point."""

import shutil
import subprocess
import sys

import pytest
from plugin_kit import PROJECT, link_project_plugins

from core.plugin import ADMIN

EXAMPLE = PROJECT / "examples" / "notes"


async def use_notes_over_http(logged_in) -> None:
    alice, boss = await logged_in("alice"), await logged_in("boss", roles=[ADMIN])
    created = await alice.post("/notes", json={"text": "hello"})
    assert created.code == 201, created.text
    assert [n["text"] for n in (await alice.get("/notes")).json()] == ["hello"]
    assert (await boss.get("/notes")).json() == []
    assert (await alice.get("/notes/all")).code == 403
    assert [n["owner"] for n in (await boss.get("/notes/all")).json()] == ["alice"]


class TestDroppedIn:
    @pytest.fixture
    def plugins_dir(self, tmp_path):
        root = tmp_path / "plugins"
        link_project_plugins(root, "auth", "employees", "site")
        shutil.copytree(EXAMPLE / "turnstile_notes", root / "notes")
        return root

    @pytest.mark.gen_test
    async def test_notes_work_over_http(self, app, logged_in):
        [ctx] = [p for p in app.plugins if p.name == "notes"]
        assert ctx.source == "plugins/"
        assert "/notes/{note_id}" in app.openapi["paths"]
        await use_notes_over_http(logged_in)
        assert await app.services.store.collection("notes.notes").count() == 1


class TestInstalled:
    @pytest.fixture
    def plugins_dir(self, tmp_path, monkeypatch):
        """``pip install`` the example for real (built from its pyproject.toml) into a folder put on sys.path."""
        site, source = tmp_path / "site", tmp_path / "source"
        # Built from a copy: setuptools leaves build/ and *.egg-info next to the sources it builds.
        shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--target", str(site), str(source)],
            check=True,
            timeout=180,
        )
        monkeypatch.syspath_prepend(str(site))
        yield PROJECT / "plugins"
        for name in [n for n in sys.modules if n == "turnstile_notes" or n.startswith("turnstile_notes.")]:
            del sys.modules[name]

    @pytest.mark.gen_test
    async def test_notes_work_over_http(self, app, logged_in, tmp_path):
        [ctx] = [p for p in app.plugins if p.name == "notes"]
        assert ctx.source == "distribution turnstile-notes 0.1.0"
        assert ctx.path == tmp_path / "site" / "turnstile_notes" / "__init__.py"
        await use_notes_over_http(logged_in)
