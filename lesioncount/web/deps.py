"""Request-scoped helpers shared by the pages and the API: database session, who is asking, CSRF."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from lesioncount.web.security import CSRF_HEADER, SESSION_COOKIE, Actor, session_actor, token_actor, tokens_equal

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginRequired(Exception):
    """A page needs a logged-in user; the handler redirects to the login page."""


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as db:
        yield db


DB = Annotated[Session, Depends(get_db)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def api_actor(request: Request, db: DB) -> Actor:
    """The caller of a JSON endpoint: a bearer token, or a browser session with its CSRF header on writes."""
    actor = token_actor(db, request.headers.get("authorization"))
    if actor is None:
        found = session_actor(db, request.cookies.get(SESSION_COOKIE), request.app.state.settings.session_ttl_s)
        if found is None:
            raise HTTPException(401, "log in or send an API token", headers={"WWW-Authenticate": "Bearer"})
        actor = found[0]
        if request.method not in SAFE_METHODS and not tokens_equal(request.headers.get(CSRF_HEADER), actor.csrf_token):
            raise HTTPException(403, "missing or wrong CSRF token (send the X-CSRF-Token header)")
    return actor


def page_actor(request: Request, db: DB) -> Actor:
    """The logged-in user of a page; unknown visitors are sent to the login page."""
    found = session_actor(db, request.cookies.get(SESSION_COOKIE), request.app.state.settings.session_ttl_s)
    if found is None:
        raise LoginRequired()
    return found[0]


def check_form_csrf(actor: Actor, form_token: object) -> None:
    if not tokens_equal(str(form_token) if form_token is not None else None, actor.csrf_token):
        raise HTTPException(403, "the form has expired or its CSRF token is wrong; reload the page and try again")


ApiActor = Annotated[Actor, Depends(api_actor)]
PageActor = Annotated[Actor, Depends(page_actor)]


def report_download(request: Request, db: Session, actor: Actor, patient_id: int, fmt: str) -> Response:
    """The patient's report as a download (pages and API alike): private, never cached."""
    from lesioncount.web import services as sv

    p = sv.get_patient(db, actor, patient_id)
    content, media_type, filename = sv.patient_report(
        db, request.app.state.store, actor, p, fmt, client_ip(request), counter=request.app.state.queue.counter
    )
    return Response(
        content,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "private, no-store"},
    )
