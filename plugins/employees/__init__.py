"""The sample protected resource: an employees CRUD API.

Any signed-in user may read. Who may write (POST, PUT, DELETE) is set by
``TURNSTILE_EMPLOYEES_WRITE_ROLES``, a comma list of role names such as
``Editor,Admin``; unset, any signed-in user may write, as in the tutorial.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.plugin import PluginContext, role_codes, setting

from .handlers import EmployeeHandler, EmployeesHandler, seed


def role_set(text: str) -> frozenset[int]:
    """``Editor, Admin`` as role codes; ValueError naming an unknown role."""
    return frozenset(role_codes([name.strip() for name in text.split(",") if name.strip()]))


@dataclass(frozen=True)
class Config:
    """``TURNSTILE_EMPLOYEES_*``."""

    write_roles: frozenset[int] = setting(frozenset(), parse=role_set, doc="roles that may write; empty: any signed-in user")


def routes(plugin: PluginContext) -> list:
    config: Config = plugin.config
    options = {"write_roles": config.write_roles}
    return [
        (r"/employees", EmployeesHandler, options),
        (r"/employees/([^/]+)", EmployeeHandler, options),
    ]


setup = seed
