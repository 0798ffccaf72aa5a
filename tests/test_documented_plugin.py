"""A plugin added exactly as docs/plugins.md says passes the suite, and its own tests run in it.

The project is copied to a temporary folder; the tutorial's `notes` plugin is written into its `plugins/`
from the code blocks of docs/plugins.md (sections 2, 3 and 6), with its test in `plugins/notes/tests/`;
then the suite's plugin-dependent parts run there: plugin loading, the OpenAPI document (schemathesis
included), the example plugin's tests, and the new plugin's own, found through the default test paths.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from plugin_kit import PROJECT

DOCS = PROJECT / "docs" / "plugins.md"
SKIP = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", "*.pyc", "data", "logs", ".env", "node_modules")


def block_after(text: str, marker: str) -> str:
    """The first fenced code block after ``marker`` in the docs."""
    start = text.index(marker)
    match = re.compile(r"```[a-z]*\n(.*?)```", re.S).search(text, start)
    assert match, f"no code block after {marker!r}"
    return match.group(1)


def write_tutorial_plugin(project: Path) -> Path:
    """`plugins/notes` as the tutorial builds it: sections 2 and 3, and the section 6 test."""
    docs = DOCS.read_text()
    plugin = project / "plugins" / "notes"
    (plugin / "tests").mkdir(parents=True)
    handlers = block_after(docs, "`plugins/notes/handlers.py`:")
    init = block_after(docs, "`plugins/notes/__init__.py`:")
    guarded = block_after(docs, "## 3. A role-guarded route")
    # Section 3: "and (r"/notes/all", AllNotesHandler) in routes".
    assert 'routes = [(r"/notes", NotesHandler)]' in init
    init = init.replace("from .handlers import NotesHandler", "from .handlers import AllNotesHandler, NotesHandler")
    init = init.replace('routes = [(r"/notes", NotesHandler)]', 'routes = [(r"/notes", NotesHandler), (r"/notes/all", AllNotesHandler)]')
    (plugin / "handlers.py").write_text(handlers + "\n\n" + guarded)
    (plugin / "__init__.py").write_text(init)
    # Section 6: "For a drop-in plugin, put the test in plugins/notes/tests/".
    (plugin / "tests" / "test_notes.py").write_text(block_after(docs, "A protected, role-guarded route in ten lines"))
    return plugin


def test_a_plugin_added_as_the_docs_say_passes_the_suite(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=SKIP, symlinks=True)
    write_tutorial_plugin(project)
    env = {**os.environ, "TURNSTILE_TEST_BACKEND": "json", "PYTHONDONTWRITEBYTECODE": "1"}

    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only"], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )
    assert "plugins/notes/tests/test_notes.py::test_all_notes_is_admin_only" in collected.stdout, collected.stdout[-3000:]

    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "no:randomly",
            "tests/test_plugin_loading.py", "tests/test_openapi.py", "examples/notes/tests", "plugins/notes/tests",
        ],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", result.stdout) and " failed" not in result.stdout
