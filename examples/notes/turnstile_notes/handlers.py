"""Notes handlers. Every route needs a login; `/notes/all` needs the Admin role."""

from __future__ import annotations

import time

from core.plugin import MESSAGE_KEY as MESSAGE
from core.plugin import ADMIN, APIError, BaseHandler, Collection, PluginContext, error_response, json_body, json_response, protected, require_roles

NOTE = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "owner": {"type": "string"},
        "text": {"type": "string"},
        "created": {"type": "integer"},
    },
    "required": ["id", "owner", "text", "created"],
}
NOTES = {"type": "array", "items": NOTE}
MAX_TEXT = 10_000
TEXT_RULE = f"Field 'text' must be 1 to {MAX_TEXT} characters."


async def setup(plugin: PluginContext) -> None:
    """Make ``find(owner=...)`` an index lookup instead of a scan (idempotent, so every start may ask)."""
    await plugin.db.ensure_index("notes", "owner")


class NotesBase(BaseHandler):
    @property
    def notes(self) -> Collection:
        """This plugin's ``notes`` collection (stored as ``notes.notes``)."""
        return self.db.collection("notes")

    async def own_note(self, note_id: str) -> dict:
        """The caller's note ``note_id``; 404 if missing or someone else's (never reveal which)."""
        note = await self.notes.get(int(note_id)) if len(note_id) <= 18 else None  # longer is no id we ever gave out
        if note is None or note["owner"] != self.username:
            raise APIError(404, "Note not found.")
        return note


@protected
class NotesHandler(NotesBase):
    openapi = {
        "get": {"summary": "My notes, oldest first.", "responses": {"200": json_response("My notes.", NOTES)}},
        "post": {
            "summary": "Add a note.",
            "requestBody": json_body(
                {
                    "type": "object",
                    "properties": {"text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, MESSAGE: {"minLength": TEXT_RULE, "maxLength": TEXT_RULE}}},
                    "required": ["text"],
                    "additionalProperties": False,
                }
            ),
            "responses": {"201": json_response("The new note.", NOTE)},
        },
    }

    async def get(self) -> None:
        self.send_json(sorted(await self.notes.find(owner=self.username), key=lambda n: n["id"]))

    async def post(self) -> None:
        text = self.json_body()["text"]
        note = await self.notes.insert({"owner": self.username, "text": text, "created": int(time.time())})
        self.send_json(note, 201)


@protected
class NoteHandler(NotesBase):
    openapi = {
        "get": {"summary": "One of my notes.", "responses": {"200": json_response("The note.", NOTE), "404": error_response("No such note of mine.")}},
        "delete": {"summary": "Delete one of my notes.", "responses": {"204": {"description": "Deleted."}, "404": error_response("No such note of mine.")}},
    }

    async def get(self, note_id: str) -> None:
        self.send_json(await self.own_note(note_id))

    async def delete(self, note_id: str) -> None:
        await self.notes.delete((await self.own_note(note_id))["id"])
        self.set_status(204)
        self.finish()


@protected
class AllNotesHandler(NotesBase):
    openapi = {"get": {"summary": "Everyone's notes (Admin only).", "responses": {"200": json_response("All notes.", NOTES)}}}

    @require_roles(ADMIN)
    async def get(self) -> None:
        self.send_json(sorted(await self.notes.all(), key=lambda n: n["id"]))
