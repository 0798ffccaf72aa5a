"""Employees CRUD, as in the tutorial, but with ids that are never reused."""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Awaitable

from core.plugin import MESSAGE_KEY as MESSAGE
from core.plugin import APIError, BaseHandler, Collection, PluginContext, check_roles, error_response, json_body, json_response, protected

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
FIELDS = ("id", "firstname", "lastname")


def in_order(employee: dict[str, Any]) -> dict[str, Any]:
    """The employee's fields in one order on every backend (PostgreSQL's jsonb keeps keys in an order of its own)."""
    return {**{k: employee[k] for k in FIELDS if k in employee}, **employee}
NAMES_REQUIRED = "First and last names are required."
NAME = {"type": "string", "minLength": 1, "maxLength": 100}
NEW_NAME = {**NAME, MESSAGE: {"minLength": NAMES_REQUIRED}}
MAX_ID = 10**18 - 1  # 18 digits, as in a path: within 64 bits
ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID, MESSAGE: {"type": "Employee ID must be a whole number."}}
ID_REQUIRED = {MESSAGE: {"required": "Employee ID required."}}
EMPLOYEE = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "firstname": {"type": "string"}, "lastname": {"type": "string"}},
    "required": ["id", "firstname", "lastname"],
}
LIST = json_response("All employees, by id.", {"type": "array", "items": EMPLOYEE})
NOT_FOUND = error_response("Malformed input, or no employee with that id.")


def parse_id(text: str) -> int:
    """An employee id from a path segment (a body's id is checked by its schema, `ID`)."""
    text = text.strip()
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
        self.send_json([in_order(e) for e in sorted(await self.employees.all(), key=by_id)], status)


@protected
class EmployeesHandler(EmployeesBase):
    openapi = {
        "get": {"summary": "List employees.", "responses": {"200": LIST}},
        "post": {
            "summary": "Add an employee.",
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {"firstname": NEW_NAME, "lastname": NEW_NAME},
                    "required": ["firstname", "lastname"],
                    "additionalProperties": False,
                    MESSAGE: {"required": NAMES_REQUIRED},
                }
            ),
            "responses": {"201": LIST, "400": error_response("A name is missing or malformed.")},
        },
        "put": {
            "summary": "Change an employee's names.",
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {"id": ID, "firstname": NAME, "lastname": NAME},
                    "required": ["id"],
                    "additionalProperties": False,
                    **ID_REQUIRED,
                }
            ),
            "responses": {"200": LIST, "400": NOT_FOUND},
        },
        "delete": {
            "summary": "Remove an employee.",
            "requestBody": json_body(
                {"type": "object", "properties": {"id": ID}, "required": ["id"], "additionalProperties": False, **ID_REQUIRED}
            ),
            "responses": {"200": LIST, "400": NOT_FOUND},
        },
    }

    def get(self) -> Awaitable[None]:
        return self.send_all()  # Tornado awaits it: one coroutine fewer on the hottest read

    async def post(self) -> None:
        body = self.json_body()
        await self.employees.insert({"firstname": body["firstname"], "lastname": body["lastname"]})
        await self.send_all(201)

    async def put(self) -> None:
        body = self.json_body()
        employee_id = int(body["id"])
        changes = {k: body[k] for k in ("firstname", "lastname") if k in body}
        if await self.employees.update(employee_id, changes) is None:
            raise APIError(400, f"Employee ID {employee_id} not found")
        await self.send_all()

    async def delete(self) -> None:
        employee_id = int(self.json_body()["id"])
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
        self.send_json(in_order(employee))
