"""User administration for Admins: list, show, delete. Never shows password hashes or token data."""

from .handlers import UserHandler, UsersHandler

routes = [
    (r"/users", UsersHandler),
    (r"/users/([^/]+)", UserHandler),
]
