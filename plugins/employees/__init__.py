"""The sample protected resource: an employees CRUD API.

Any signed-in user may read. Who may write (POST, PUT, DELETE) is set by
``TURNSTILE_EMPLOYEES_WRITE_ROLES``, a comma list of role names such as
``Editor,Admin``; unset, any signed-in user may write, as in the tutorial.
"""

from __future__ import annotations

from core.plugin import PluginContext, PluginError
from core.roles import role_codes

from .handlers import EmployeeHandler, EmployeesHandler, seed


def write_roles(plugin: PluginContext) -> frozenset[int]:
    raw = plugin.config.get("WRITE_ROLES", "")
    try:
        return frozenset(role_codes([name.strip() for name in raw.split(",") if name.strip()]))
    except ValueError as exc:
        raise PluginError(plugin.name, plugin.path, f"TURNSTILE_EMPLOYEES_WRITE_ROLES: {exc}") from None


def routes(plugin: PluginContext) -> list:
    options = {"write_roles": write_roles(plugin)}
    return [
        (r"/employees", EmployeesHandler, options),
        (r"/employees/([^/]+)", EmployeeHandler, options),
    ]


setup = seed
