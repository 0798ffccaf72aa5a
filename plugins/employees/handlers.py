"""Employees CRUD, as in the tutorial, but with ids that are never reused."""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Awaitable

from core.openapi import error_response, json_body, json_response
from core.plugin import APIError, BaseHandler, PluginContext, protected
from core.roles import check_roles
from core.store import Collection

SAMPLE = [
    {"firstname": "Dave", "lastname": "Gray"},
    {"firstname": "John", "lastname": "Smith"},
]


async def seed(plugin: PluginContext) -> None:
    """On the very first run, add the tutorial's two sample rows (never again, even if deleted)."""
    async with plugin.db.transaction() as tx:
        meta = tx.collection("meta")
        if not await meta.exists("seeded"):
            employees = tx.collection("employees")
            for row in SAMPLE:
                await employees.insert(row)
            await meta.put("seeded", {"seeded": True})


by_id = itemgetter("id")
NAME = {"type": "string", "minLength": 1}
ID = {"type": ["integer", "string"], "description": "A whole number, or a string of digits."}
EMPLOYEE = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "firstname": {"type": "string"}, "lastname": {"type": "string"}},
    "required": ["id", "firstname", "lastname"],
}
LIST = json_response("All employees, by id.", {"type": "array", "items": EMPLOYEE})
NOT_FOUND = error_response("Malformed input, or no employee with that id.")


def parse_id(value: Any) -> int:
    """An employee id from JSON (int or digit string) or a path segment."""
    if isinstance(value, bool):
        raise APIError(400, "Employee ID must be a whole number.")
    if isinstance(value, int):
        return value
    text = value.strip() if isinstance(value, str) else ""
    # ASCII digits only: "²".isdigit() is true but int("²") fails; 18 digits keep it within 64 bits.
    if text.isascii() and text.isdecimal() and len(text) <= 18:
        return int(text)
    raise APIError(400, "Employee ID must be a whole number.")


class EmployeesBase(BaseHandler):
    def initialize(self, plugin: PluginContext | None = None, write_roles: frozenset[int] = frozenset()) -> None:
        super().initialize(plugin)
        self.write_roles = write_roles

    def prepare(self) -> Awaitable[None] | None:
        """Writes check the configured roles (awaited by Tornado); reads cost no coroutine."""
        super().prepare()
        if self.write_roles and self.request.method not in ("GET", "HEAD", "OPTIONS"):
            return check_roles(self, self.write_roles)
        return None

    @property
    def employees(self) -> Collection:
        return self.db.collection("employees")

    async def send_all(self, status: int = 200) -> None:
        self.send_json(sorted(await self.employees.all(), key=by_id), status)

    def require_id(self, body: dict[str, Any]) -> int:
        if body.get("id") is None:
            raise APIError(400, "Employee ID required.")
        return parse_id(body["id"])


@protected
class EmployeesHandler(EmployeesBase):
    openapi = {
        "get": {"summary": "List employees.", "responses": {"200": LIST}},
        "post": {
            "summary": "Add an employee.",
            "requestBody": json_body(
                {"type": "object", "properties": {"firstname": NAME, "lastname": NAME}, "required": ["firstname", "lastname"]}
            ),
            "responses": {"201": LIST, "400": error_response("A name is missing or malformed.")},
        },
        "put": {
            "summary": "Change an employee's names.",
            "requestBody": json_body(
                {"type": "object", "properties": {"id": ID, "firstname": NAME, "lastname": NAME}, "required": ["id"]}
            ),
            "responses": {"200": LIST, "400": NOT_FOUND},
        },
        "delete": {
            "summary": "Remove an employee.",
            "requestBody": json_body({"type": "object", "properties": {"id": ID}, "required": ["id"]}),
            "responses": {"200": LIST, "400": NOT_FOUND},
        },
    }

    def get(self) -> Awaitable[None]:
        return self.send_all()  # Tornado awaits it: one coroutine fewer on the hottest read

    async def post(self) -> None:
        body = self.json_body()
        first, last = self.field(body, "firstname"), self.field(body, "lastname")
        if not first or not last:
            raise APIError(400, "First and last names are required.")
        await self.employees.insert({"firstname": first, "lastname": last})
        await self.send_all(201)

    async def put(self) -> None:
        body = self.json_body()
        employee_id = self.require_id(body)
        changes = {k: self.field(body, k) for k in ("firstname", "lastname") if self.field(body, k)}
        if await self.employees.update(employee_id, changes) is None:
            raise APIError(400, f"Employee ID {employee_id} not found")
        await self.send_all()

    async def delete(self) -> None:
        employee_id = self.require_id(self.json_body())
        if not await self.employees.delete(employee_id):
            raise APIError(400, f"Employee ID {employee_id} not found")
        await self.send_all()


@protected
class EmployeeHandler(EmployeesBase):
    openapi = {"get": {"summary": "One employee.", "responses": {"200": json_response("The employee.", EMPLOYEE), "400": NOT_FOUND}}}

    async def get(self, employee_id: str) -> None:
        employee = await self.employees.get(parse_id(employee_id))
        if employee is None:
            raise APIError(400, f"Employee ID {employee_id} not found")
        self.send_json(employee)
