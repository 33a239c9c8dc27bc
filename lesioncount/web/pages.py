"""Server-rendered pages. Forms post here with a CSRF field; uploads and mark corrections go through the API."""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from lesioncount.report.overlay import CLASS_COLOURS as OVERLAY_COLOURS
from lesioncount.types import CLASSES, TOTAL_ACNE, VIEWS
from lesioncount.web import services as sv
from lesioncount.web.deps import DB, PageActor, check_form_csrf, client_ip, report_download
from lesioncount.web.models import ROLES
from lesioncount.web.security import (
    CSRF_FIELD,
    PRELOGIN_COOKIE,
    SESSION_COOKIE,
    TOKEN_DAYS_DEFAULT,
    TOKEN_DAYS_MAX,
    Actor,
    authenticate,
    session_actor,
    start_session,
    tokens_equal,
    wait_text,
)

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
#: Line colours of the counts chart: the overlay's class colours (kept in step in static/app.css and photo.js).
CLASS_COLOURS = {c: "#{:02x}{:02x}{:02x}".format(*rgb) for c, rgb in OVERLAY_COLOURS.items()} | {TOTAL_ACNE: "#444444"}

#: Dashes keep lines that run together (equal counts) apart.
CHART_DASHES = {"scar": "7 4", TOTAL_ACNE: "2 3"}


def render(request: Request, name: str, actor: Actor | None, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    templates = request.app.state.templates
    base = {"request": request, "actor": actor, "csrf": actor.csrf_token if actor else "", "csrf_field": CSRF_FIELD}
    return templates.TemplateResponse(request, name, {**base, **ctx}, status_code=status_code)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _safe_next(url: str | None) -> str:
    r"""Only a path on this server: no ``//host``, backslashes or whitespace (browsers drop tabs: ``/\t/host``)."""
    return url if url and re.fullmatch(r"/(?![/\\])[^\s\\]*", url) else "/"


async def _form(request: Request, actor: Actor) -> Any:
    form = await request.form()
    check_form_csrf(actor, form.get(CSRF_FIELD))
    return form


def _opt_int(v: Any) -> int | None:
    v = (str(v) if v is not None else "").strip()
    if not v:
        return None
    try:
        return int(v)
    except ValueError as e:
        raise sv.Invalid(f"{v!r} is not a whole number") from e


def _opt_float(v: Any) -> float | None:
    v = (str(v) if v is not None else "").strip()
    if not v:
        return None
    try:
        return float(v)
    except ValueError as e:
        raise sv.Invalid(f"{v!r} is not a number") from e


# --- login -------------------------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, db: DB, next: str = "/") -> Response:
    if session_actor(db, request.cookies.get(SESSION_COOKIE), request.app.state.settings.session_ttl_s):
        return redirect(_safe_next(next))
    return _login_form(request, next, "")


def _login_form(request: Request, next_url: str, error: str, status_code: int = 200) -> Response:
    pre = request.cookies.get(PRELOGIN_COOKIE) or secrets.token_urlsafe(24)
    resp = render(request, "login.html", None, status_code, prelogin=pre, next=_safe_next(next_url), error=error)
    resp.set_cookie(
        PRELOGIN_COOKIE, pre, httponly=True, samesite="strict", secure=request.app.state.settings.cookie_secure
    )
    return resp


@router.post("/login")
async def login(request: Request, db: DB) -> Response:
    form = await request.form()
    next_url = _safe_next(str(form.get("next") or "/"))
    if not tokens_equal(str(form.get(CSRF_FIELD) or ""), request.cookies.get(PRELOGIN_COOKIE)):
        raise HTTPException(403, "the login form has expired; reload the page and try again")
    username, ip = str(form.get("username") or "")[:100], client_ip(request)
    throttle = request.app.state.login_throttle
    wait = throttle.wait_s(db, username, ip)
    if wait > 0:
        sv.audit_login(db, "login_blocked", username, ip, f"wait {wait_text(wait)}")
        db.commit()
        return _login_form(request, next_url, f"Too many failed logins: try again in {wait_text(wait)}.", 429)
    user = authenticate(db, username, str(form.get("password") or ""))
    if user is None:
        throttle.failed(db, username, ip)
        sv.audit_login(db, "login_failed", username, ip)
        db.commit()
        return _login_form(request, next_url, "Wrong user name or password.", 401)
    throttle.succeeded(db, username, ip)
    token, _row = start_session(db, user)
    sv.audit(db, Actor(user, "session"), "login", "user", user.id, "", client_ip(request))
    db.commit()
    resp = redirect(next_url)
    resp.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="lax", secure=request.app.state.settings.cookie_secure
    )
    resp.delete_cookie(PRELOGIN_COOKIE)
    return resp


