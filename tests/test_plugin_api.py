"""The public plugin API: core.plugin is all a plugin imports; throttle, metrics and typed settings work through it."""

import ast
import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_kit import PROJECT, link_project_plugins, write_plugin
from prometheus_client import generate_latest

import core.plugin
from core.app import create_app
from core.metrics import Metrics
from core.plugin import PluginError

BUILT_IN = ["auth", "employees", "users", "health", "metrics", "mfa", "recovery", "site"]
PLUGIN_SOURCES = [PROJECT / "plugins" / name for name in BUILT_IN] + [PROJECT / "examples" / "notes" / "turnstile_notes"]

CODES_INIT = """
from dataclasses import dataclass

from core.plugin import PluginContext, setting

from .handlers import CheckHandler


@dataclass(frozen=True)
class Config:
    secret: str = "open sesame"
    max_tries: int = setting(3, doc="wrong codes before a lock")
    lockout: int = 60
    ratio: float = 0.5
    verbose: bool = False
    tags: list[str] = setting([], doc="comma list")


def routes(plugin: PluginContext) -> list:
    config: Config = plugin.config
    checks = plugin.metrics.counter("turnstile_codes_checked", "Codes checked, by outcome.", ["outcome"])
    throttle = plugin.throttle(window=600, lockout=config.lockout, collection="tries")
    return [(r"/codes/check", CheckHandler, {"config": config, "throttle": throttle, "checks": checks})]
"""

CODES_HANDLERS = """
from core.plugin import APIError, BaseHandler, error_response, json_body, public


@public
class CheckHandler(BaseHandler):
    openapi = {
        "post": {
            "requestBody": json_body(
                {"type": "object", "properties": {"code": {"type": "string", "maxLength": 64}}, "required": ["code"], "additionalProperties": False}
            ),
            "responses": {"204": {"description": "Right."}, "401": error_response("Wrong."), "429": error_response("Locked.")},
        }
    }

    def initialize(self, plugin=None, config=None, throttle=None, checks=None):
        super().initialize(plugin)
        self.config, self.throttle, self.checks = config, throttle, checks

    async def post(self):
        code = self.json_body()["code"]
        key = f"addr:{self.request.remote_ip}"
        wait, attempt = await self.throttle.begin({key: self.config.max_tries}, key)
        if not wait:
            if code == self.config.secret:
                wait = await self.throttle.succeeded(attempt)
            else:
                wait = await self.throttle.failed(attempt) or -1
        if wait > 0:
            self.checks.labels("locked").inc()
            raise APIError(429, "Too many tries.", headers={"Retry-After": str(wait)})
        if wait < 0:
            self.checks.labels("wrong").inc()
            raise APIError(401, "Wrong code.")
        self.checks.labels("right").inc()
        self.set_status(204)
        self.finish()
"""


@pytest.fixture(scope="module")
def codes_plugin(tmp_path_factory) -> Path:
    return write_plugin(tmp_path_factory.mktemp("codes"), "codes", CODES_INIT, handlers=CODES_HANDLERS)


@pytest.fixture
def extra_plugins(codes_plugin):
    return {"codes": codes_plugin}


def start_error(settings, plugins_dir: Path) -> str:
    async def started():
        app = await create_app(settings, plugins_dir)
        await app.services.close()

    with pytest.raises(PluginError) as info:
        asyncio.run(started())
    message = str(info.value)
    assert "\n" not in message, "start-up errors are one line"
    return message


# -- only core.plugin --------------------------------------------------------------------------


