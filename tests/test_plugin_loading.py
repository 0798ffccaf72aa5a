"""Plugin discovery: drop-in folders, installed entry points, PLUGINS, load order, and one-line start-up errors."""

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_kit import GOOD_HANDLER, PROJECT, install_distribution, write_plugin

from core.app import create_app
from core.loader import find_plugins, select
from core.plugin import PluginError

#: The plugins in the project's plugins/ folder, read from the folder itself (a drop-in plugin added as
#: docs/plugins.md says is one of them), not a list that a new plugin would contradict.
BUILT_IN = sorted(
    p.name for p in (PROJECT / "plugins").iterdir() if (p / "__init__.py").is_file() and not p.name.startswith(("_", "."))
)


def without(*names: str) -> list[str]:
    return [name for name in BUILT_IN if name not in names]


HELLO_INIT = """
from .handlers import Hello
routes = [(r"/{route}", Hello)]
"""


def hello_plugin(root: Path, name: str, route: str | None = None) -> Path:
    return write_plugin(root, name, HELLO_INIT.format(route=route or name), handlers=GOOD_HANDLER)


def start(settings, plugins_dir: Path, **kw):
    """Build the app synchronously (raising what start-up raises), then close its services."""

    async def started():
        app = await create_app(settings, plugins_dir, **kw)
        await app.services.close()
        return app

    return asyncio.run(started())


def start_error(settings, plugins_dir: Path, **kw) -> str:
    with pytest.raises(PluginError) as info:
        start(settings, plugins_dir, **kw)
    message = str(info.value)
    assert "\n" not in message, "start-up errors are one line"
    return message


