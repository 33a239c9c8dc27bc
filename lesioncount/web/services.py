"""What the pages and the JSON API do, in one place: every lookup is scoped to the actor's clinic,
every change checks the actor's role and writes the audit log.

Routes stay thin: they parse the request, call one function here and render or serialise the answer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lesioncount.endpoints import TOXIN_MIN_AGE_YEARS, Change, is_botulinum_toxin
from lesioncount.types import ACNE_CLASSES, COUNT_KEYS, VIEWS, Lesion
from lesioncount.web import reports
from lesioncount.web.counting import CountQueue
from lesioncount.web.marks import apply_change, counts_by_region_of, counts_of, hayashi_of, lesions_of
from lesioncount.web.models import ROLES, ApiToken, AuditEvent, Clinic, MarkVersion, Patient, Photo, User, Visit, utcnow
from lesioncount.web.reports import ReportPhoto
from lesioncount.web.security import Actor, create_api_token, hash_password
from lesioncount.web.storage import PhotoStore, StagedPhoto, UploadError

log = logging.getLogger(__name__)

#: Classes shown over time, in this order.
SUMMARY_KEYS: tuple[str, ...] = COUNT_KEYS
_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class NotFound(LookupError):
    """No such record in the actor's clinic (records of other clinics are reported the same way)."""


class Forbidden(PermissionError):
    """The actor's role does not allow this."""


class Invalid(ValueError):
    """The input cannot be used; the message says why."""


class Conflict(Invalid):
    """The input was made against a state that has changed since (another person's edit); reload and retry."""


def audit(
    db: Session,
    actor: Actor | None,
    action: str,
    obj: str = "",
    obj_id: int | None = None,
    detail: str = "",
    ip: str = "",
) -> None:
    db.add(
        AuditEvent(
            clinic_id=actor.clinic_id if actor else None,
            user_id=actor.user.id if actor else None,
            username=actor.user.username if actor else "",
            action=action,
            object_type=obj,
            object_id=obj_id,
            detail=detail[:1000],
            ip=ip[:64],
        )
    )


def audit_login(db: Session, action: str, username: str, ip: str, detail: str = "") -> None:
    """A failed or blocked login, filed under the clinic of every user of that name (so that their admins
    see it in their audit logs); attempts on unknown names belong to no clinic."""
    users: list[User | None] = list(db.scalars(select(User).where(User.username == username))) or [None]
    for user in users:
        db.add(
            AuditEvent(
                clinic_id=user.clinic_id if user else None,
                user_id=user.id if user else None,
                username=username[:100],
                action=action,
                object_type="user",
                object_id=user.id if user else None,
                detail=detail,
                ip=ip[:64],
            )
        )


def require(actor: Actor, right: str) -> None:
    if not actor.can(right):
        raise Forbidden(f"a {actor.user.role} may not do this ({right})")


# --- users and clinics -----------------------------------------------------------------------------------


def create_clinic_admin(db: Session, clinic_name: str, username: str, password: str) -> User:
    """The first admin of a clinic (the clinic is created when new). Used by ``lesioncount create-admin``."""
    clinic = db.scalar(select(Clinic).where(Clinic.name == clinic_name))
    if clinic is None:
        clinic = Clinic(name=clinic_name)
        db.add(clinic)
        db.flush()
    user = _new_user(db, clinic.id, username, password, "admin")
    audit(db, None, "create_admin", "user", user.id, f"{username} in clinic {clinic_name}")
    db.commit()
    return user


#: The role a new user gets when none is chosen: the least that can work with patients, never admin.
DEFAULT_ROLE = "clinician"


def _new_user(db: Session, clinic_id: int, username: str, password: str, role: str) -> User:
    if role not in ROLES:
        raise Invalid(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{2,100}", username or ""):
        raise Invalid("a user name has 2-100 letters, digits or _ . @ -")
    taken = select(User).where(User.clinic_id == clinic_id, User.username == username)
    if db.scalar(taken) is not None:  # this clinic's own names only: other clinics' stay unknown
        raise Invalid(f"this clinic already has a user {username!r}")
    try:
        pw = hash_password(password)
    except ValueError as e:
        raise Invalid(str(e)) from e
    user = User(clinic_id=clinic_id, username=username, password_hash=pw, role=role)
    db.add(user)
    db.flush()
    return user


def create_user(db: Session, actor: Actor, username: str, password: str, role: str = DEFAULT_ROLE) -> User:
    require(actor, "manage_users")
    role = role or DEFAULT_ROLE  # a new user is a clinician unless an admin chooses otherwise
    user = _new_user(db, actor.clinic_id, username, password, role)
    audit(db, actor, "create_user", "user", user.id, f"{username} ({role})")
    db.commit()
    return user


def set_user_active(db: Session, actor: Actor, user_id: int, active: bool) -> User:
    """Disable (or enable again) a user of the actor's clinic; a disabled user's sessions and tokens stop working."""
    require(actor, "manage_users")
    user = db.get(User, user_id)
    if user is None or user.clinic_id != actor.clinic_id:
        raise NotFound(f"no user {user_id}")
    if user.id == actor.user.id and not active:
        raise Invalid("you cannot disable yourself")
    user.active = active
    if not active:  # for good: enabling the user again must not bring old tokens back to life
        for row in db.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked.is_(False))):
            row.revoked = True
    audit(db, actor, "enable_user" if active else "disable_user", "user", user.id, user.username)
    db.commit()
    return user


