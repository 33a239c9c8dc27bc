"""The JSON API (``/api/v1``, described at ``/api/openapi.json``): what the pages' scripts and clinic scripts call.

Authenticate with ``Authorization: Bearer <token>`` (tokens are made on the Account page) or, from the
browser, the session cookie plus the ``X-CSRF-Token`` header on writes.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from lesioncount.web import services as sv
from lesioncount.web.deps import DB, ApiActor, client_ip, report_download
from lesioncount.web.marks import counts_by_region_of
from lesioncount.web.models import ApiToken, Patient, Photo, Visit
from lesioncount.web.security import TOKEN_DAYS_DEFAULT, TOKEN_DAYS_MAX

router = APIRouter(prefix="/api/v1", tags=["api"])


class PatientIn(BaseModel):
    code: str = Field(description="pseudonymous patient ID (never a name)", examples=["P-0042"])
    birth_year: int | None = None
    notes: str = ""


class PatientUpdate(BaseModel):
    birth_year: int | None = None
    notes: str = ""


class VisitIn(BaseModel):
    visit_date: dt.date
    treatment: str = Field("", examples=["botulinum toxin"])
    units: float | None = Field(None, description="toxin units, if any")
    areas: str = Field("", examples=["forehead, cheeks"])
    notes: str = ""


class CorrectionIn(BaseModel):
    op: Literal["add", "remove", "reclassify", "revert"] = Field(
        description="revert saves an earlier version's marks as a new version (undo: to_version = version - 1)"
    )
    to_version: int | None = Field(None, description="revert: the version to go back to")
    id: str | None = Field(None, description="mark id (remove, reclassify)")
    cls: str | None = Field(None, description="class (add, reclassify)")
    x: float | None = None
    y: float | None = None
    region: str | None = None
    radius_px: float | None = None
    base_version: int | None = Field(None, description="the version you corrected; a stale one is refused")


class PhotoChangeIn(BaseModel):
    view: Literal["front", "left", "right"] | None = Field(None, description="a corrected view")
    use_for_counts: bool = Field(False, description="use this photo for its view's counts at its visit")


class TokenIn(BaseModel):
    name: str = "script"
    days: int = Field(TOKEN_DAYS_DEFAULT, description=f"lifetime in days, 1 to {TOKEN_DAYS_MAX}")
    scopes: str = Field("read write", description="'read' (look only) or 'read write' (the role's changes too)")


# --- response shapes (for the OpenAPI schema; routes build plain dicts that FastAPI checks against these) ---


class MeOut(BaseModel):
    username: str
    role: str
    clinic: str
    via: str = Field(description="session or token")


class PatientOut(BaseModel):
    id: int
    code: str
    birth_year: int | None
    notes: str


class PhotoStatusOut(BaseModel):
    id: int
    view: str
    name: str = Field(description="the uploaded file's name, as a label only")
    status: str = Field(description="queued, counting, done or failed")
    error: str
    width: int
    height: int


class VisitOut(BaseModel):
    id: int
    patient_id: int
    visit_date: str
    treatment: str
    units: float | None
    areas: str
    notes: str
    photos: list[PhotoStatusOut]


class VisitCreatedOut(VisitOut):
    warning: str = Field(description="the botulinum toxin under-18 warning, or empty")


class PatientDetailOut(PatientOut):
    visits: list[VisitOut]
    summary: dict[str, Any] = Field(description="counts over time per view, change from baseline, warning")


class ProgressOut(BaseModel):
    total: int
    finished: int
    photos: list[PhotoStatusOut]


class UploadOut(BaseModel):
    photos: list[PhotoStatusOut]


class PhotoOut(PhotoStatusOut):
    visit_id: int
    patient_id: int
    sha256: str
    version: int | None = Field(description="current marks version (1 is the model's)")
    marks: list[dict[str, Any]] = Field(description="lesions in count-result form plus id and source")
    counts: dict[str, int] | None = Field(description="counts of the current marks")
    counts_by_region: dict[str, dict[str, int]] = Field(description="region -> class -> count, current marks")
    model_counts: dict[str, int] | None
    expert_marks: list[dict[str, float]] = Field(
        default_factory=list,
        description="where dermatologists would mark acne (x, y, score in photo pixels), from a model with an "
        "experts' heatmap; not counted, not corrected, empty otherwise",
    )
    warnings: list[str]
    changed_by: str | None
    changed_at: str | None


class VersionOut(BaseModel):
    version: int
    change: str
    by: str
    at: str
    counts: dict[str, int]


class TokenInfoOut(BaseModel):
    id: int
    name: str
    scopes: str
    created_at: str | None
    expires_at: str | None
    last_used_at: str | None


class TokenOut(TokenInfoOut):
    token: str = Field(description="shown once; store it safely")


def patient_json(p: Patient) -> dict[str, Any]:
    return {"id": p.id, "code": p.code, "birth_year": p.birth_year, "notes": p.notes}


def visit_json(v: Visit) -> dict[str, Any]:
    return {
        "id": v.id,
        "patient_id": v.patient_id,
        "visit_date": v.visit_date.isoformat(),
        "treatment": v.treatment,
        "units": v.units,
        "areas": v.areas,
        "notes": v.notes,
        "photos": [photo_status_json(ph) for ph in v.photos],
    }


def photo_status_json(ph: Photo) -> dict[str, Any]:
    return {
        "id": ph.id,
        "view": ph.view,
        "name": ph.original_name,
        "status": ph.status,
        "error": ph.error,
        "width": ph.width,
        "height": ph.height,
    }


def photo_json(db: DB, ph: Photo) -> dict[str, Any]:
    mv = sv.current_version(db, ph)
    out = photo_status_json(ph)
    out.update(
        {
            "visit_id": ph.visit_id,
            "patient_id": ph.visit.patient_id,
            "sha256": ph.sha256,
            "version": mv.version if mv else None,
            "marks": mv.marks if mv else [],
            "counts": mv.counts if mv else None,
            "counts_by_region": counts_by_region_of(mv.marks) if mv else {},
            "model_counts": (ph.result or {}).get("counts"),
            "expert_marks": [
                {"x": m["x"], "y": m["y"], "score": m["score"]} for m in (ph.result or {}).get("expert_marks", [])
            ],
            "warnings": sv.photo_warnings(ph.result or {}),
            "changed_by": (mv.author.username if mv and mv.author else None),
            "changed_at": (mv.created_at.isoformat() + "Z" if mv else None),
        }
    )
    return out


@router.get("/me", response_model=MeOut)
def me(actor: ApiActor) -> dict[str, Any]:
    u = actor.user
    return {"username": u.username, "role": u.role, "clinic": u.clinic.name, "via": actor.via}


@router.get("/patients", response_model=list[PatientOut])
def list_patients(actor: ApiActor, db: DB, q: str = "") -> list[dict[str, Any]]:
    """The clinic's patients; ``q`` keeps those whose ID or notes contain it."""
    return [patient_json(p) for p in sv.list_patients(db, actor, q)]


