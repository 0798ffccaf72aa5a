"""Notes: each user keeps their own notes; an Admin may read everyone's.

Install it either way:

* drop the package folder into ``plugins/`` as ``plugins/notes``, or
* ``pip install ./examples/notes`` (entry point ``turnstile.plugins: notes``).
"""

from .handlers import AllNotesHandler, NoteHandler, NotesHandler, setup

routes = [
    (r"/notes", NotesHandler),
    (r"/notes/all", AllNotesHandler),
    (r"/notes/([0-9]+)", NoteHandler),
]