@pytest.fixture
def site_packages(tmp_path, monkeypatch):
    """A fresh directory on sys.path, like an installation target; forgets modules imported from it."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    before = set(sys.modules)
    yield site
    for name in set(sys.modules) - before:
        if str(site) in str(getattr(sys.modules[name], "__file__", "") or ""):
            del sys.modules[name]


def test_a_dropped_in_package_is_loaded_with_nothing_else_to_edit(tmp_path, turnstile_settings):
    hello_plugin(tmp_path / "plugins", "hello")
    app = start(turnstile_settings, tmp_path / "plugins")
    assert [p.name for p in app.plugins] == ["hello"]
    assert "/hello" in app.openapi["paths"]


def test_an_installed_distribution_with_the_entry_point_is_loaded(tmp_path, site_packages, turnstile_settings):
    package = hello_plugin(tmp_path / "src", "turnstile_greeter", route="greet")
    install_distribution(site_packages, package, "turnstile-greeter", "1.2.3", {"greeter": "turnstile_greeter"})
    (tmp_path / "plugins").mkdir()
    app = start(turnstile_settings, tmp_path / "plugins")
    [ctx] = app.plugins
    assert (ctx.name, ctx.source) == ("greeter", "distribution turnstile-greeter 1.2.3")
    assert ctx.path == site_packages / "turnstile_greeter" / "__init__.py"
    assert "/greet" in app.openapi["paths"]


def test_load_order_is_alphabetical_by_name_whatever_the_source(tmp_path, site_packages):
    for name in ("zeta", "beta"):
        hello_plugin(tmp_path / "plugins", name)
    package = hello_plugin(tmp_path / "src", "alpha_dist", route="alpha")
    install_distribution(site_packages, package, "alpha-dist", "1", {"gamma": "alpha_dist"})
    assert [c.name for c in find_plugins(tmp_path / "plugins")] == ["beta", "gamma", "zeta"]


@pytest.mark.parametrize(
    "spec, loaded",
    [
        ("", BUILT_IN),
        ("*", BUILT_IN),
        ("-employees", without("employees")),
        ("*, -employees", without("employees")),
        ("site,auth", ["auth", "site"]),
        ("site, auth, -auth", ["site"]),
    ],
)
def test_plugins_setting_enables_and_disables_by_name(spec, loaded):
    assert [c.name for c in find_plugins(PROJECT / "plugins", spec, installed=False)] == loaded


def test_plugins_setting_naming_an_unknown_plugin_is_an_error():
    with pytest.raises(PluginError, match=r"plugin 'emplyees' \(PLUGINS=-emplyees\): PLUGINS names a plugin that was not found"):
        find_plugins(PROJECT / "plugins", "-emplyees", installed=False)


def test_disabled_plugin_routes_are_not_served(turnstile_settings):
    app = start(turnstile_settings.with_changes(plugins="-employees"), PROJECT / "plugins")
    assert "/employees" not in app.openapi["paths"]
    assert "/register" in app.openapi["paths"]


def test_two_plugins_claiming_one_route_names_both(tmp_path, turnstile_settings):
    first = hello_plugin(tmp_path / "plugins", "first", route="same")
    second = hello_plugin(tmp_path / "plugins", "second", route="same")
    message = start_error(turnstile_settings, tmp_path / "plugins")
    assert message == (
        f"plugin 'second' ({second / '__init__.py'}): route '/same' is already claimed by plugin 'first' ({first / '__init__.py'})"
    )


def test_a_plugin_cannot_claim_the_core_openapi_route(tmp_path, turnstile_settings):
    hello_plugin(tmp_path / "plugins", "thief", route="openapi.json")
    assert "route '/openapi.json' is already claimed by the core" in start_error(turnstile_settings, tmp_path / "plugins")


def test_a_plugin_both_dropped_in_and_installed_is_refused(tmp_path, site_packages, turnstile_settings):
    folder = hello_plugin(tmp_path / "plugins", "greeter")
    package = hello_plugin(tmp_path / "src", "turnstile_greeter2", route="greet")
    install_distribution(site_packages, package, "turnstile-greeter", "2.0", {"greeter": "turnstile_greeter2"})
    message = start_error(turnstile_settings, tmp_path / "plugins")
    assert message.startswith(f"plugin 'greeter' ({folder / '__init__.py'}): found twice: ")
    assert f"plugins/ ({folder / '__init__.py'})" in message
    assert f"distribution turnstile-greeter 2.0 ({site_packages / 'turnstile_greeter2' / '__init__.py'})" in message
    # Disabling the name removes the ambiguity.
    start(turnstile_settings.with_changes(plugins="-greeter"), tmp_path / "plugins")


def test_a_plugin_that_fails_to_import_names_its_file_and_line(tmp_path, turnstile_settings):
    folder = write_plugin(tmp_path / "plugins", "broken", "from .handlers import Hello\nroutes = []\n", handlers="import not_a_module_anywhere\n")
    message = start_error(turnstile_settings, tmp_path / "plugins")
    assert message.startswith(f"plugin 'broken' ({folder / '__init__.py'}): failed to import: ModuleNotFoundError")
    assert f"at {folder / 'handlers.py'}:1" in message


def test_a_syntax_error_is_reported_on_one_line(tmp_path, turnstile_settings):
    folder = write_plugin(tmp_path / "plugins", "typo", "routes = [\n  (r'/x', X\n")
    message = start_error(turnstile_settings, tmp_path / "plugins")
    assert message.startswith(f"plugin 'typo' ({folder / '__init__.py'}): failed to import: SyntaxError")


def test_an_installed_plugin_that_fails_to_import_names_its_file(tmp_path, site_packages, turnstile_settings):
    package = write_plugin(tmp_path / "src", "turnstile_bad", "raise RuntimeError('no config')\n")
    install_distribution(site_packages, package, "turnstile-bad", "1", {"bad": "turnstile_bad"})
    (tmp_path / "plugins").mkdir()
    message = start_error(turnstile_settings, tmp_path / "plugins")
    assert message.startswith(f"plugin 'bad' ({site_packages / 'turnstile_bad' / '__init__.py'}): failed to import: RuntimeError: no config")


def test_a_plugin_without_routes_is_refused(tmp_path, turnstile_settings):
    folder = write_plugin(tmp_path / "plugins", "empty", '"""Nothing here."""\n')
    message = start_error(turnstile_settings, tmp_path / "plugins")
    assert message.startswith(f"plugin 'empty' ({folder / '__init__.py'}): declares no `routes`")


def test_a_failing_setup_names_the_plugin(tmp_path, turnstile_settings):
    folder = write_plugin(
        tmp_path / "plugins", "seeder", "routes = []\nasync def setup(plugin):\n    raise ValueError('cannot seed')\n"
    )
    message = start_error(turnstile_settings, tmp_path / "plugins")
    assert message.startswith(f"plugin 'seeder' ({folder / '__init__.py'}): setup failed: ValueError: cannot seed at ")


def test_routes_may_be_a_function_of_the_plugin_context(tmp_path, turnstile_settings, monkeypatch):
    write_plugin(
        tmp_path / "plugins",
        "dyn",
        "from .handlers import Hello\ndef routes(plugin):\n    return [('/' + plugin.config['PATH'], Hello)]\n",
        handlers=GOOD_HANDLER,
    )
    settings = turnstile_settings.with_changes(extra={"TURNSTILE_DYN_PATH": "custom"})
    app = start(settings, tmp_path / "plugins")
    assert app.plugins[0].config == {"PATH": "custom"}
    assert "/custom" in app.openapi["paths"]


def test_the_server_stops_with_the_one_line_error(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "ACCESS_TOKEN_SECRET": "a" * 64, "REFRESH_TOKEN_SECRET": "r" * 64, "PLUGINS": "nope"}
    result = subprocess.run(
        [sys.executable, str(PROJECT / "server.py")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"turnstile: plugin 'nope' (PLUGINS=nope): PLUGINS names a plugin that was not found (found: {', '.join(BUILT_IN)})"
    ]


def test_select_is_independent_of_discovery_order(tmp_path):
    a = hello_plugin(tmp_path / "p", "a")
    b = hello_plugin(tmp_path / "p", "b")
    from core.loader import Candidate

    cands = [Candidate("b", b / "__init__.py", "plugins/", folder=b), Candidate("a", a / "__init__.py", "plugins/", folder=a)]
    assert [c.name for c in select(cands, "")] == ["a", "b"]
