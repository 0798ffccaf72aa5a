"""Typed plugin settings: a plugin declares them as a dataclass, the loader reads them from the environment.

A plugin's module declares ``Config``, a dataclass whose fields are its
settings, each with a type and (usually) a default::

    @dataclass(frozen=True)
    class Config:
        max_notes: int = setting(100, doc="notes per user")
        greeting: str = "hello"

Field ``max_notes`` of plugin ``notes`` is read from
``TURNSTILE_NOTES_MAX_NOTES``. The loader builds the instance once, at
start-up, and hands it to the plugin as ``plugin.config``. A value that does
not parse, a required setting that is missing, or a ``TURNSTILE_NOTES_*``
variable that names no setting stops start-up with one `PluginError` line
naming the plugin and the variable.

Types read from text: ``str``, ``int``, ``float``, ``bool`` (``1/true/yes/on``
or ``0/false/no/off``), and ``list[str]``/``tuple[str, ...]``/
``frozenset[str]`` (comma lists, blanks dropped); any other type needs a
``parse`` function (``setting(..., parse=fn)``) that takes the text and
returns the value or raises ValueError with a short reason; `duration` reads
``30s``/``15m``/``2h``/``2d``.

A setting with a name other software already uses (``SMTP_HOST``) may keep it:
``setting("", env="SMTP_HOST")`` reads that variable instead of the prefixed
one. ``secret=True`` keeps a value (a password) out of the Config's repr.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .plugin_context import PluginError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NO_DEFAULT: Any = dataclasses.MISSING
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def setting(
    default: Any = _NO_DEFAULT,
    *,
    parse: Callable[[str], Any] | None = None,
    doc: str = "",
    env: str | None = None,
    secret: bool = False,
) -> Any:
    """A `Config` field: its ``default`` (none: the setting is required), an optional ``parse``, a ``doc``.

    ``env`` names the variable to read instead of ``TURNSTILE_<PLUGIN>_<FIELD>``
    (for a name that is a convention, such as ``SMTP_HOST``); ``secret`` hides
    the value from the Config's repr.
    """
    if env is not None and not _ENV_NAME.match(env):
        raise ValueError(f"setting env={env!r}: expected an upper-case variable name")
    metadata = {"parse": parse, "doc": doc, "env": env}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata, repr=not secret)
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


def duration(text: str) -> int:
    """Seconds from ``90``, ``30s``, ``15m``, ``2h`` or ``2d``: a `setting` ``parse`` for durations."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"expected a duration such as 30s, 15m, 2h or 2d, got {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def env_prefix(plugin: str) -> str:
    return f"TURNSTILE_{plugin.upper()}_"


def raw_config(plugin: str, env: Mapping[str, str], others: Iterable[str] = ()) -> dict[str, str]:
    """``TURNSTILE_<NAME>_<KEY>`` variables as ``{KEY: value}``: what a plugin without `Config` gets.

    Variables of another plugin whose name extends this one's (``TURNSTILE_AUTH_RECOVERY_*`` of
    ``auth_recovery``, beside ``auth``) are that plugin's, not this one's.
    """
    prefix = env_prefix(plugin)
    longer = [env_prefix(o) for o in others if o != plugin and env_prefix(o).startswith(prefix)]
    return {k[len(prefix) :]: v for k, v in env.items() if k.startswith(prefix) and not any(k.startswith(p) for p in longer)}


def load_config(plugin: str, path: Path | str, declared: type, env: Mapping[str, str], others: Iterable[str] = ()) -> Any:
    """An instance of the plugin's ``Config`` dataclass, read from ``env``; a `PluginError` for any bad value.

    ``others``: the names of the other plugins, whose variables are theirs (see `raw_config`).
    """
    if not (isinstance(declared, type) and dataclasses.is_dataclass(declared)):
        raise PluginError(plugin, path, "`Config` must be a dataclass (see docs/plugins.md, Settings)")
    try:
        hints = typing.get_type_hints(declared)
    except Exception as exc:
        raise PluginError(plugin, path, f"`Config` has a type that cannot be resolved: {exc}") from None
    prefix = env_prefix(plugin)
    given = raw_config(plugin, env, others)
    fields = {f.name.upper(): f for f in dataclasses.fields(declared) if f.init and not f.metadata.get("env")}
    named = {f.metadata["env"]: f for f in dataclasses.fields(declared) if f.init and f.metadata.get("env")}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        known = ", ".join(prefix + name for name in sorted(fields)) or "none"
        raise PluginError(plugin, path, f"{prefix}{unknown[0]} names no setting of the plugin (settings: {known})")
    values = {}
    # (variable, key in its source, field, source): prefixed names from `given`, declared ones from `env`
    sources = [(prefix + key, key, f, given) for key, f in fields.items()]
    sources += [(name, name, f, env) for name, f in named.items()]
    for variable, key, f, source in sources:
        if key not in source or (source is env and not source[key].strip()):  # blank like unset, as core settings
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise PluginError(plugin, path, f"{variable} is required")
            continue
        parse = f.metadata.get("parse") or _parser(hints.get(f.name, str))
        if parse is None:
            raise PluginError(plugin, path, f"{variable}: type {hints.get(f.name)} cannot be read from text; give it a parse function")
        try:
            values[f.name] = parse(source[key])
        except Exception as exc:  # a parse function's own mistake is still one line naming the variable
            raise PluginError(plugin, path, f"{variable}: {exc or type(exc).__name__}") from None
    try:
        return declared(**values)
    except Exception as exc:  # checks in Config.__post_init__
        raise PluginError(plugin, path, f"Config: {exc or type(exc).__name__}") from None


def _parser(kind: Any) -> Callable[[str], Any] | None:
    if kind is str:
        return str
    if kind is bool:
        return _bool
    if kind is int:
        return lambda text: _number(int, "a whole number", text)
    if kind is float:
        return lambda text: _number(float, "a number", text)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (list, tuple, frozenset, set) and args and args[0] is str:
        return lambda text: origin(part.strip() for part in text.split(",") if part.strip())
    return None


def _bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _number(kind: Callable[[str], Any], what: str, text: str) -> Any:
    try:
        return kind(text.strip())
    except ValueError:
        raise ValueError(f"expected {what}, got {text!r}") from None
