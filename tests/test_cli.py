"""`python server.py user ...`: works against a running server, which sees the change without a restart."""

import io
import subprocess
import sys
from pathlib import Path

import pytest

from core import cli
from core.config import Settings
from core.pytest_plugin import DEFAULT_PASSWORD, ApiClient

SERVER = Path(__file__).resolve().parent.parent / "server.py"




@pytest.mark.gen_test(timeout=60)
async def test_user_lifecycle_against_a_running_server(api, app, make_user, run_cli):
    await make_user("alice")
    alice = ApiClient(api.http, api.base_url)
    await alice.login("alice")

    code, out, err = await run_cli("user", "add", "boss", "--roles", "Admin,Editor", stdin="a boss password\n")
    assert code == 0, err
    assert "created boss" in out and "a boss password" not in out + err
    login = await api.post("/auth", json={"user": "boss", "pwd": "a boss password"})
    assert login.code == 200 and login.json()["roles"] == [1984, 2001, 5150]
    assert (await api.get("/users", headers={"Authorization": f"Bearer {login.json()['accessToken']}"})).code == 200

    code, out, _ = await run_cli("user", "list")
    assert code == 0
    assert "alice\tUser\tsessions=1" in out and "boss\tUser,Editor,Admin\tsessions=1" in out
    assert "$2b$" not in out

    assert (await run_cli("user", "roles", "alice", "Editor"))[0] == 0
    assert (await alice.get("/refresh")).json()["roles"] == [1984, 2001]

    assert (await run_cli("user", "revoke", "alice"))[0] == 0
    assert (await alice.get("/refresh")).code == 403
    await alice.login("alice")

    code, out, _ = await run_cli("user", "passwd", "alice", stdin="a fresh password\n")
    assert code == 0 and "sessions ended" in out
    assert (await alice.get("/refresh")).code == 403
    assert (await api.post("/auth", json={"user": "alice", "pwd": "a fresh password"})).code == 200

    assert (await run_cli("user", "delete", "alice"))[0] == 0
    assert (await api.post("/auth", json={"user": "alice", "pwd": "a fresh password"})).code == 401
    assert await app.services.store.collection("auth.users").get("alice") is None


@pytest.mark.gen_test(timeout=60)
async def test_refusals_exit_1_with_a_message(run_cli, make_user):
    await make_user("alice")
    cases = [
        (("user", "add", "alice"), DEFAULT_PASSWORD, "already exists"),
        (("user", "add", "bad name"), DEFAULT_PASSWORD, "Username must be"),
        (("user", "add", "bob"), "short\n", "at least 8 characters"),
        (("user", "add", "bob", "--roles", "Root"), DEFAULT_PASSWORD, "unknown role 'Root'"),
        (("user", "roles", "alice", "Admin,Boss"), "", "unknown role 'Boss'; the roles are User (2001), Editor (1984), Admin (5150)\n"),
        (("user", "add", "bob"), "", "turnstile: no password was given: pipe it as one line on stdin"),
        (("user", "add", "bob"), "\n", "turnstile: no password was given"),
        (("user", "passwd", "alice"), "", "turnstile: no password was given"),
        (("user", "roles", "nobody", "Admin"), "", "no user nobody"),
        (("user", "revoke", "nobody"), "", "no user nobody"),
        (("user", "delete", "nobody"), "", "no user nobody"),
    ]
    for args, stdin, message in cases:
        code, _, err = await run_cli(*args, stdin=stdin)
        assert code == 1 and message in err and "Traceback" not in err, args
        assert err.count("\n") == 1 and "{" not in err and "length" not in err, err


@pytest.mark.parametrize(
    "args, message",
    [
        (("bogus",), "turnstile: unknown command 'bogus'; the commands are user, keys, store (without a command, server.py runs the server)"),
        (("user", "bogus"), "turnstile: unknown command 'user bogus'; the user commands are add, list, roles, passwd, revoke, delete, mfa-reset"),
        (("store", "bogus"), "turnstile: unknown command 'store bogus'; the store commands are copy"),
        (("user",), "turnstile: server.py user needs a command: add, list, roles, passwd, revoke, delete, mfa-reset"),
        (("--port", "80"), "turnstile: unknown option '--port'; server.py takes --help, or a command: user, keys, store"),
    ],
)
def test_an_unknown_or_missing_command_is_named_with_the_commands_there_are(tmp_path, args, message):
    done = subprocess.run([sys.executable, str(SERVER), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", message + "\n")


def test_help_lists_every_setting_with_its_default(tmp_path):
    done = subprocess.run([sys.executable, str(SERVER), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    listed = dict(line.split(None, 1) for line in done.stdout.split("settings (", 1)[1].splitlines()[1:])
    assert listed["PORT"] == "3500" and listed["ACCESS_TOKEN_TTL"] == "15m" and listed["WORKERS"] == "1"
    assert listed["DATABASE_URL"] == "(unset)" and listed["ACCESS_TOKEN_SECRET"] == "(generated into .env on first run)"
    # Every setting the README documents is listed, and nothing else (plugin settings have a line of their own).
    table = (SERVER.parent / "README.md").read_text().split("## Configuration", 1)[1].split("\n\n## ", 1)[0]
    documented = {
        name.strip(" `")
        for row in table.splitlines() if row.startswith("| `")
        for name in row.split("|")[1].split(",")
    }
    assert set(listed) - {"TURNSTILE_<PLUGIN>_<SETTING>"} == {n for n in documented if not n.startswith("TURNSTILE_")}


def test_the_defaults_help_lists_are_the_ones_applied():
    secrets = {name: name * 2 for name in cli.SECRET_NAMES}
    plain = Settings.from_env(secrets)
    for name, default in cli.environment_defaults():
        if name not in cli.SECRET_NAMES:
            assert Settings.from_env({**secrets, name: default}) == plain, name


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_password_is_prompted_on_a_terminal(monkeypatch, turnstile_settings):
    answers = iter(["typed at the prompt", "typed at the prompt"])
    prompts = []
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: prompts.append(prompt) or next(answers))
    assert cli.read_password(turnstile_settings, FakeTTY("ignored\n")) == "typed at the prompt"
    assert prompts == ["Password: ", "Again: "]


def test_prompted_passwords_must_match(monkeypatch, turnstile_settings):
    answers = iter(["one password", "another one"])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: next(answers))
    with pytest.raises(cli.CLIError, match="differ"):
        cli.read_password(turnstile_settings, FakeTTY())


def test_password_is_read_from_stdin_when_piped(turnstile_settings):
    assert cli.read_password(turnstile_settings, io.StringIO("from a pipe\nsecond line\n")) == "from a pipe"
