"""The plugin-author API: everything a plugin imports comes from here, and nothing else in ``core`` is public.

A plugin is a Python package, found in ``plugins/`` or installed as a
distribution declaring the entry point group ``turnstile.plugins``. Its
``__init__.py`` (or the module the entry point names) declares:

* ``routes`` (required): a list of ``(pattern, HandlerClass)`` or
  ``(pattern, HandlerClass, kwargs)`` tuples, or a function taking the
  `PluginContext` and returning such a list.
* ``setup(plugin)`` (optional, sync or async): start-up work such as seeding.
* ``default_handler`` (optional): the handler for paths no route matches.
  At most one plugin may declare it.
* ``Config`` (optional): a dataclass of the plugin's typed settings, read from
  ``TURNSTILE_<NAME>_*`` at start-up and given as ``plugin.config``.

Every handler derives from `BaseHandler` and is protected (needs a valid
access token) unless the class itself is marked ``@public``. Methods may be
guarded further with ``@require_roles(ADMIN, ...)``. A handler describes its
operations for ``/openapi.json`` in its ``openapi`` class attribute, and the
request schema it declares there is what checks its bodies.

The names below are grouped as docs/plugins.md lists them; the modules
behind them are not part of the API and may change.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Accounts and sessions (the auth and users plugins; the command line shares them).
from .accounts import (
    USERNAME_PATTERN,
    USERNAME_RULE,
    PASSWORD_AMR,
    Accounts,
    RefreshOutcome,
    check_email,
    check_password_length,
    check_username,
    fold_username,
    public_user,
)

# Handlers, access and errors.
from .base import BaseHandler, protected, public
from .bodies import MESSAGE_KEY
from .cookies import REFRESH_COOKIE, clear_cookie_header, set_cookie_header
from .errors import APIError
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .openapi import error_response, json_body, json_response
from .plugin_context import PluginContext, PluginError, PluginMetrics
from .plugin_settings import duration, setting
from .roles import ADMIN, EDITOR, ROLES, USER, check_roles, require_roles, role_codes, stored_roles
from .security import BCRYPT_MAX_BYTES, HashingBusy, token_digest
from .secretbox import SealBroken, SecretBox
from .signin import (
    MFA,
    SignIn,
    SignInStep,
    confirm_identity,
    finish_sign_in,
    has_second_factor,
    require_mfa,
    run_sign_in_steps,
    signed_in_within,
)
from .signing import ACCESS, REFRESH, TokenInvalid

# The store, through the plugin's namespace (``plugin.db``, ``self.db``).
from .store import Collection, Cond, Doc, Health, KeyExists, Namespace, StoreError, StoreUnavailable, where
from .throttle import Attempt, Throttle

__all__ = [
    # handlers, access, errors
    "ADMIN",
    "APIError",
    "BaseHandler",
    "EDITOR",
    "ROLES",
    "USER",
    "check_roles",
    "protected",
    "public",
    "require_roles",
    "role_codes",
    "stored_roles",
    # plugin context, settings, metrics
    "PluginContext",
    "PluginError",
    "PluginMetrics",
    "setting",
    "duration",
    "Counter",
    "Gauge",
    "Histogram",
    "METRICS_CONTENT_TYPE",
    # OpenAPI and bodies
    "MESSAGE_KEY",
    "error_response",
    "json_body",
    "json_response",
    # the store
    "Collection",
    "Cond",
    "Doc",
    "Health",
    "KeyExists",
    "Namespace",
    "StoreError",
    "StoreUnavailable",
    "where",
    # the throttle
    "Attempt",
    "Throttle",
    # signing in: the extension point, factors, step-up
    "MFA",
    "PASSWORD_AMR",
    "SignIn",
    "SignInStep",
    "confirm_identity",
    "finish_sign_in",
    "has_second_factor",
    "require_mfa",
    "run_sign_in_steps",
    "signed_in_within",
    # secrets at rest
    "SecretBox",
    "SealBroken",
    # accounts, sessions and tokens
    "ACCESS",
    "Accounts",
    "BCRYPT_MAX_BYTES",
    "HashingBusy",
    "REFRESH",
    "REFRESH_COOKIE",
    "RefreshOutcome",
    "TokenInvalid",
    "USERNAME_PATTERN",
    "USERNAME_RULE",
    "check_email",
    "check_password_length",
    "check_username",
    "clear_cookie_header",
    "fold_username",
    "public_user",
    "set_cookie_header",
    "token_digest",
]
