"""Public pages. Anything no other route claims is looked up in ``public/``."""

from __future__ import annotations

from pathlib import Path

import tornado.web

from core.plugin import BaseHandler, public

HERE = Path(__file__).resolve().parent
PUBLIC = HERE / "public"
INDEX_HTML = (HERE / "views" / "index.html").read_text(encoding="utf-8")
NOT_FOUND_HTML = (HERE / "views" / "404.html").read_text(encoding="utf-8")


class SitePage(BaseHandler):
    """Pages with the site's own 404 page; each concrete page still says it is public."""

    cache_control = None  # public pages hold no secrets: browsers may cache and revalidate them

    def not_found_html(self) -> str:
        return NOT_FOUND_HTML


@public
class IndexHandler(SitePage):
    openapi = {
        "get": {
            "summary": "The index page.",
            "responses": {"200": {"description": "The index page.", "content": {"text/html": {"schema": {"type": "string"}}}}},
        }
    }

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(INDEX_HTML)


@public
class PublicFileHandler(SitePage, tornado.web.StaticFileHandler):
    """Static files at the site root (``/css/style.css``); a negotiated 404 otherwise."""

    def initialize(self, plugin=None) -> None:  # type: ignore[override]
        SitePage.initialize(self, plugin)
        tornado.web.StaticFileHandler.initialize(self, path=str(PUBLIC))

    async def get(self, path: str = "", include_body: bool = True) -> None:  # type: ignore[override]
        await tornado.web.StaticFileHandler.get(self, self.request.path.lstrip("/"), include_body)

    async def head(self, path: str = "") -> None:  # type: ignore[override]
        await self.get(path, include_body=False)
