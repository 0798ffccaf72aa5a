"""The ceiling: a bare Tornado app doing only what a protected GET /employees must do.

It verifies the access token exactly as Turnstile does (HS256 pinned, the same
required claims, the ``typ`` check) and answers the same JSON list; no plugins,
no CORS, no logging, no store. ``python bench/bare.py PORT`` with
``ACCESS_TOKEN_SECRET`` in the environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import jwt
import tornado.web

EMPLOYEES = [{"id": 1, "firstname": "Dave", "lastname": "Gray"}, {"id": 2, "firstname": "John", "lastname": "Smith"}]


class Employees(tornado.web.RequestHandler):
    def get(self) -> None:
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise tornado.web.HTTPError(401)
        try:
            claims = jwt.decode(
                token, self.settings["secret"], algorithms=["HS256"],
                options={"require": ["exp", "iat", "typ", "jti", "username"]},
            )
        except jwt.PyJWTError:
            raise tornado.web.HTTPError(403) from None
        if claims.get("typ") != "access":
            raise tornado.web.HTTPError(403)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(EMPLOYEES))


async def main(port: int) -> None:
    app = tornado.web.Application([(r"/employees", Employees)], secret=os.environ["ACCESS_TOKEN_SECRET"], log_function=lambda h: None)
    app.listen(port, address="127.0.0.1")
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