@router.post("/logout")
async def logout(request: Request, db: DB, actor: PageActor) -> Response:
    await _form(request, actor)
    found = session_actor(db, request.cookies.get(SESSION_COOKIE), request.app.state.settings.session_ttl_s)
    if found is not None:
        db.delete(found[1])
    sv.audit(db, actor, "logout", "user", actor.user.id)
    db.commit()
    resp = redirect("/login")
    resp.delete_cookie(SESSION_COOKIE)
    return resp


# --- patients ----------------------------------------------------------------------------------------------


@router.get("/")
def home(request: Request, db: DB, actor: PageActor, q: str = "") -> Response:
    return render(request, "patients.html", actor, patients=sv.list_patients(db, actor, q), q=q)


@router.post("/patients")
async def new_patient(request: Request, db: DB, actor: PageActor) -> Response:
    form = await _form(request, actor)
    p = sv.create_patient(
        db, actor, str(form.get("code") or ""), _opt_int(form.get("birth_year")), str(form.get("notes") or "")
    )
    return redirect(f"/patients/{p.id}")


def _nice_step(top: int, max_ticks: int = 5) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50 ... that labels 0 to ``top`` in at most ``max_ticks`` steps."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step * max_ticks >= top:
                return m * step
        step *= 10


def _chart(series: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    """A small counts-over-time chart (server-drawn SVG, no chart library): visits placed by their date,
    the count axis labelled in round steps, and a hollow marker on the visits whose photo has a warning."""
    w, h, pad = 560, 230, 40
    dates = [dt.date.fromisoformat(row["date"]) for row in series]
    span = (dates[-1] - dates[0]).days
    frac = (
        [(d - dates[0]).days / span for d in dates]
        if span > 0
        else [0.5 if len(dates) == 1 else i / (len(dates) - 1) for i in range(len(dates))]
    )
    xs = [pad + (w - 2 * pad) * f for f in frac]
    step = _nice_step(max([1] + [row["counts"][k] for row in series for k in keys]))
    top = step * -(-max([1] + [row["counts"][k] for row in series for k in keys]) // step)

    def y(v: int) -> float:
        return h - pad - (h - 2 * pad) * v / top

    lines = [
        {
            "key": k,
            "colour": CLASS_COLOURS[k],
            "dash": CHART_DASHES.get(k, ""),
            "points": " ".join(f"{x:.1f},{y(row['counts'][k]):.1f}" for x, row in zip(xs, series, strict=True)),
            "dots": [
                (x, y(row["counts"][k]), row["counts"][k], "; ".join(row.get("warnings") or []), row["visit_id"])
                for x, row in zip(xs, series, strict=True)
            ],
        }
        for k in keys
    ]
    ticks = [(x, row["date"], (d - dates[0]).days) for x, row, d in zip(xs, series, dates, strict=True)]
    y_ticks = [(y(v), v) for v in range(0, top + 1, step)]
    return {"w": w, "h": h, "pad": pad, "lines": lines, "ticks": ticks, "y_ticks": y_ticks}


def _opening_view(views: list[str], series: dict[str, list[Any]]) -> str | None:
    """The view a patient's page opens on: the one with the most visits (a change to show), front on a tie."""
    if not views:
        return None
    return max(views, key=lambda vw: (len(series.get(vw, [])), vw == "front"))


@router.get("/patients/{patient_id}")
def patient_page(request: Request, patient_id: int, db: DB, actor: PageActor, view: str | None = None) -> Response:
    p = sv.get_patient(db, actor, patient_id)
    summary = sv.patient_summary(db, p)
    views = summary["views"] + (["all views"] if "all views" in summary["series"] else [])
    chosen = view if view in views else _opening_view(summary["views"], summary["series"])
    series = summary["series"].get(chosen, []) if chosen else []
    chart = _chart(series, list(summary["classes"])) if series else None
    sv.audit(db, actor, "view_patient", "patient", p.id, "", client_ip(request))
    db.commit()
    return render(
        request,
        "patient.html",
        actor,
        patient=p,
        summary=summary,
        views=views,
        view=chosen,
        series=series,
        chart=chart,
        colours=CLASS_COLOURS,
        today=dt.date.today().isoformat(),
    )


@router.post("/patients/{patient_id}")
async def edit_patient(request: Request, patient_id: int, db: DB, actor: PageActor) -> Response:
    form = await _form(request, actor)
    p = sv.get_patient(db, actor, patient_id)
    sv.update_patient(db, actor, p, _opt_int(form.get("birth_year")), str(form.get("notes") or ""))
    return redirect(f"/patients/{p.id}")


@router.post("/patients/{patient_id}/erase")
async def erase_patient(request: Request, patient_id: int, db: DB, actor: PageActor) -> Response:
    """An erasure request: the patient and everything recorded about them go (the code typed to confirm)."""
    form = await _form(request, actor)
    p = sv.get_patient(db, actor, patient_id)
    sv.erase_patient(db, request.app.state.store, actor, p, str(form.get("confirm") or ""), client_ip(request))
    return redirect("/")


@router.post("/visits/{visit_id}")
async def edit_visit(request: Request, visit_id: int, db: DB, actor: PageActor) -> Response:
    form = await _form(request, actor)
    v = sv.get_visit(db, actor, visit_id)
    sv.update_visit(
        db,
        actor,
        v,
        _form_date(form.get("visit_date")),
        str(form.get("treatment") or ""),
        _opt_float(form.get("units")),
        str(form.get("areas") or ""),
        str(form.get("notes") or ""),
        client_ip(request),
    )
    return redirect(f"/visits/{v.id}")


@router.post("/visits/{visit_id}/delete")
async def delete_visit(request: Request, visit_id: int, db: DB, actor: PageActor) -> Response:
    form = await _form(request, actor)
    if not form.get("confirm"):
        raise sv.Invalid("tick the box to confirm that the visit and its photos are to be deleted")
    v = sv.get_visit(db, actor, visit_id)
    pid = sv.delete_visit(db, request.app.state.store, actor, v, client_ip(request))
    return redirect(f"/patients/{pid}")


def _form_date(value: object) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value or ""))
    except ValueError as e:
        raise sv.Invalid("give the visit date as YYYY-MM-DD") from e


