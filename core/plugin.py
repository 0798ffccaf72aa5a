"""The plugin-author API: everything a plugin imports comes from here.

A plugin is a Python package, found in ``plugins/`` or installed as a
distribution declaring the entry point group ``turnstile.plugins``. Its
``__init__.py`` (or the module the entry point names) declares:

* ``routes`` (required): a list of ``(pattern, HandlerClass)`` or
  ``(pattern, HandlerClass, kwargs)`` tuples, or a function taking the
  `PluginContext` and returning such a list.
* ``setup(plugin)`` (optional, sync or async): start-up work such as seeding.
* ``default_handler`` (optional): the handler for paths no route matches.
  At most one plugin may declare it.

Every handler derives from `BaseHandler` and is protected (needs a valid
access token) unless the class itself is marked ``@public``. Methods may be
guarded further with ``@require_roles(ADMIN, ...)``. A handler describes its
operations for ``/openapi.json`` in its ``openapi`` class attribute.
See docs/plugins.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Mapping

from .base import BaseHandler, protected, public
from .errors import APIError
from .roles import ADMIN, EDITOR, ROLES, USER, require_roles

if TYPE_CHECKING:
    from .app import Services
    from .jsondb import Namespace

__all__ = [
    "ADMIN",
    "APIError",
    "BaseHandler",
    "EDITOR",
    "PluginContext",
    "PluginError",
    "ROLES",
    "USER",
    "protected",
    "public",
    "require_roles",
]


@dataclass
class PluginContext:
    """Everything a plugin may use; handed to its handlers as ``self.plugin``.

    ``db`` is the plugin's own namespace in the store (collection ``"notes"``
    of plugin ``notes`` is stored as ``notes.notes``); ``config`` holds the
    ``TURNSTILE_<NAME>_*`` environment variables with that prefix removed.
    """

    name: str
    path: Path
    module: ModuleType
    services: "Services"
    db: "Namespace"
    log: logging.Logger
    config: Mapping[str, str] = field(default_factory=dict)
    source: str = "plugins/"

    @property
    def settings(self) -> Any:
        return self.services.settings


class PluginError(RuntimeError):
    """A plugin cannot be loaded; the one-line message names the plugin, its file and the cause."""

    def __init__(self, name: str, path: Path | str, cause: str) -> None:
        cause = " ".join(str(cause).split())
        super().__init__(f"plugin {name!r} ({path}): {cause}")
        self.plugin = name
        self.path = Path(path)
        self.cause = cause
