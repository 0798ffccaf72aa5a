"""Accounts and sessions: register, log in, refresh, log out."""

from .handlers import AuthHandler, LogoutHandler, RefreshHandler, RegisterHandler

routes = [
    (r"/register", RegisterHandler),
    (r"/auth", AuthHandler),
    (r"/refresh", RefreshHandler),
    (r"/logout", LogoutHandler),
]