@router.post("/patients/{patient_id}/visits")
async def new_visit(request: Request, patient_id: int, db: DB, actor: PageActor) -> Response:
    form = await _form(request, actor)
    p = sv.get_patient(db, actor, patient_id)
    when = _form_date(form.get("visit_date"))
    v = sv.create_visit(
        db,
        actor,
        p,
        when,
        str(form.get("treatment") or ""),
        _opt_float(form.get("units")),
        str(form.get("areas") or ""),
        str(form.get("notes") or ""),
    )
    return redirect(f"/visits/{v.id}")


@router.get("/patients/{patient_id}/report.{fmt}")
def patient_report(request: Request, patient_id: int, fmt: str, db: DB, actor: PageActor) -> Response:
    return report_download(request, db, actor, patient_id, fmt)


# --- visits and photos -------------------------------------------------------------------------------------


@router.get("/visits/{visit_id}")
def visit_page(request: Request, visit_id: int, db: DB, actor: PageActor) -> Response:
    v = sv.get_visit(db, actor, visit_id)
    counts = {ph.id: (sv.current_version(db, ph) or None) for ph in v.photos}
    used = {vw: sv.counted_photo(v, vw) for vw in VIEWS}
    # The baseline photo of each view (the patient's first counted visit of it), for comparability.
    baselines = {}
    for vw in VIEWS:
        first = next((x for x in v.patient.visits if sv.counted_photo(x, vw) is not None), None)
        if first is not None and first.id != v.id:
            baselines[vw] = sv.counted_photo(first, vw)
    doubled = [vw for vw in VIEWS if sum(ph.view == vw and ph.status == "done" for ph in v.photos) > 1]
    return render(
        request,
        "visit.html",
        actor,
        visit=v,
        patient=v.patient,
        views=VIEWS,
        counts=counts,
        used_ids={ph.id for ph in used.values() if ph is not None},
        baselines=baselines,
        doubled=doubled,
        warnings={ph.id: sv.photo_warnings(ph.result or {}) for ph in v.photos},
        warning=sv.treatment_warning(v.patient.birth_year, v.visit_date, v.treatment),
        max_mb=request.app.state.settings.max_upload_bytes // 1_000_000,
    )