@router.post("/patients", status_code=201, response_model=PatientOut)
def create_patient(body: PatientIn, actor: ApiActor, db: DB) -> dict[str, Any]:
    return patient_json(sv.create_patient(db, actor, body.code, body.birth_year, body.notes))


@router.get("/patients/{patient_id}", response_model=PatientDetailOut)
def get_patient(patient_id: int, request: Request, actor: ApiActor, db: DB) -> dict[str, Any]:
    p = sv.get_patient(db, actor, patient_id)
    sv.audit(db, actor, "view_patient", "patient", p.id, "api", client_ip(request))
    db.commit()
    return {**patient_json(p), "visits": [visit_json(v) for v in p.visits], "summary": sv.patient_summary(db, p)}


@router.put("/patients/{patient_id}", response_model=PatientOut)
def update_patient(patient_id: int, body: PatientUpdate, actor: ApiActor, db: DB) -> dict[str, Any]:
    """Correct the birth year and notes (the patient ID stays)."""
    p = sv.get_patient(db, actor, patient_id)
    return patient_json(sv.update_patient(db, actor, p, body.birth_year, body.notes))


@router.delete("/patients/{patient_id}", status_code=204, response_class=Response)
def erase_patient(patient_id: int, confirm: str, request: Request, actor: ApiActor, db: DB) -> Response:
    """An erasure request: the patient, visits, photos, marks and stored files go. ``confirm`` must be the
    patient's ID (a deliberate act, not a slip)."""
    p = sv.get_patient(db, actor, patient_id)
    sv.erase_patient(db, request.app.state.store, actor, p, confirm, client_ip(request))
    return Response(status_code=204)


