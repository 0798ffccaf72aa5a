"""What a plugin is given, and what it declares.

A plugin is a Python package. Its ``__init__.py`` declares:

* ``routes``: a list of ``(pattern, HandlerClass)`` or
  ``(pattern, HandlerClass, kwargs)`` tuples, or a function taking the
  `PluginContext` and returning such a list. Every handler must derive from
  `core.base.BaseHandler`, so it is protected unless it sets ``public = True``.
* ``setup(plugin)`` (optional, sync or async): start-up work such as seeding.
* ``default_handler`` (optional): the handler for paths no route matches.
  At most one plugin may declare it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from .app import Services
    from .jsondb import Namespace


@dataclass
class PluginContext:
    """Everything a plugin may use; handed to its handlers through ``initialize``."""

    name: str
    path: Path
    module: ModuleType
    services: "Services"
    db: "Namespace"
    log: logging.Logger
    config: Mapping[str, str] = field(default_factory=dict)

    @property
    def settings(self) -> Any:
        return self.services.settings


class PluginError(RuntimeError):
    """A plugin cannot be loaded; the message names the plugin, its file and the cause."""

    def __init__(self, name: str, path: Path | str, cause: str) -> None:
        super().__init__(f"plugin {name!r} ({path}): {cause}")
        self.plugin = name
        self.path = Path(path)
        self.cause = cause