def _end_sessions_and_tokens(db: Session, user: User, keep_session_id: int | None = None) -> None:
    from lesioncount.web.models import LoginSession

    for row in db.scalars(select(LoginSession).where(LoginSession.user_id == user.id)):
        if row.id != keep_session_id:
            db.delete(row)
    for tok in db.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked.is_(False))):
        tok.revoked = True


def change_password(
    db: Session, actor: Actor, current: str, new: str, keep_session_id: int | None = None, ip: str = ""
) -> None:
    """The actor's own password; the current one must be right. Other sessions and all tokens end."""
    from lesioncount.web.security import verify_password

    if actor.via != "session":
        raise Forbidden("change your password from a logged-in session, not with a token")
    if not verify_password(actor.user.password_hash, current):
        raise Invalid("the current password is wrong")
    try:
        actor.user.password_hash = hash_password(new)
    except ValueError as e:
        raise Invalid(str(e)) from e
    _end_sessions_and_tokens(db, actor.user, keep_session_id)
    audit(db, actor, "change_password", "user", actor.user.id, "", ip)
    db.commit()


def reset_password(db: Session, actor: Actor, user_id: int, new: str, ip: str = "") -> User:
    """An admin sets a new password for a user of the clinic (a forgotten one); their sessions and tokens end."""
    require(actor, "manage_users")
    user = db.get(User, user_id)
    if user is None or user.clinic_id != actor.clinic_id:
        raise NotFound(f"no user {user_id}")
    try:
        user.password_hash = hash_password(new)
    except ValueError as e:
        raise Invalid(str(e)) from e
    _end_sessions_and_tokens(db, user)
    audit(db, actor, "reset_password", "user", user.id, user.username, ip)
    db.commit()
    return user