@router.put("/visits/{visit_id}", response_model=VisitOut)
def update_visit(visit_id: int, body: VisitIn, request: Request, actor: ApiActor, db: DB) -> dict[str, Any]:
    """Correct a visit's date, treatment, units, areas or notes."""
    v = sv.get_visit(db, actor, visit_id)
    sv.update_visit(
        db, actor, v, body.visit_date, body.treatment, body.units, body.areas, body.notes, client_ip(request)
    )
    return visit_json(v)


@router.delete("/visits/{visit_id}", status_code=204, response_class=Response)
def delete_visit(visit_id: int, request: Request, actor: ApiActor, db: DB) -> Response:
    """Delete a visit with its photos and marks."""
    v = sv.get_visit(db, actor, visit_id)
    sv.delete_visit(db, request.app.state.store, actor, v, client_ip(request))
    return Response(status_code=204)


@router.post("/patients/{patient_id}/visits", status_code=201, response_model=VisitCreatedOut)
def create_visit(patient_id: int, body: VisitIn, actor: ApiActor, db: DB) -> dict[str, Any]:
    p = sv.get_patient(db, actor, patient_id)
    v = sv.create_visit(db, actor, p, body.visit_date, body.treatment, body.units, body.areas, body.notes)
    return {**visit_json(v), "warning": sv.treatment_warning(p.birth_year, v.visit_date, v.treatment)}


@router.get("/visits/{visit_id}", response_model=VisitOut)
def get_visit(visit_id: int, actor: ApiActor, db: DB) -> dict[str, Any]:
    return visit_json(sv.get_visit(db, actor, visit_id))


@router.get("/visits/{visit_id}/progress", response_model=ProgressOut)
def visit_progress(visit_id: int, actor: ApiActor, db: DB) -> dict[str, Any]:
    """Counting progress of a visit's photos (poll it while photos are counted)."""
    v = sv.get_visit(db, actor, visit_id)
    photos = [photo_status_json(ph) for ph in v.photos]
    finished = sum(ph["status"] in ("done", "failed") for ph in photos)
    return {"total": len(photos), "finished": finished, "photos": photos}


@router.post("/visits/{visit_id}/photos", status_code=201, response_model=UploadOut)
def upload_photos(
    visit_id: int,
    request: Request,
    actor: ApiActor,
    db: DB,
    files: Annotated[list[UploadFile], File(description="one or more photos")],
    view: Annotated[str, Form(description="front, left or right")] = "front",
) -> dict[str, Any]:
    """Upload photos of one view; they are checked by content, stored, and counted in the background."""
    settings = request.app.state.settings
    if len(files) > settings.max_files_per_upload:
        raise sv.Invalid(f"at most {settings.max_files_per_upload} photos per upload")
    v = sv.get_visit(db, actor, visit_id)
    ups = [sv.Upload(f.file, f.filename) for f in files]
    photos = sv.add_photos(
        db, request.app.state.store, request.app.state.queue, actor, v, view, ups, client_ip(request)
    )
    return {"photos": [photo_status_json(ph) for ph in photos]}


@router.get("/photos/{photo_id}", response_model=PhotoOut)
def get_photo(photo_id: int, actor: ApiActor, db: DB) -> dict[str, Any]:
    return photo_json(db, sv.get_photo(db, actor, photo_id))