@router.post("/photos/{photo_id}/view")
async def photo_view_form(request: Request, photo_id: int, db: DB, actor: PageActor) -> Response:
    """Change a photo's view, or choose it for its view's counts (``use=1``), from the visit page."""
    form = await _form(request, actor)
    ph = sv.get_photo(db, actor, photo_id)
    view = str(form.get("view") or "") or None
    sv.update_photo(db, actor, ph, view=view, use_for_counts=bool(form.get("use")), ip=client_ip(request))
    return redirect(f"/visits/{ph.visit_id}")


@router.post("/visits/{visit_id}/photos")
async def upload_form(request: Request, visit_id: int, db: DB, actor: PageActor) -> Response:
    """The no-JavaScript upload: a plain multipart form (the drop zone uses the API instead)."""
    form = await request.form()
    try:
        check_form_csrf(actor, form.get(CSRF_FIELD))
        v = sv.get_visit(db, actor, visit_id)
        files = [f for f in form.getlist("files") if isinstance(f, UploadFile) and f.filename]
        sv.add_photos(
            db,
            request.app.state.store,
            request.app.state.queue,
            actor,
            v,
            str(form.get("view") or "front"),
            [sv.Upload(f.file, f.filename) for f in files],
            client_ip(request),
        )
    finally:
        await form.close()  # FastAPI closes the files it parses itself; these we parsed
    return redirect(f"/visits/{v.id}")


@router.post("/photos/{photo_id}/delete")
async def delete_photo(request: Request, photo_id: int, db: DB, actor: PageActor) -> Response:
    await _form(request, actor)
    visit_id = sv.delete_photo(db, request.app.state.store, actor, sv.get_photo(db, actor, photo_id))
    return redirect(f"/visits/{visit_id}")


@router.get("/photos/{photo_id}")
def photo_page(request: Request, photo_id: int, db: DB, actor: PageActor) -> Response:
    ph = sv.get_photo(db, actor, photo_id)
    sv.audit(db, actor, "view_photo", "photo", ph.id, "", client_ip(request))
    db.commit()
    return render(
        request,
        "photo.html",
        actor,
        photo=ph,
        visit=ph.visit,
        patient=ph.visit.patient,
        classes=CLASSES,
        colours=CLASS_COLOURS,
        can_correct=actor.can("correct"),
        versions=list(reversed(ph.mark_versions)),
    )


# --- admin and account -------------------------------------------------------------------------------------


@router.get("/admin/users")
def users_page(request: Request, db: DB, actor: PageActor) -> Response:
    return render(request, "users.html", actor, users=sv.list_users(db, actor), roles=ROLES)


@router.post("/admin/users")
async def new_user(request: Request, db: DB, actor: PageActor) -> Response:
    form = await _form(request, actor)
    sv.create_user(
        db, actor, str(form.get("username") or ""), str(form.get("password") or ""), str(form.get("role") or "")
    )
    return redirect("/admin/users")


@router.post("/admin/users/{user_id}/role")
async def user_role(request: Request, user_id: int, db: DB, actor: PageActor) -> Response:
    form = await _form(request, actor)
    sv.set_role(db, actor, user_id, str(form.get("role") or ""), client_ip(request))
    return redirect("/admin/users")


@router.post("/admin/users/{user_id}/password")
async def user_password(request: Request, user_id: int, db: DB, actor: PageActor) -> Response:
    form = await _form(request, actor)
    sv.reset_password(db, actor, user_id, str(form.get("password") or ""), client_ip(request))
    return redirect("/admin/users")


