"""`bin/turnstile`: the README's operator commands run on the project's Python, from any directory.

The project is copied to a scratch folder whose ``.venv`` stands for an installed one (its
``bin/python`` runs this test's interpreter and its stamp says the requirements are installed), so
the real ``bin/setup`` runs and finds nothing to install: the shared environment is never touched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "turnstile"
    root.mkdir()
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("bin", "core", "plugins"):
        shutil.copytree(PROJECT / folder, root / folder, ignore=ignore)
    for name in ("server.py", "pyproject.toml", *(p.name for p in PROJECT.glob("requirements*.txt"))):
        shutil.copy2(PROJECT / name, root / name)
    venv = root / ".venv" / "bin"
    venv.mkdir(parents=True)
    # Never pip: bin/setup must find everything installed (a pip here would install into the shared environment).
    (venv / "python").write_text(f'#!/bin/sh\n[ "$1 $2" = "-m pip" ] && exit 97\nexec "{sys.executable}" "$@"\n')
    (venv / "python").chmod(0o755)
    installed = b"".join(p.read_bytes() for p in (*sorted(root.glob("requirements*.txt")), root / "pyproject.toml"))
    (root / ".venv" / ".requirements.sha256").write_text(hashlib.sha256(installed).hexdigest() + "\n")
    return root


def turnstile(project: Path, *args: str, stdin: str = "", cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN_SECRET")}
    for name in ("DATABASE_URL", "DATA_DIR", "LOG_DIR", "PORT"):
        env.pop(name, None)
    env.update(BCRYPT_ROUNDS="4", PATH="/usr/bin:/bin")  # no venv on PATH: `python` alone would be the system's
    return subprocess.run(
        [str(project / "bin" / "turnstile"), *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_the_readme_commands_run_from_anywhere_on_the_project_data(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    added = turnstile(project, "user", "add", "boss", "--roles", "Admin,Editor", stdin="a long admin password\n", cwd=project)
    assert added.returncode == 0, added.stderr
    assert added.stdout == "created boss (User, Editor, Admin)\n"

    listed = turnstile(project, "user", "list", cwd=elsewhere)
    assert (listed.returncode, listed.stdout) == (0, "boss\tUser,Editor,Admin\tsessions=0\temail=-\tfactors=-\n"), listed.stderr
    assert (project / "data").is_dir() and (project / ".env").is_file()
    assert list(elsewhere.iterdir()) == []

    helped = turnstile(project, "--help", cwd=elsewhere)
    assert helped.returncode == 0 and "  PORT " in helped.stdout

    wrong = turnstile(project, "bogus", cwd=elsewhere)
    assert wrong.returncode == 2 and wrong.stdout == "" and "unknown command 'bogus'" in wrong.stderr


def test_the_readme_uses_the_wrapper_for_every_operator_command():
    text = "\n".join((PROJECT / name).read_text() for name in ("README.md", "docs/postgresql.md"))
    assert "bin/turnstile user list" in text and "bin/turnstile store copy" in text
    assert "python server.py user" not in text and "python server.py store" not in text