def core_imports(folder: Path) -> list[str]:
    """Every ``core`` module imported anywhere in the package's files (functions included), as ``file:line module``."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [f"{path.relative_to(folder.parent)}:{node.lineno} {name}" for name in names if name == "core" or name.startswith("core.")]
    return found


@pytest.mark.parametrize("folder", PLUGIN_SOURCES, ids=lambda p: p.name)
def test_plugins_import_nothing_from_core_but_core_plugin(folder):
    imports = core_imports(folder)
    assert imports, "the check found no import of core.plugin: it reads the wrong files"
    assert [i for i in imports if not i.endswith(" core.plugin")] == []


def test_the_import_check_sees_other_core_imports(tmp_path):
    folder = write_plugin(tmp_path, "sneaky", "from core.plugin import BaseHandler\n", handlers="def f():\n    import core.store\n")
    assert [i.split()[1] for i in core_imports(folder)] == ["core.plugin", "core.store"]


def test_every_public_name_is_documented():
    docs = (PROJECT / "docs" / "plugins.md").read_text()
    missing = [name for name in core.plugin.__all__ if f"`{name}" not in docs and f"`@{name}" not in docs]
    assert missing == []
    assert all(hasattr(core.plugin, name) for name in core.plugin.__all__)


# -- typed settings ------------------------------------------------------------------------------


def test_settings_have_their_defaults(app):
    config = next(p for p in app.plugins if p.name == "codes").config
    assert (config.secret, config.max_tries, config.lockout, config.ratio, config.verbose, config.tags) == (
        "open sesame", 3, 60, 0.5, False, []
    )


@pytest.mark.settings(
    extra={
        "TURNSTILE_CODES_MAX_TRIES": "5",
        "TURNSTILE_CODES_RATIO": "0.25",
        "TURNSTILE_CODES_VERBOSE": "yes",
        "TURNSTILE_CODES_TAGS": "a, b,,c",
    }
)
def test_settings_are_read_with_their_types(app):
    config = next(p for p in app.plugins if p.name == "codes").config
    assert (config.max_tries, config.ratio, config.verbose, config.tags) == (5, 0.25, True, ["a", "b", "c"])


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("TURNSTILE_CODES_MAX_TRIES", "three", "TURNSTILE_CODES_MAX_TRIES: expected a whole number, got 'three'"),
        ("TURNSTILE_CODES_VERBOSE", "maybe", "TURNSTILE_CODES_VERBOSE: expected true or false, got 'maybe'"),
        ("TURNSTILE_CODES_RATIO", "half", "TURNSTILE_CODES_RATIO: expected a number, got 'half'"),
        ("TURNSTILE_CODES_MAX_TRIE", "3", "TURNSTILE_CODES_MAX_TRIE names no setting of the plugin (settings: TURNSTILE_CODES_LOCKOUT, "),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_plugin_and_the_setting(tmp_path, turnstile_settings, codes_plugin, variable, value, expected):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "codes").symlink_to(codes_plugin, target_is_directory=True)
    message = start_error(turnstile_settings.with_changes(extra={variable: value}), tmp_path / "plugins")
    assert message.startswith("plugin 'codes' (")
    assert expected in message


def test_a_required_setting_that_is_missing_stops_start_up(tmp_path, turnstile_settings):
    init = "from dataclasses import dataclass\n@dataclass\nclass Config:\n    url: str\nroutes = []\n"
    write_plugin(tmp_path / "plugins", "needy", init)
    assert start_error(turnstile_settings, tmp_path / "plugins").endswith(": TURNSTILE_NEEDY_URL is required")


def test_a_plugin_whose_name_extends_another_keeps_its_own_settings(tmp_path, turnstile_settings):
    """``TURNSTILE_NOTES_EXTRA_LIMIT`` belongs to ``notes_extra``: ``notes`` neither reads nor refuses it."""
    config = "from dataclasses import dataclass\n@dataclass\nclass Config:\n    limit: int = 1\nroutes = []\n"
    write_plugin(tmp_path / "plugins", "notes", config)
    write_plugin(tmp_path / "plugins", "notes_extra", config)

    async def started():
        app = await create_app(
            turnstile_settings.with_changes(extra={"TURNSTILE_NOTES_LIMIT": "2", "TURNSTILE_NOTES_EXTRA_LIMIT": "3"}), tmp_path / "plugins"
        )
        try:
            return {p.name: p.config.limit for p in app.plugins if p.name.startswith("notes")}
        finally:
            await app.services.close()

    assert asyncio.run(started()) == {"notes": 2, "notes_extra": 3}


@pytest.mark.parametrize(
    "config, value, expected",
    [
        ("    level: int = setting(1, parse=lambda text: {'low': 1}[text])\n", "high", ": TURNSTILE_PICKY_LEVEL: 'high'"),
        (
            "    level: int = 1\n    def __post_init__(self):\n        if self.level > 3:\n            raise ValueError('level is at most 3')\n",
            "7",
            ": Config: level is at most 3",
        ),
    ],
    ids=["parse raises KeyError", "__post_init__ refuses"],
)
def test_any_failure_reading_a_setting_is_one_line(tmp_path, turnstile_settings, config, value, expected):
    init = "from dataclasses import dataclass\nfrom core.plugin import setting\n@dataclass\nclass Config:\n" + config + "routes = []\n"
    write_plugin(tmp_path / "plugins", "picky", init)
    message = start_error(turnstile_settings.with_changes(extra={"TURNSTILE_PICKY_LEVEL": value}), tmp_path / "plugins")
    assert message.startswith("plugin 'picky' (") and message.endswith(expected)


NAMED_CONFIG = """
from dataclasses import dataclass
from core.plugin import duration, setting
@dataclass(frozen=True)
class Config:
    host: str = setting("", env="MAILER_HOST")
    password: str = setting("", env="MAILER_PASSWORD", secret=True)
    ttl: int = setting(1800, env="MAILER_TTL", parse=duration)
    retries: int = 3
