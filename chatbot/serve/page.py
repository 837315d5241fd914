"""The chat page at ``/``: static HTML, CSS and JavaScript shipped in the package, on the API's origin.

The page (``chatbot/serve/static/``) needs no build step and loads nothing from
elsewhere: it talks only to this server's ``/v1`` API, with the API key the
person types when the server has keys (kept in the tab's session storage). Its
files need no key; everything they show comes through the API, which does.
The Content-Security-Policy every response carries (`app.SecurityHeaders`)
forbids inline scripts, and the page inserts user and model text as text nodes,
never as HTML.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
NO_CACHE = {"Cache-Control": "no-cache"}  # revalidated on every load (ETag), so an upgraded server serves its own page

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
async def chat_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=NO_CACHE)


class PageFiles(StaticFiles):
    """The page's scripts, styles and icon, revalidated on every load."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers.update(NO_CACHE)
        return response


def add_page(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files under ``/static/`` (no API key needed for either)."""
    app.include_router(router)
    app.mount("/static", PageFiles(directory=STATIC), name="static")