@router.delete("/photos/{photo_id}", status_code=204, response_class=Response)
def delete_photo(photo_id: int, request: Request, actor: ApiActor, db: DB) -> Response:
    """Delete a photo and its marks (a wrong upload); its file goes too unless another photo has the same bytes."""
    sv.delete_photo(db, request.app.state.store, actor, sv.get_photo(db, actor, photo_id))
    return Response(status_code=204)


@router.get("/photos/{photo_id}/image.jpg", response_class=FileResponse)
def photo_image(photo_id: int, request: Request, actor: ApiActor, db: DB) -> Response:
    """The photo as shown in the browser: orientation applied, no EXIF/GPS or other metadata."""
    ph = sv.get_photo(db, actor, photo_id)
    st = request.app.state
    path = st.store.display_copy(ph.sha256, st.settings.display_max_side_px)
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.get("/photos/{photo_id}/aligned.jpg", response_class=Response)
def photo_aligned(
    photo_id: int, to: int, side: Literal["before", "after"], request: Request, actor: ApiActor, db: DB
) -> Response:
    """One side of an aligned before/after pair: this follow-up photo resampled onto the baseline photo
    ``to`` (compare's registration), both cropped to the baseline's face, each with its marks."""
    after, before = sv.get_photo(db, actor, photo_id), sv.get_photo(db, actor, to)
    st = request.app.state
    data, how = sv.aligned_pair(db, st.store, actor, before, after, st.settings.max_megapixels, side)
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, no-store", "X-Registration": how}
    )


class ComparabilityOut(BaseModel):
    comparable: bool
    score: float = Field(description="1 fully comparable, 0 not at all")
    warnings: list[str]


@router.get("/photos/{photo_id}/comparability", response_model=ComparabilityOut)
def photo_comparability(photo_id: int, to: int, request: Request, actor: ApiActor, db: DB) -> dict[str, Any]:
    """Whether this follow-up photo can be compared with the baseline photo ``to``: the report's verdict."""
    after, before = sv.get_photo(db, actor, photo_id), sv.get_photo(db, actor, to)
    return sv.pair_comparability(db, request.app.state.store, before, after)