routes = []
"""


def loaded_config(settings, plugins_dir: Path, name: str = "mailer"):
    async def started():
        app = await create_app(settings, plugins_dir)
        try:
            return next(p for p in app.plugins if p.name == name).config
        finally:
            await app.services.close()

    return asyncio.run(started())


def test_a_setting_may_name_its_own_variable(tmp_path, turnstile_settings):
    """``setting(env="SMTP_HOST")`` reads that conventional name, not ``TURNSTILE_<PLUGIN>_*``; blank is unset."""
    write_plugin(tmp_path / "plugins", "mailer", NAMED_CONFIG)
    extra = {"MAILER_HOST": "mail.example.com", "MAILER_PASSWORD": "hunter2-hunter2", "MAILER_TTL": "2h", "TURNSTILE_MAILER_RETRIES": "5"}
    config = loaded_config(turnstile_settings.with_changes(extra=extra), tmp_path / "plugins")
    assert (config.host, config.password, config.ttl, config.retries) == ("mail.example.com", "hunter2-hunter2", 7200, 5)
    assert "hunter2" not in repr(config)
    blank = loaded_config(turnstile_settings.with_changes(extra={"MAILER_TTL": " "}), tmp_path / "plugins")
    assert (blank.host, blank.ttl) == ("", 1800)


def test_a_named_variable_is_not_also_read_with_the_prefix(tmp_path, turnstile_settings):
    write_plugin(tmp_path / "plugins", "mailer", NAMED_CONFIG)
    message = start_error(turnstile_settings.with_changes(extra={"TURNSTILE_MAILER_HOST": "x"}), tmp_path / "plugins")
    assert "TURNSTILE_MAILER_HOST names no setting of the plugin" in message


def test_a_bad_named_setting_names_its_variable(tmp_path, turnstile_settings):
    write_plugin(tmp_path / "plugins", "mailer", NAMED_CONFIG)
    message = start_error(turnstile_settings.with_changes(extra={"MAILER_TTL": "soon"}), tmp_path / "plugins")
    assert message.endswith(": MAILER_TTL: expected a duration such as 30s, 15m, 2h or 2d, got 'soon'")


def test_plugins_see_the_environment_but_never_the_secrets():
    from core.config import Settings

    env = {"ACCESS_TOKEN_SECRET": "a" * 64, "REFRESH_TOKEN_SECRET": "r" * 64, "SMTP_HOST": "mail", "TURNSTILE_X_Y": "1"}
    settings = Settings.from_env(env)
    assert settings.extra == {"SMTP_HOST": "mail", "TURNSTILE_X_Y": "1"}
    assert "SMTP_HOST" not in repr(settings)


def test_the_server_exits_1_with_the_one_line_setting_error(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "ACCESS_TOKEN_SECRET": "a" * 64,
        "REFRESH_TOKEN_SECRET": "r" * 64,
        "TURNSTILE_EMPLOYEES_WRITE_ROLES": "Editor, Boss",
    }
    result = subprocess.run([sys.executable, str(PROJECT / "server.py")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert re.match(r"turnstile: plugin 'employees' \(.*\): TURNSTILE_EMPLOYEES_WRITE_ROLES: unknown role 'Boss'", lines[0]), lines


# -- the throttle and metrics, as a plugin uses them ----------------------------------------------


@pytest.mark.gen_test
@pytest.mark.settings(extra={"TURNSTILE_CODES_MAX_TRIES": "2"})
async def test_a_plugin_throttles_its_own_keys_with_its_own_limits(api, app):
    assert (await api.post("/codes/check", json={"code": "open sesame"})).code == 204
    for _ in range(2):
        assert (await api.post("/codes/check", json={"code": "guess"})).code == 401
    locked = await api.post("/codes/check", json={"code": "open sesame"})
    assert locked.code == 429 and int(locked.headers["Retry-After"]) > 0
    stored = await app.services.store.collection("codes.tries").all()
    assert len(stored) == 1 and stored[0]["locked_until"] > 0  # in the plugin's namespace, shared by every worker
    assert await app.services.store.collection("auth.throttle").all() == []  # the login throttle is another


@pytest.mark.gen_test
async def test_a_plugin_metric_is_served_at_metrics(api):
    await api.post("/codes/check", json={"code": "open sesame"})
    await api.post("/codes/check", json={"code": "guess"})
    text = (await api.get("/metrics")).text
    assert 'turnstile_codes_checked_total{outcome="right"} 1.0' in text
    assert 'turnstile_codes_checked_total{outcome="wrong"} 1.0' in text


def test_a_metric_name_taken_already_is_a_plugin_error(tmp_path, turnstile_settings):
    link_project_plugins(tmp_path / "plugins", "auth")
    init = "def routes(plugin):\n    plugin.metrics.counter('turnstile_logins', 'mine')\n    return []\n"
    write_plugin(tmp_path / "plugins", "copycat", init)
    message = start_error(turnstile_settings, tmp_path / "plugins")
    assert message.startswith("plugin 'copycat' (") and "metric 'turnstile_logins'" in message


@pytest.mark.gen_test
async def test_login_and_refresh_metrics_belong_to_the_auth_plugin(api, make_user):
    """The core defines none of them; the auth plugin registers them, every outcome present from the start."""
    core_only = generate_latest(Metrics().registry).decode()
    assert "turnstile_logins" not in core_only and "turnstile_refresh" not in core_only
    text = (await api.get("/metrics")).text
    for outcome in ("ok", "bad_credentials", "locked", "overloaded"):
        assert f'turnstile_logins_total{{outcome="{outcome}"}} 0.0' in text
    for outcome in ("rotated", "grace", "reused", "unknown"):
        assert f'turnstile_refresh_total{{outcome="{outcome}"}} 0.0' in text


# -- periodic work ---------------------------------------------------------------------------------

TICKER = """
from core.plugin import PluginContext, StoreUnavailable

routes = []
runs = []


async def setup(plugin: PluginContext) -> None:
    async def tick() -> None:
        runs.append(len(runs))
        if len(runs) == 2:
            raise StoreUnavailable("the database is away")
        if len(runs) == 3:
            raise RuntimeError("a bug in the plugin")

    plugin.every(0.02, tick, "ticking")
"""


def test_every_runs_on_through_failures_names_them_and_stops_at_close(tmp_path, turnstile_settings, caplog):
    write_plugin(tmp_path / "plugins", "ticker", TICKER)

    async def run() -> list:
        app = await create_app(turnstile_settings, tmp_path / "plugins")
        module = next(p for p in app.plugins if p.name == "ticker").module
        try:
            while len(module.runs) < 5:
                await asyncio.sleep(0.01)
        finally:
            await app.services.close()
        seen = len(module.runs)
        await asyncio.sleep(0.1)
        return [seen, len(module.runs)]

    seen, later = asyncio.run(run())
    assert seen == later, "no run after the app closed"
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "turnstile.plugins.ticker"]
    assert ("WARNING", "ticking skipped: the database is away") in records
    assert ("ERROR", "ticking failed") in records

