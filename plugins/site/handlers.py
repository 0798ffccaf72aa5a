"""Public pages. Anything no other route claims is looked up in ``public/``."""

from __future__ import annotations

from pathlib import Path

import tornado.web

from core.base import BaseHandler

HERE = Path(__file__).resolve().parent
PUBLIC = HERE / "public"
INDEX_HTML = (HERE / "views" / "index.html").read_text(encoding="utf-8")
NOT_FOUND_HTML = (HERE / "views" / "404.html").read_text(encoding="utf-8")


class SitePage(BaseHandler):
    public = True

    def not_found_html(self) -> str:
        return NOT_FOUND_HTML


class IndexHandler(SitePage):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(INDEX_HTML)


class PublicFileHandler(SitePage, tornado.web.StaticFileHandler):
    """Static files at the site root (``/css/style.css``); a negotiated 404 otherwise."""

    def initialize(self, plugin=None) -> None:  # type: ignore[override]
        SitePage.initialize(self, plugin)
        tornado.web.StaticFileHandler.initialize(self, path=str(PUBLIC))

    async def get(self, path: str = "", include_body: bool = True) -> None:  # type: ignore[override]
        await tornado.web.StaticFileHandler.get(self, self.request.path.lstrip("/"), include_body)

    async def head(self, path: str = "") -> None:  # type: ignore[override]
        await self.get(path, include_body=False)
