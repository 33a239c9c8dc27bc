"""The app factory: ``create_app(settings)`` wires the database, photo store, counting queue and routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from lesioncount.web import api, pages
from lesioncount.web import services as sv
from lesioncount.web.counting import CountQueue
from lesioncount.web.db import make_engine, make_sessionmaker, upgrade
from lesioncount.web.deps import ApiActor, LoginRequired
from lesioncount.web.regions import RegionFinder
from lesioncount.web.reportjobs import ReportJobs
from lesioncount.web.security import LoginThrottle
from lesioncount.web.settings import Settings
from lesioncount.web.storage import PhotoStore

log = logging.getLogger(__name__)
HERE = Path(__file__).parent

#: Sent with every response: no framing, no sniffing, no referrer, scripts and images from this server only.
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Patient photos are not for other sites' pages, not even same-site ones as <img>.
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
}


class BodyLimit:
    """Refuse a request whose declared body is over ``limit`` bytes before anything reads it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                resp = JSONResponse({"detail": f"request larger than {self.limit / 1e6:.0f} MB"}, status_code=413)
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


def validation_message(errors: Sequence[Any]) -> str:
    """FastAPI's list of input errors as one line a person can act on: ``visit_date: ...; files: ...``."""
    parts = []
    for e in errors:
        loc = list(e.get("loc", ()))
        if loc and loc[0] in ("body", "query", "path", "form"):  # where in the request, not which field
            loc = loc[1:]
        where = ".".join(str(p) for p in loc)
        msg = str(e.get("msg", "invalid"))
        if e.get("type") == "missing":
            msg = "required"
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "the request could not be read"


def create_app(settings: Settings) -> FastAPI:
    """Build the clinic web app: migrate the database, open the photo store, start the counting threads.

    Args:
        settings: where data lives, limits, and the counter factory (tests inject a fake counter).

    Returns:
        The FastAPI app; ``app.state`` holds ``settings``, ``engine``, ``sessions``, ``store``, ``queue``.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    store = PhotoStore(
        settings.data_dir / "photos", max_bytes=settings.max_upload_bytes, max_megapixels=settings.max_megapixels
    )
    queue = CountQueue(sessions, store, settings.counter_factory, settings.count_workers)
    reports = ReportJobs(sessions, store, queue.counter)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        queue.shutdown()
        reports.shutdown()
        engine.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="lesioncount",
        description="Acne lesion counts for clinics: patients, visits, photos, corrections.",
        version="1",
        openapi_url=None,  # served below, to logged-in users and token holders only
        docs_url=None,  # Swagger UI loads scripts from a CDN; the schema at /api/openapi.json is enough
        redoc_url=None,
    )

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi_schema(actor: ApiActor) -> JSONResponse:
        """The API's schema, for a logged-in user or a token holder (it maps the whole API)."""
        return JSONResponse(app.openapi())

    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.store = store
    app.state.queue = queue
    app.state.login_throttle = LoginThrottle()
    app.state.reports = reports
    app.state.regions = RegionFinder(max_megapixels=settings.max_megapixels)
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes * settings.max_files_per_upload + (1 << 20))

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        resp: Response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        if not request.url.path.startswith("/static"):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    def _error(request: Request, status: int, msg: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": msg}, status_code=status)
        return pages.render(request, "error.html", None, status_code=status, status=status, message=msg)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _exc: LoginRequired) -> Response:
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={nxt}" if request.method == "GET" else "/login", status_code=303)

    @app.exception_handler(sv.NotFound)
    async def _not_found(request: Request, exc: sv.NotFound) -> Response:
        return _error(request, 404, str(exc))

    @app.exception_handler(sv.Forbidden)
    async def _forbidden(request: Request, exc: sv.Forbidden) -> Response:
        return _error(request, 403, str(exc))

    @app.exception_handler(sv.Invalid)
    async def _invalid(request: Request, exc: sv.Invalid) -> Response:
        return _error(request, 409 if isinstance(exc, sv.Conflict) else 400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _unparsable(request: Request, exc: RequestValidationError) -> Response:
        return _error(request, 422, validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return _error(request, exc.status_code, str(exc.detail))

    n = queue.resume_pending()
    if n:
        log.info("re-queued %d photos left uncounted by the last run", n)
    return app


def app_from_env() -> FastAPI:
    """``create_app`` with settings from ``LESIONCOUNT_DATA_DIR`` and ``LESIONCOUNT_DATABASE_URL``, for ASGI
    servers: ``uvicorn --factory lesioncount.web.app:app_from_env``."""
    return create_app(Settings.from_env())
