"""The root page, static files from ``public/``, and the HTML 404 page."""

from .handlers import IndexHandler, PublicFileHandler

routes = [(r"/(?:index(?:\.html)?)?", IndexHandler)]
default_handler = PublicFileHandler
