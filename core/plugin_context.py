"""What a loaded plugin is given: its `PluginContext`, handed to its handlers as ``self.plugin``.

A module of its own so that `core.base` can name it without importing the
plugin-author API (`core.plugin`), which imports `core.base`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Mapping

from .config import Settings
from .services import Services
from .store import Namespace


@dataclass
class PluginContext:
    """Everything a plugin may use.

    ``db`` is the plugin's own namespace in the store (collection ``"notes"``
    of plugin ``notes`` is stored as ``notes.notes``); ``config`` holds the
    ``TURNSTILE_<NAME>_*`` environment variables with that prefix removed.
    """

    name: str
    path: Path
    module: ModuleType
    services: Services
    db: Namespace
    log: logging.Logger
    config: Mapping[str, str] = field(default_factory=dict)
    source: str = "plugins/"

    @property
    def settings(self) -> Settings:
        return self.services.settings


class PluginError(RuntimeError):
    """A plugin cannot be loaded; the one-line message names the plugin, its file and the cause."""

    def __init__(self, name: str, path: Path | str, cause: str) -> None:
        cause = " ".join(str(cause).split())
        super().__init__(f"plugin {name!r} ({path}): {cause}")
        self.plugin = name
        self.path = Path(path)
        self.cause = cause
