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

from .base import BaseHandler, protected, public
from .errors import APIError
from .plugin_context import PluginContext, PluginError
from .roles import ADMIN, EDITOR, ROLES, USER, require_roles

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