def set_role(db: Session, actor: Actor, user_id: int, role: str, ip: str = "") -> User:
    """Change a user's role; the clinic always keeps an active admin."""
    require(actor, "manage_users")
    user = db.get(User, user_id)
    if user is None or user.clinic_id != actor.clinic_id:
        raise NotFound(f"no user {user_id}")
    if role not in ROLES:
        raise Invalid(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if user.role == "admin" and role != "admin":
        admins = db.scalar(
            select(func.count())
            .select_from(User)
            .where(User.clinic_id == actor.clinic_id, User.role == "admin", User.active)
        )
        if (admins or 0) <= 1:
            raise Invalid("the clinic needs at least one active admin: make another user admin first")
    before, user.role = user.role, role
    audit(db, actor, "set_role", "user", user.id, f"{user.username}: {before} -> {role}", ip)
    db.commit()
    return user


def list_tokens(db: Session, actor: Actor) -> list[ApiToken]:
    """The actor's own tokens that still work (not revoked, not expired), newest first."""
    now = utcnow()
    q = select(ApiToken).where(ApiToken.user_id == actor.user.id, ApiToken.revoked.is_(False))
    return [t for t in db.scalars(q.order_by(ApiToken.id.desc())) if t.expires_at is None or t.expires_at > now]


def new_token(db: Session, actor: Actor, name: str, days: int, scopes: str, ip: str = "") -> tuple[str, ApiToken]:
    """A token for the actor. Only a logged-in session may make one: a token never mints tokens (they would
    outlive its own revocation)."""
    if actor.via != "session":
        raise Forbidden("API tokens are made from a logged-in session (the Account page), not with a token")
    try:
        token, row = create_api_token(db, actor.user, name, days=days, scopes=scopes)
    except ValueError as e:
        raise Invalid(str(e)) from e
    audit(db, actor, "create_token", "token", row.id, f"{row.name} ({row.scopes}, {days} days)", ip)
    db.commit()
    return token, row


def revoke_token(db: Session, actor: Actor, token_id: int, ip: str = "") -> None:
    row = db.get(ApiToken, token_id)
    if row is None or row.user_id != actor.user.id:
        raise NotFound(f"no token {token_id}")
    row.revoked = True
    audit(db, actor, "revoke_token", "token", row.id, row.name, ip)
    db.commit()


def list_users(db: Session, actor: Actor) -> list[User]:
    require(actor, "manage_users")
    return list(db.scalars(select(User).where(User.clinic_id == actor.clinic_id).order_by(User.username)))


def list_audit(
    db: Session,
    actor: Actor,
    *,
    limit: int | None = 200,
    offset: int = 0,
    action: str = "",
    username: str = "",
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> list[AuditEvent]:
    """The clinic's audit events, newest first, filtered (action and user name exactly; dates inclusive);
    ``limit=None`` for all of them (the CSV export)."""
    require(actor, "read_audit")
    q = select(AuditEvent).where(AuditEvent.clinic_id == actor.clinic_id)
    if action:
        q = q.where(AuditEvent.action == action)
    if username:
        q = q.where(AuditEvent.username == username)
    if since:
        q = q.where(AuditEvent.at >= dt.datetime.combine(since, dt.time()))
    if until:
        q = q.where(AuditEvent.at < dt.datetime.combine(until + dt.timedelta(days=1), dt.time()))
    q = q.order_by(AuditEvent.id.desc()).offset(max(0, offset))
    return list(db.scalars(q if limit is None else q.limit(limit)))


def audit_actions(db: Session, actor: Actor) -> list[str]:
    require(actor, "read_audit")
    return sorted(db.scalars(select(AuditEvent.action).where(AuditEvent.clinic_id == actor.clinic_id).distinct()))


# --- patients and visits -----------------------------------------------------------------------------------


def list_patients(db: Session, actor: Actor, query: str = "") -> list[Patient]:
    """The clinic's patients by code; ``query`` keeps those whose code or notes contain it (any case)."""
    q = select(Patient).where(Patient.clinic_id == actor.clinic_id)
    if query.strip():
        like = "%" + query.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = q.where(
            func.lower(Patient.code).like(like, escape="\\") | func.lower(Patient.notes).like(like, escape="\\")
        )
    return list(db.scalars(q.order_by(Patient.code)))


def get_patient(db: Session, actor: Actor, patient_id: int) -> Patient:
    p = db.get(Patient, patient_id)
    if p is None or p.clinic_id != actor.clinic_id:
        raise NotFound(f"no patient {patient_id}")
    return p


def create_patient(db: Session, actor: Actor, code: str, birth_year: int | None, notes: str = "") -> Patient:
    require(actor, "write")
    code = (code or "").strip()
    if not _CODE_RE.match(code):
        raise Invalid("a patient ID has 1-64 letters, digits or _ . - (use a pseudonym, never a name)")
    this_year = dt.date.today().year
    if birth_year is not None and not 1900 <= birth_year <= this_year:
        raise Invalid(f"birth year must be between 1900 and {this_year}")
    if db.scalar(select(Patient).where(Patient.clinic_id == actor.clinic_id, Patient.code == code)):
        raise Invalid(f"patient ID {code!r} already exists in this clinic")
    p = Patient(clinic_id=actor.clinic_id, code=code, birth_year=birth_year, notes=notes[:5000])
    db.add(p)
    db.flush()
    audit(db, actor, "create_patient", "patient", p.id, code)
    db.commit()
    return p


def update_patient(db: Session, actor: Actor, patient: Patient, birth_year: int | None, notes: str) -> Patient:
    """Correct a patient's birth year and notes (the pseudonymous ID stays)."""
    require(actor, "write")
    this_year = dt.date.today().year
    if birth_year is not None and not 1900 <= birth_year <= this_year:
        raise Invalid(f"birth year must be between 1900 and {this_year}")
    before = f"born {patient.birth_year}"
    patient.birth_year = birth_year
    patient.notes = notes[:5000]
    audit(db, actor, "update_patient", "patient", patient.id, f"{before} -> born {birth_year}")
    db.commit()
    return patient


def get_visit(db: Session, actor: Actor, visit_id: int) -> Visit:
    v = db.get(Visit, visit_id)
    if v is None or v.patient.clinic_id != actor.clinic_id:
        raise NotFound(f"no visit {visit_id}")
    return v


def create_visit(
    db: Session,
    actor: Actor,
    patient: Patient,
    visit_date: dt.date,
    treatment: str = "",
    units: float | None = None,
    areas: str = "",
    notes: str = "",
) -> Visit:
    require(actor, "write")
    _check_visit(patient, visit_date, units)
    v = Visit(
        patient_id=patient.id,
        visit_date=visit_date,
        treatment=treatment.strip()[:100],
        units=units,
        areas=areas.strip()[:200],
        notes=notes[:5000],
    )
    db.add(v)
    db.flush()
    audit(db, actor, "create_visit", "visit", v.id, f"patient {patient.code} {visit_date.isoformat()} {treatment}")
    db.commit()
    return v


def _check_visit(patient: Patient, visit_date: dt.date, units: float | None) -> None:
    if units is not None and not 0 <= units <= 10000:
        raise Invalid("units must be between 0 and 10000")
    if visit_date > dt.date.today():
        raise Invalid(f"the visit date {visit_date.isoformat()} is in the future")
    if patient.birth_year is not None and visit_date.year < patient.birth_year:
        born = patient.birth_year
        raise Invalid(f"the visit date {visit_date.isoformat()} is before the patient's birth year {born}")


def update_visit(
    db: Session,
    actor: Actor,
    visit: Visit,
    visit_date: dt.date,
    treatment: str,
    units: float | None,
    areas: str,
    notes: str,
    ip: str = "",
) -> Visit:
    """Correct a visit's date, treatment, units, areas or notes."""
    require(actor, "write")
    _check_visit(visit.patient, visit_date, units)
    before = f"{visit.visit_date.isoformat()} {visit.treatment}"
    visit.visit_date, visit.treatment, visit.units = visit_date, treatment.strip()[:100], units
    visit.areas, visit.notes = areas.strip()[:200], notes[:5000]
    audit(db, actor, "update_visit", "visit", visit.id, f"{before} -> {visit_date.isoformat()} {visit.treatment}", ip)
    db.commit()
    return visit


def _remove_files(db: Session, store: PhotoStore, shas: set[str]) -> None:
    """After their photos' rows are gone: delete the stored files of each content hash no photo still uses."""
    for sha in shas:
        if db.scalar(select(func.count()).select_from(Photo).where(Photo.sha256 == sha)) == 0:
            store.remove_original(sha)


def delete_visit(db: Session, store: PhotoStore, actor: Actor, visit: Visit, ip: str = "") -> int:
    """Delete a visit with its photos, marks and (unless shared) stored files; returns the patient's id."""
    require(actor, "write")
    shas, pid, n = {ph.sha256 for ph in visit.photos}, visit.patient_id, len(visit.photos)
    audit(db, actor, "delete_visit", "visit", visit.id, f"{visit.visit_date.isoformat()}, {n} photos", ip)
    db.delete(visit)
    db.commit()
    _remove_files(db, store, shas)
    return pid


def erase_patient(db: Session, store: PhotoStore, actor: Actor, patient: Patient, confirm: str, ip: str = "") -> None:
    """An erasure request: the patient, every visit, photo, mark version and stored file go. The audit log
    keeps that it happened (who, when, the pseudonymous code), nothing of the patient's data.

    Raises:
        Invalid: ``confirm`` is not the patient's code (typed again, so nobody erases by a slip).
    """
    require(actor, "write")
    if confirm.strip() != patient.code:
        raise Invalid(f"type the patient's code ({patient.code}) to confirm the erasure")
    photos = [ph for v in patient.visits for ph in v.photos]
    shas = {ph.sha256 for ph in photos}
    audit(
        db,
        actor,
        "erase_patient",
        "patient",
        patient.id,
        f"{patient.code}: {len(patient.visits)} visits, {len(photos)} photos",
        ip,
    )
    db.delete(patient)
    db.commit()
    _remove_files(db, store, shas)


def age_warning(birth_year: int | None, visits: list[Visit]) -> str:
    """The botulinum toxin warning for a patient who is, or may be, under 18 at a toxin visit ('' if none)."""
    if birth_year is None:
        toxin = [v for v in visits if is_botulinum_toxin(v.treatment)]
        return "Botulinum toxin recorded but no birth year: check the patient is 18 or over." if toxin else ""
    msgs = []
    for v in visits:
        if not is_botulinum_toxin(v.treatment):
            continue
        age = v.visit_date.year - birth_year  # from the birth year only: the true age is age - 1 or age
        if age < TOXIN_MIN_AGE_YEARS:
            msgs.append(f"{v.visit_date.isoformat()}: patient is under 18 (born {birth_year})")
        elif age == TOXIN_MIN_AGE_YEARS:
            msgs.append(f"{v.visit_date.isoformat()}: patient may be under 18 (born {birth_year}; check the date)")
    if not msgs:
        return ""
    return "Botulinum toxin is not to be used under 18. " + "; ".join(msgs) + "."


def treatment_warning(birth_year: int | None, visit_date: dt.date, treatment: str) -> str:
    """The same check for a visit about to be recorded."""
    probe = Visit(visit_date=visit_date, treatment=treatment)
    return age_warning(birth_year, [probe]) if birth_year is not None and is_botulinum_toxin(treatment) else ""


# --- photos -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """One file of an upload request."""

    stream: BinaryIO
    filename: str | None


def add_photos(
    db: Session,
    store: PhotoStore,
    queue: CountQueue,
    actor: Actor,
    visit: Visit,
    view: str,
    uploads: list[Upload],
    ip: str = "",
) -> list[Photo]:
    """Check, store and queue for counting a batch of photos; all or nothing.

    Every file is checked before any is stored; if one fails, none is kept (no file, no row).

    Raises:
        Invalid: a file is refused (the message names it and says why) or the view is unknown.
    """
    require(actor, "write")
    if view not in VIEWS:
        raise Invalid(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    if not uploads:
        raise Invalid("no photo was sent")
    staged: list[StagedPhoto] = []
    try:
        for up in uploads:
            staged.append(store.stage(up.stream, up.filename))
    except UploadError as e:
        for s in staged:
            store.discard(s)
        raise Invalid(str(e)) from e
    except BaseException:
        for s in staged:
            store.discard(s)
        raise
    created: list[str] = []
    try:
        photos = []
        for s in staged:
            if store.commit(s):
                created.append(s.sha256)
            photo = Photo(
                visit_id=visit.id,
                view=view,
                sha256=s.sha256,
                original_name=s.original_name,
                image_format=s.image_format,
                width=s.width,
                height=s.height,
                size_bytes=s.size_bytes,
                status="queued",
                uploaded_by=actor.user.id,
            )
            db.add(photo)
            photos.append(photo)
        db.flush()
        for photo in photos:
            audit(db, actor, "upload_photo", "photo", photo.id, f"visit {visit.id} {view} {photo.original_name}", ip)
        db.commit()
    except BaseException:
        db.rollback()
        for s in staged:
            store.discard(s)
        for sha in created:  # only files this request created; older identical uploads stay
            if db.scalar(select(func.count()).select_from(Photo).where(Photo.sha256 == sha)) == 0:
                store.remove_original(sha)
        raise
    for photo in photos:
        queue.submit(photo.id)
    return photos


def delete_photo(db: Session, store: PhotoStore, actor: Actor, photo: Photo) -> int:
    """Delete a photo, its marks and (when no other photo has the same bytes) its stored files.

    Returns:
        The id of the visit it belonged to.
    """
    require(actor, "write")
    visit_id, sha, pid = photo.visit_id, photo.sha256, photo.id
    db.delete(photo)
    audit(db, actor, "delete_photo", "photo", pid, f"visit {visit_id} {photo.view} {photo.original_name}")
    db.commit()
    _remove_files(db, store, {sha})
    return visit_id


def get_photo(db: Session, actor: Actor, photo_id: int) -> Photo:
    ph = db.get(Photo, photo_id)
    if ph is None or ph.visit.patient.clinic_id != actor.clinic_id:
        raise NotFound(f"no photo {photo_id}")
    return ph


def current_version(db: Session, photo: Photo) -> MarkVersion | None:
    return db.scalar(
        select(MarkVersion).where(MarkVersion.photo_id == photo.id).order_by(MarkVersion.version.desc()).limit(1)
    )


def _reverted(photo: Photo, cur: MarkVersion, to_version: object) -> tuple[list[dict[str, Any]], str]:
    """The marks of an earlier version, to be saved as a new one (the history keeps every version)."""
    try:
        n = int(str(to_version))
    except ValueError as e:
        raise Invalid("a revert needs to_version, the version number to go back to") from e
    old = next((mv for mv in photo.mark_versions if mv.version == n), None)
    if old is None or n >= cur.version:
        raise Invalid(f"there is no earlier version {n} to go back to (now version {cur.version})")
    what = f"undid v{cur.version}" if n == cur.version - 1 else f"reverted to v{n}"
    return [dict(m) for m in old.marks], what


def correct_marks(
    db: Session,
    actor: Actor,
    photo: Photo,
    change: dict[str, Any],
    base_version: int | None,
    region_at: Callable[[float, float], str] | None = None,
    ip: str = "",
) -> MarkVersion:
    """Apply one correction as a new mark version (who, when, what) and return it.

    Args:
        base_version: the version the clinician was looking at; a stale one is refused so that two people
            correcting at once do not overwrite each other. None skips the check.
        region_at: finds the facial region of an added mark that names none (else it is ``other``).
    """
    require(actor, "correct")
    cur = current_version(db, photo)
    if cur is None:
        raise Invalid("this photo is not counted yet")
    if base_version is not None and base_version != cur.version:
        raise Conflict(f"the marks changed (now version {cur.version}); reload the photo and try again")
    if change.get("op") == "add" and not change.get("region") and region_at is not None:
        try:
            change = {**change, "region": region_at(float(change["x"]), float(change["y"]))}
        except (KeyError, TypeError, ValueError):
            pass  # apply_change reports the bad input
    if change.get("op") == "revert":
        marks, what = _reverted(photo, cur, change.get("to_version"))
    else:
        used = {str(m.get("id")) for mv in photo.mark_versions for m in mv.marks}
        try:
            marks, what = apply_change(cur.marks, change, width=photo.width, height=photo.height, used_ids=used)
        except ValueError as e:
            raise Invalid(str(e)) from e
    mv = MarkVersion(
        photo_id=photo.id,
        version=cur.version + 1,
        marks=marks,
        counts=counts_of(marks),
        change=what,
        author_id=actor.user.id,
    )
    db.add(mv)
    try:
        db.flush()
    except IntegrityError as e:  # someone else saved this version number first
        db.rollback()
        raise Invalid("the marks changed meanwhile; reload the photo and try again") from e
    audit(db, actor, "correct_marks", "photo", photo.id, f"v{mv.version}: {what}", ip)
    db.commit()
    return mv


# --- the patient's course ----------------------------------------------------------------------------------


def counted_photo(visit: Visit, view: str) -> Photo | None:
    """The photo whose counts stand for ``view`` at this visit: the one a clinician chose last, else the
    newest counted upload."""
    done = [ph for ph in visit.photos if ph.view == view and ph.status == "done"]
    return max(done, key=lambda ph: (ph.chosen_at or dt.datetime.min, ph.id), default=None)


def visit_counts(db: Session, visit: Visit) -> dict[str, dict[str, Any]]:
    """Per view: the current counts of the visit's photo of that view (``counted_photo``), and how many
    counted photos of that view the visit has."""
    out: dict[str, dict[str, Any]] = {}
    for view in VIEWS:
        photo = counted_photo(visit, view)
        if photo is None:
            continue
        mv = current_version(db, photo)
        if mv is not None:
            result = photo.result or {}
            out[photo.view] = {
                "photo_id": photo.id,
                "counts": dict(mv.counts),
                "version": mv.version,
                "grade": hayashi_of(mv.marks, result),
                "regions": {
                    r: c.get("inflammatory", 0) + c.get("comedone", 0) for r, c in counts_by_region_of(mv.marks).items()
                },
                "warnings": photo_warnings(result),
                "n_photos": sum(ph.view == view and ph.status == "done" for ph in visit.photos),
            }
    return out


def update_photo(
    db: Session, actor: Actor, photo: Photo, *, view: str | None = None, use_for_counts: bool = False, ip: str = ""
) -> Photo:
    """Change a photo's view (a wrong label at upload), or choose it for its view's counts."""
    require(actor, "write")
    if view is not None and view != photo.view:
        if view not in VIEWS:
            raise Invalid(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
        audit(db, actor, "change_view", "photo", photo.id, f"{photo.view} -> {view}", ip)
        photo.view = view
    if use_for_counts:
        photo.chosen_at = utcnow()
        audit(db, actor, "choose_photo", "photo", photo.id, f"used for the {photo.view} counts", ip)
    db.commit()
    return photo


def photo_warnings(result: dict[str, Any]) -> list[str]:
    """What a clinician must know before trusting a photo's counts: no face, damage, exposure, grayscale."""
    out = list((result.get("quality") or {}).get("warnings") or [])
    face = result.get("face") or {}
    if result and not face.get("found") and not any("face" in w.lower() for w in out):
        out.insert(0, "no face found")
    return out


def change(base: int, now: int) -> dict[str, float | int | None]:
    """Absolute and percent change from baseline (percent is None when the baseline is 0), as compare reports it."""
    c = Change(base, now)
    return {"abs": c.absolute, "pct": None if c.percent is None else round(c.percent, 1)}


def patient_summary(db: Session, patient: Patient) -> dict[str, Any]:
    """Counts over time per view and class, with change from the first counted visit (the baseline)."""
    visits: list[dict[str, Any]] = []
    for v in patient.visits:
        visits.append(
            {
                "visit_id": v.id,
                "date": v.visit_date.isoformat(),
                "treatment": v.treatment,
                "units": v.units,
                "areas": v.areas,
                "views": visit_counts(db, v),
            }
        )
    views = [vw for vw in VIEWS if any(vw in x["views"] for x in visits)]
    series: dict[str, list[dict[str, Any]]] = {}
    for vw in views:
        rows = [x for x in visits if vw in x["views"]]
        base = rows[0]["views"][vw]["counts"]
        series[vw] = [
            {
                "visit_id": x["visit_id"],
                "date": x["date"],
                "photo_id": x["views"][vw]["photo_id"],
                "counts": {k: x["views"][vw]["counts"].get(k, 0) for k in SUMMARY_KEYS},
                "change": {k: change(base.get(k, 0), x["views"][vw]["counts"].get(k, 0)) for k in SUMMARY_KEYS},
                "grade": x["views"][vw]["grade"],
                "regions": x["views"][vw]["regions"],
                "warnings": x["views"][vw]["warnings"],
            }
            for x in rows
        ]
    if len(views) > 1:
        series["all views"] = _all_views(visits, views)
    return {
        "patient": {"id": patient.id, "code": patient.code, "birth_year": patient.birth_year},
        "visits": visits,
        "views": views,
        "series": series,
        "classes": list(SUMMARY_KEYS),
        "acne_classes": list(ACNE_CLASSES),
        "warning": age_warning(patient.birth_year, list(patient.visits)),
    }


def _all_views(visits: list[dict[str, Any]], views: list[str]) -> list[dict[str, Any]]:
    """Counts summed over the views, for the visits photographed in every view the baseline was (a visit
    missing one would look like an improvement)."""
    needed = [vw for vw in views if vw in next(x for x in visits if x["views"])["views"]]
    rows = [x for x in visits if all(vw in x["views"] for vw in needed)]
    totals = [{k: sum(x["views"][vw]["counts"].get(k, 0) for vw in needed) for k in SUMMARY_KEYS} for x in rows]
    return [
        {
            "visit_id": x["visit_id"],
            "date": x["date"],
            "photo_id": x["views"][needed[0]]["photo_id"],
            "counts": total,
            "change": {k: change(totals[0][k], total[k]) for k in SUMMARY_KEYS},
            "grade": None,
            "regions": {},
            "warnings": [w for vw in needed for w in x["views"][vw]["warnings"]],
        }
        for x, total in zip(rows, totals, strict=True)
    ]


def treatment_label(v: Visit) -> str:
    """Treatment, units and areas as one line (``botulinum toxin 20 U forehead``)."""
    parts = [v.treatment]
    if v.units is not None:
        parts.append(f"{v.units:g} U")
    parts.append(v.areas)
    return " ".join(p for p in parts if p)


def report_photos(db: Session, store: PhotoStore, patient: Patient) -> list[ReportPhoto]:
    """Each visit's newest counted photo per view, with its current (corrected) marks, for the report."""
    out = []
    for v in patient.visits:
        for info in visit_counts(db, v).values():
            photo = db.get(Photo, info["photo_id"])
            rp = _report_photo(db, store, photo) if photo is not None else None
            if rp is not None:
                out.append(rp)
    return out


def _report_photo(db: Session, store: PhotoStore, photo: Photo) -> ReportPhoto | None:
    """A counted photo with its current marks, as the report (and compare) take it; None if not counted."""
    mv = current_version(db, photo)
    if mv is None or photo.result is None:
        return None
    v, born = photo.visit, photo.visit.patient.birth_year
    # Birth year only: the age is known to within a year; take the middle so 18-year-olds are flagged.
    age = v.visit_date.year - born - 0.5 if born is not None else None
    return ReportPhoto(
        path=store.original_path(photo.sha256),
        result=photo.result,
        marks=mv.marks,
        date=v.visit_date,
        view=photo.view,
        treatment=treatment_label(v),
        age_years=age,
        label=v.visit_date.isoformat(),
        corrected=mv.version > 1 and mv.marks != _model_marks(db, photo),
    )


def _model_marks(db: Session, photo: Photo) -> list[dict[str, Any]] | None:
    """The marks the model gave a photo (its version 1)."""
    first = db.scalar(select(MarkVersion).where(MarkVersion.photo_id == photo.id, MarkVersion.version == 1))
    return None if first is None else first.marks


#: Report formats: media type of each.
REPORT_FORMATS = {"html": "text/html; charset=utf-8", "pdf": "application/pdf"}


class _PairCache:
    """What was worked out for a (baseline sha256, follow-up sha256) photo pair, the oldest forgotten first
    beyond ``size``; shared by the request threads."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._items: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Any:
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple[str, str], value: Any) -> None:
        with self._lock:
            if key not in self._items and len(self._items) >= self.size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = value


#: Registrations (a pair is aligned once) and comparability verdicts already made.
_REGISTRATIONS, _COMPARABILITY = _PairCache(), _PairCache()


def pair_comparability(db: Session, store: PhotoStore, before: Photo, after: Photo) -> dict[str, Any]:
    """Whether a follow-up photo can be compared with the baseline photo of its view: the very verdict the
    report gives (``lesioncount.compare``: registration, exposure and white balance on the shared skin,
    scale, pose, sharpness, faces found), as ``{comparable, score, warnings}``.

    Raises:
        Invalid: the photos are of different patients or views, or not both counted.
    """
    if before.visit.patient_id != after.visit.patient_id or before.view != after.view or before.id == after.id:
        raise Invalid("comparability needs two photos of one view of one patient")
    key = (before.sha256, after.sha256)
    known = _COMPARABILITY.get(key)
    if known is not None:
        return dict(known)
    pair = [_report_photo(db, store, ph) for ph in (before, after)]
    if pair[0] is None or pair[1] is None:
        raise Invalid("both photos must be counted first")
    comp = reports.build_comparison([rp for rp in pair if rp is not None]).pairs[0].comparability
    out = {
        "comparable": bool(comp.comparable) if comp is not None else False,
        "score": round(comp.score, 3) if comp is not None else 0.0,
        "warnings": list(comp.warnings) if comp is not None else ["no photo to compare"],
    }
    _COMPARABILITY.put(key, out)
    return dict(out)


def _recounter(counter: Callable[[], Any] | None) -> Any:
    """The server's counter for the report's recount, or None where there is none or it cannot load."""
    if counter is None:
        return None
    try:
        return counter()
    except Exception as e:  # noqa: BLE001 - the report goes on with the photos' own counts
        log.warning("no recount in the report: the counting model cannot be loaded (%s)", e)
        return None


def patient_report(
    db: Session,
    store: PhotoStore,
    actor: Actor,
    patient: Patient,
    fmt: str,
    ip: str = "",
    stage: Callable[[str], None] | None = None,
    counter: Callable[[], Any] | None = None,
) -> tuple[bytes, str, str]:
    """The patient's report as ``(content, media type, file name)``.

    The compare helper's treatment-response report over the corrected marks; when that comparison cannot
    be made, the counts-only report, which says why. ``stage`` hears what is being done, for progress.
    ``counter``: returns the server's counter, to count uncorrected follow-ups again in their baseline's
    frame (``reports.build_comparison``); asked only here, so that a model that cannot load costs the
    recount, never the report.
    """
    if fmt not in REPORT_FORMATS:
        raise Invalid(f"unknown report format {fmt!r}; choose html or pdf")
    title = f"Patient {patient.code}"
    say = stage or (lambda _what: None)
    try:
        say("reading the photos and their marks")
        photos = report_photos(db, store, patient)
        recounter = _recounter(counter) if photos else None
        who = (actor.user.clinic.name, actor.user.username)
        say("aligning the visits and comparing the lesions, then writing the " + fmt.upper())
        content = (
            reports.comparison_report_pdf(photos, title, *who, counter=recounter)
            if fmt == "pdf"
            else reports.comparison_report_html(photos, title, *who, counter=recounter).encode()
        )
    except Exception as e:  # the comparison needs every photo readable and registrable; counts always work
        log.warning("comparison report for patient %s failed, giving the counts report: %s", patient.id, e)
        note = f"The lesion-by-lesion comparison could not be made ({e}); this report gives the counts only."
        html = reports.counts_report_html(patient_summary(db, patient), actor.user.clinic.name, note)
        content = reports.html_to_pdf(html) if fmt == "pdf" else html.encode()
    audit(db, actor, "download_report", "patient", patient.id, fmt, ip)
    db.commit()
    return content, REPORT_FORMATS[fmt], f"lesioncount-{patient.code}-report.{fmt}"


# --- aligned before/after ----------------------------------------------------------------------------------


def aligned_pair(
    db: Session, store: PhotoStore, actor: Actor, before: Photo, after: Photo, max_megapixels: float, side: str
) -> tuple[bytes, str]:
    """One side of an aligned before/after pair as a JPEG: the follow-up resampled into the baseline's frame
    through compare's registration (landmarks first, then the image), both cropped to the baseline's face,
    each with its current marks (the follow-up's mapped through the same registration).

    Returns:
        ``(jpeg bytes, registration method and quality)``.

    Raises:
        Invalid: the photos are of different patients or views, or not both counted.
    """
    import io

    import numpy as np
    from PIL import Image

    from lesioncount.compare.register import register, warp_to_base
    from lesioncount.io import read_image
    from lesioncount.report.overlay import draw_overlay
    from lesioncount.types import CountResult

    if before.visit.patient_id != after.visit.patient_id or before.view != after.view:
        raise Invalid("an aligned pair needs two photos of one view of one patient")
    mb, ma = current_version(db, before), current_version(db, after)
    if mb is None or ma is None or before.result is None or after.result is None:
        raise Invalid("both photos must be counted first")
    base = read_image(store.original_path(before.sha256), max_megapixels=max_megapixels)
    fb = CountResult.from_dict(before.result).face
    key = (before.sha256, after.sha256)
    reg = _REGISTRATIONS.get(key)
    follow = None
    if reg is None or side == "after":  # the baseline side of a pair already aligned needs no follow-up
        follow = read_image(store.original_path(after.sha256), max_megapixels=max_megapixels)
    if reg is None:
        assert follow is not None
        fa = CountResult.from_dict(after.result).face
        reg = register(
            base,
            follow,
            base_box=fb.box if fb.found else None,
            follow_box=fa.box if fa.found else None,
            base_landmarks=fb.landmarks,
            follow_landmarks=fa.landmarks,
            local=False,
        )
        _REGISTRATIONS.put(key, reg)
    if side == "before":
        image, lesions = base, lesions_of(mb.marks)
    else:
        assert follow is not None
        image, _valid = warp_to_base(follow, reg, base.shape)
        follow_lesions = lesions_of(ma.marks)
        xy = reg.to_base([(les.x, les.y) for les in follow_lesions])  # into the baseline's frame
        lesions = [_moved(les, x - les.x, y - les.y) for les, (x, y) in zip(follow_lesions, xy, strict=True)]
    h, w = base.shape[:2]
    if fb.found and fb.box is not None:  # the baseline's face with a margin: both sides crop the same pixels
        bx, by, bw, bh = fb.box
        x0, y0 = max(0, int(bx - 0.15 * bw)), max(0, int(by - 0.15 * bh))
        x1, y1 = min(w, int(bx + 1.15 * bw)), min(h, int(by + 1.15 * bh))
    else:
        x0, y0, x1, y1 = 0, 0, w, h
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    moved = [_moved(les, -x0, -y0) for les in lesions if x0 <= les.x < x1 and y0 <= les.y < y1]
    marked = draw_overlay(crop, moved, counts=(mb if side == "before" else ma).counts, max_side_px=1200)
    buf = io.BytesIO()
    Image.fromarray(marked).save(buf, format="JPEG", quality=88)
    return buf.getvalue(), f"{reg.method}, alignment quality {reg.quality:.2f}"


def _moved(les: Lesion, dx: float, dy: float) -> Lesion:
    """A lesion shifted by (dx, dy), its box with it."""
    x0, y0, bw, bh = les.bbox
    return dataclasses.replace(les, x=float(les.x + dx), y=float(les.y + dy), bbox=(x0 + dx, y0 + dy, bw, bh))
