"""``/users``: Admin only, through the core role guard."""

from __future__ import annotations

from core.plugin import MESSAGE_KEY as MESSAGE
from core.plugin import ADMIN, Accounts, APIError, BaseHandler, error_response, json_body, json_response, protected, public_user, require_roles

USER_VIEW = {
    "type": "object",
    "properties": {
        "username": {"type": "string"},
        "roles": {"type": "array", "items": {"type": "integer"}},
        "created": {"type": ["integer", "null"]},
        "email": {"type": ["string", "null"]},
        "email_verified": {"type": "boolean"},
        "factors": {"type": "array", "items": {"type": "string"}, "description": "second factors the user has (totp, passkeys, recovery_codes...)"},
        "sessions": {"type": "integer", "description": "live sessions (logins not ended)"},
    },
    "required": ["username", "roles"],
}


class UsersBase(BaseHandler):
    @property
    def accounts(self) -> Accounts:
        return self.services.accounts


@protected
class UsersHandler(UsersBase):
    openapi = {
        "get": {"summary": "List users (Admin).", "responses": {"200": json_response("Every user.", {"type": "array", "items": USER_VIEW})}},
        "delete": {
            "summary": "Delete a user and end their sessions (Admin).",
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {"user": {"type": "string", "minLength": 1, "maxLength": 64, MESSAGE: {"minLength": "Field 'user' is required."}}},
                    "required": ["user"],
                    "additionalProperties": False,
                }
            ),
            "responses": {
                "200": json_response("Deleted.", {"type": "object", "properties": {"message": {"type": "string"}}}),
                "404": error_response("No such user."),
            },
        },
    }

    @require_roles(ADMIN)
    async def get(self) -> None:
        """Every user: name, role codes, creation time, number of live sessions."""
        self.send_json(await self.accounts.users())

    @require_roles(ADMIN)
    async def delete(self) -> None:
        """``{"user"}``: delete the user and end all their sessions."""
        name = self.json_body()["user"]
        ended = await self.accounts.delete_user(name)
        if ended is None:
            raise APIError(404, f"User {name} not found.")
        self.send_json({"message": f"User {name} deleted."})


@protected
class UserHandler(UsersBase):
    openapi = {
        "get": {
            "summary": "One user (Admin).",
            "responses": {"200": json_response("The user.", USER_VIEW), "404": error_response("No such user.")},
        }
    }

    @require_roles(ADMIN)
    async def get(self, name: str) -> None:
        user = await self.accounts.user(name)
        if user is None:
            raise APIError(404, f"User {name} not found.")
        self.send_json(public_user(user))