@router.get("/photos/{photo_id}/overlay.jpg", response_class=Response)
def photo_overlay(photo_id: int, request: Request, actor: ApiActor, db: DB) -> Response:
    """The photo with its current marks drawn and a legend of the counts (no metadata)."""
    import io

    from PIL import Image

    from lesioncount.io import read_image
    from lesioncount.report.overlay import draw_overlay
    from lesioncount.web.marks import lesions_of

    ph = sv.get_photo(db, actor, photo_id)
    mv = sv.current_version(db, ph)
    st = request.app.state
    image = read_image(st.store.original_path(ph.sha256), max_megapixels=st.settings.max_megapixels)
    marked = draw_overlay(
        image,
        lesions_of(mv.marks if mv else []),
        counts=mv.counts if mv else None,
        max_side_px=st.settings.display_max_side_px,
    )
    buf = io.BytesIO()
    Image.fromarray(marked).save(buf, format="JPEG", quality=88)
    return Response(buf.getvalue(), media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.patch("/photos/{photo_id}", response_model=PhotoOut)
def change_photo(photo_id: int, body: PhotoChangeIn, request: Request, actor: ApiActor, db: DB) -> dict[str, Any]:
    """Correct a photo's view, or choose it for its view's counts when a visit has two photos of one view."""
    ph = sv.get_photo(db, actor, photo_id)
    sv.update_photo(db, actor, ph, view=body.view, use_for_counts=body.use_for_counts, ip=client_ip(request))
    return photo_json(db, ph)


@router.post("/photos/{photo_id}/marks", response_model=PhotoOut)
def correct_marks(photo_id: int, body: CorrectionIn, request: Request, actor: ApiActor, db: DB) -> dict[str, Any]:
    """Add, remove or reclassify one mark, or revert to an earlier version; stored as a new version, the
    counts follow.

    An added mark without a ``region`` gets the facial region found at its point."""
    ph = sv.get_photo(db, actor, photo_id)
    change = body.model_dump(exclude={"base_version"}, exclude_none=True)
    st = request.app.state
    path = st.store.original_path(ph.sha256)
    sv.correct_marks(
        db, actor, ph, change, body.base_version, lambda x, y: st.regions.region_at(path, x, y), client_ip(request)
    )
    return photo_json(db, ph)


@router.get("/photos/{photo_id}/versions", response_model=list[VersionOut])
def mark_versions(photo_id: int, actor: ApiActor, db: DB) -> list[dict[str, Any]]:
    ph = sv.get_photo(db, actor, photo_id)
    return [
        {
            "version": mv.version,
            "change": mv.change,
            "by": mv.author.username if mv.author else "model",
            "at": mv.created_at.isoformat() + "Z",
            "counts": mv.counts,
        }
        for mv in ph.mark_versions
    ]


@router.get("/patients/{patient_id}/report.{fmt}", response_class=Response)
def patient_report(patient_id: int, fmt: Literal["html", "pdf"], request: Request, actor: ApiActor, db: DB) -> Response:
    """The patient's treatment-response report (HTML or PDF), built from the corrected marks."""
    return report_download(request, db, actor, patient_id, fmt)


class ReportJobOut(BaseModel):
    id: str
    status: str = Field(description="queued, running, done or failed")
    stage: str = Field(description="what the builder is doing now")
    elapsed_s: float
    error: str
    download: str | None = Field(description="where to fetch the report once done")


@router.post("/patients/{patient_id}/report-jobs", status_code=202, response_model=ReportJobOut)
def start_report(
    patient_id: int, fmt: Literal["html", "pdf"], request: Request, actor: ApiActor, db: DB
) -> dict[str, Any]:
    """Build the patient's report in the background; poll ``GET /report-jobs/{id}``, then download it."""
    return request.app.state.reports.start(db, actor, patient_id, fmt, client_ip(request)).public()


@router.get("/report-jobs/{job_id}", response_model=ReportJobOut)
def report_job(job_id: str, request: Request, actor: ApiActor) -> dict[str, Any]:
    return request.app.state.reports.get(actor, job_id).public()


@router.get("/report-jobs/{job_id}/download", response_class=Response)
def report_job_download(job_id: str, request: Request, actor: ApiActor) -> Response:
    job = request.app.state.reports.get(actor, job_id)
    if job.status != "done":
        raise HTTPException(409, f"the report is not ready ({job.status}: {job.error or job.stage})")
    return Response(
        job.content,
        media_type=job.media_type,
        headers={"Content-Disposition": f'attachment; filename="{job.filename}"', "Cache-Control": "private, no-store"},
    )


@router.post("/tokens", status_code=201, response_model=TokenOut)
def new_token(body: TokenIn, request: Request, actor: ApiActor, db: DB) -> dict[str, Any]:
    """A new API token for the caller; shown once, store it safely. Only a logged-in session may make one:
    a token never mints tokens (which would outlive its own revocation)."""
    token, row = sv.new_token(db, actor, body.name, body.days, body.scopes, client_ip(request))
    return _token_out(row) | {"token": token}


@router.get("/tokens", response_model=list[TokenInfoOut])
def list_tokens(actor: ApiActor, db: DB) -> list[dict[str, Any]]:
    """The caller's tokens that still work (never the tokens themselves: only their names and dates)."""
    return [_token_out(t) for t in sv.list_tokens(db, actor)]


@router.delete("/tokens/{token_id}", status_code=204, response_class=Response)
def revoke_token(token_id: int, request: Request, actor: ApiActor, db: DB) -> Response:
    """Revoke one of the caller's tokens (a token may revoke itself)."""
    sv.revoke_token(db, actor, token_id, client_ip(request))
    return Response(status_code=204)


def _token_out(row: ApiToken) -> dict[str, Any]:
    def iso(t: dt.datetime | None) -> str | None:
        return t.isoformat() + "Z" if t else None

    return {
        "id": row.id,
        "name": row.name,
        "scopes": row.scopes,
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
        "last_used_at": iso(row.last_used_at),
    }