@router.post("/account/password")
async def account_password(request: Request, db: DB, actor: PageActor) -> Response:
    form = await _form(request, actor)
    found = session_actor(db, request.cookies.get(SESSION_COOKIE), request.app.state.settings.session_ttl_s)
    keep = found[1].id if found else None
    if str(form.get("new") or "") != str(form.get("again") or ""):
        return _account(request, db, actor, error="the two new passwords differ")
    try:
        sv.change_password(
            db, actor, str(form.get("current") or ""), str(form.get("new") or ""), keep, client_ip(request)
        )
    except sv.Invalid as e:
        return _account(request, db, actor, error=str(e))
    return _account(request, db, actor, notice="Password changed; your other sessions and all your tokens ended.")


@router.post("/admin/users/{user_id}/active")
async def user_active(request: Request, user_id: int, db: DB, actor: PageActor) -> Response:
    form = await _form(request, actor)
    sv.set_user_active(db, actor, user_id, form.get("active") == "1")
    return redirect("/admin/users")


#: Audit events per page.
AUDIT_PAGE = 200


@router.get("/admin/audit")
def audit_page(
    request: Request,
    db: DB,
    actor: PageActor,
    action: str = "",
    user: str = "",
    since: str = "",
    until: str = "",
    page: int = 1,
    fmt: str = "",
) -> Response:
    """The clinic's audit log: filtered by action, user and dates, a page at a time, or all of it as CSV."""
    try:
        d0 = dt.date.fromisoformat(since) if since else None
        d1 = dt.date.fromisoformat(until) if until else None
    except ValueError as e:
        raise sv.Invalid("give dates as YYYY-MM-DD") from e
    if fmt == "csv":
        events = sv.list_audit(db, actor, limit=None, action=action, username=user, since=d0, until=d1)
        return Response(
            _audit_csv(events),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"', "Cache-Control": "private, no-store"},
        )
    page = max(1, page)
    events = sv.list_audit(
        db,
        actor,
        limit=AUDIT_PAGE + 1,
        offset=(page - 1) * AUDIT_PAGE,
        action=action,
        username=user,
        since=d0,
        until=d1,
    )
    query = {k: v for k, v in {"action": action, "user": user, "since": since, "until": until}.items() if v}
    return render(
        request,
        "audit.html",
        actor,
        events=events[:AUDIT_PAGE],
        more=len(events) > AUDIT_PAGE,
        page=page,
        query=query,
        actions=sv.audit_actions(db, actor),
    )


def _audit_csv(events: list[Any]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["at_utc", "user", "action", "object_type", "object_id", "detail", "ip"])
    for e in events:
        row = [e.at.isoformat(), e.username, e.action, e.object_type, e.object_id or "", e.detail, e.ip]
        w.writerow([_csv_safe(v) for v in row])
    return buf.getvalue()


def _csv_safe(value: object) -> object:
    """A cell a spreadsheet will not run as a formula (user text starting with = + - @ gets a quote)."""
    return "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@router.get("/account")
def account_page(request: Request, db: DB, actor: PageActor) -> Response:
    return _account(request, db, actor)


def _account(
    request: Request, db: DB, actor: Actor, new_token: str | None = None, error: str = "", notice: str = ""
) -> Response:
    return render(
        request,
        "account.html",
        actor,
        tokens=sv.list_tokens(db, actor),
        new_token=new_token,
        error=error,
        notice=notice,
        days_default=TOKEN_DAYS_DEFAULT,
        days_max=TOKEN_DAYS_MAX,
    )


@router.post("/account/tokens")
async def account_new_token(request: Request, db: DB, actor: PageActor) -> Response:
    form = await _form(request, actor)
    try:
        days = int(str(form.get("days") or TOKEN_DAYS_DEFAULT))
    except ValueError:
        return _account(request, db, actor, error="days must be a whole number")
    scopes = "read write" if form.get("write") else "read"
    try:
        token, _row = sv.new_token(db, actor, str(form.get("name") or "script"), days, scopes, client_ip(request))
    except sv.Invalid as e:
        return _account(request, db, actor, error=str(e))
    return _account(request, db, actor, new_token=token)


@router.post("/account/tokens/{token_id}/revoke")
async def account_revoke_token(request: Request, token_id: int, db: DB, actor: PageActor) -> Response:
    await _form(request, actor)
    sv.revoke_token(db, actor, token_id, client_ip(request))
    return redirect("/account")


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
