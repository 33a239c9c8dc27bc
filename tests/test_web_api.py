"""The clinic web app through its pages and JSON API, with a fake counter (no model needed)."""

from __future__ import annotations

import datetime as dt
import os
import re
from types import SimpleNamespace

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("argon2")

from fastapi.testclient import TestClient  # noqa: E402

from lesioncount.types import COUNT_KEYS  # noqa: E402
from lesioncount.web import Settings, create_app  # noqa: E402
from lesioncount.web.marks import MarkError, apply_change, counts_of  # noqa: E402
from lesioncount.web.testing import FakeCounter, add_user, login, photo_bytes  # noqa: E402

PW = "correct horse battery"


@pytest.fixture
def web(tmp_path):
    fake = FakeCounter()
    app = create_app(Settings(data_dir=tmp_path, counter_factory=lambda: fake))
    add_user(app, "North", "alice", PW, "admin")
    add_user(app, "North", "carl", PW, "clinician")
    with TestClient(app) as client:
        yield SimpleNamespace(app=app, client=client, fake=fake, tmp=tmp_path)


def _patient_and_visit(c, csrf, code="P-001", birth_year=1990, when="2026-01-10", treatment="botulinum toxin"):
    p = c.post("/api/v1/patients", json={"code": code, "birth_year": birth_year}, headers={"X-CSRF-Token": csrf})
    assert p.status_code == 201, p.text
    v = c.post(
        f"/api/v1/patients/{p.json()['id']}/visits",
        json={"visit_date": when, "treatment": treatment, "units": 20, "areas": "forehead"},
        headers={"X-CSRF-Token": csrf},
    )
    assert v.status_code == 201, v.text
    return p.json()["id"], v.json()["id"]


def _upload(web, csrf, visit_id, *files, view="front"):
    return web.client.post(
        f"/api/v1/visits/{visit_id}/photos",
        data={"view": view},
        files=[("files", (name, data, "image/jpeg")) for name, data in files],
        headers={"X-CSRF-Token": csrf},
    )


def test_login_create_patient_and_visit_through_forms(web):
    c = web.client
    csrf = login(c, "alice", PW)
    r = c.post("/patients", data={"csrf_token": csrf, "code": "P-7", "birth_year": "2001", "notes": "oily skin"})
    assert r.status_code == 200 and "Patient P-7" in r.text
    pid = int(re.search(r"/patients/(\d+)/visits", r.text).group(1))
    r = c.post(
        f"/patients/{pid}/visits",
        data={"csrf_token": csrf, "visit_date": "2026-03-01", "treatment": "botulinum toxin", "units": "30"},
    )
    assert r.status_code == 200 and "Visit 2026-03-01" in r.text
    assert c.get("/").text.count("P-7") >= 1


def test_upload_counts_in_background_and_reports_progress(web):
    csrf = login(web.client, "carl", PW)
    _, vid = _patient_and_visit(web.client, csrf)
    r = _upload(web, csrf, vid, ("a.jpg", photo_bytes(seed=1)), ("b.png", photo_bytes(seed=2, fmt="PNG")))
    assert r.status_code == 201, r.text
    assert [p["status"] for p in r.json()["photos"]] == ["queued", "queued"]
    assert web.app.state.queue.wait_idle(30)
    prog = web.client.get(f"/api/v1/visits/{vid}/progress").json()
    assert prog["total"] == 2 and prog["finished"] == 2
    assert all(p["status"] == "done" for p in prog["photos"])
    photo = web.client.get(f"/api/v1/photos/{prog['photos'][0]['id']}").json()
    assert photo["version"] == 1 and photo["counts"]["inflammatory"] == 3 and photo["counts"]["total_acne"] == 5
    assert len(photo["marks"]) == 6 and photo["marks"][0]["source"] == "model"
    assert photo["counts_by_region"]["forehead"]["inflammatory"] == 1  # the fake's first mark
    assert web.client.get(f"/visits/{vid}").text.count("done") >= 2


def test_upload_without_javascript_through_the_plain_form(web):
    c = web.client
    csrf = login(c, "carl", PW)
    _, vid = _patient_and_visit(c, csrf)
    r = c.post(
        f"/visits/{vid}/photos",
        data={"csrf_token": csrf, "view": "left"},
        files=[("files", ("l.jpg", photo_bytes(seed=8), "image/jpeg"))],
    )
    assert r.status_code == 200 and "l.jpg" in r.text
    assert web.app.state.queue.wait_idle(30)
    assert c.get(f"/api/v1/visits/{vid}").json()["photos"][0]["view"] == "left"


@pytest.mark.parametrize("mode", ["I;16", "RGBA", "P", "L"])
def test_unusual_photo_modes_are_served_as_rgb(web, mode):
    import io

    import numpy as np
    from PIL import Image

    rgb = Image.open(io.BytesIO(photo_bytes(seed=6, fmt="PNG"))).convert("RGB")
    if mode == "I;16":
        im = Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257).astype(np.uint16))
    else:
        im = rgb.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    csrf = login(web.client, "carl", PW)
    _, vid = _patient_and_visit(web.client, csrf)
    r = _upload(web, csrf, vid, ("odd.png", buf.getvalue()))
    assert r.status_code == 201, r.text
    served = web.client.get(f"/api/v1/photos/{r.json()['photos'][0]['id']}/image.jpg").content
    out = np.asarray(Image.open(io.BytesIO(served)))
    assert out.shape == (240, 320, 3) and 100 < out.mean() < 230  # neither black nor blown out


def test_edit_patient_and_delete_photo(web):
    c = web.client
    csrf = login(c, "carl", PW)
    h = {"X-CSRF-Token": csrf}
    pid, vid = _patient_and_visit(c, csrf, birth_year=1990)
    r = c.post(f"/patients/{pid}", data={"csrf_token": csrf, "birth_year": "2012", "notes": "typo fixed"})
    assert r.status_code == 200 and "Born 2012" in r.text and "under 18" in r.text
    assert (
        c.put(f"/api/v1/patients/{pid}", json={"birth_year": 1991, "notes": ""}, headers=h).json()["birth_year"] == 1991
    )

    same = photo_bytes(seed=12)
    a = _upload(web, csrf, vid, ("a.jpg", same)).json()["photos"][0]["id"]
    b = _upload(web, csrf, vid, ("b.jpg", same)).json()["photos"][0]["id"]  # the same bytes twice
    web.app.state.queue.wait_idle(30)
    store = web.app.state.store
    sha = c.get(f"/api/v1/photos/{a}").json()["sha256"]
    c.get(f"/api/v1/photos/{a}/image.jpg")
    assert c.delete(f"/api/v1/photos/{a}", headers=h).status_code == 204
    assert c.get(f"/api/v1/photos/{a}").status_code == 404
    assert store.original_path(sha).exists()  # still used by b
    r = c.post(f"/photos/{b}/delete", data={"csrf_token": csrf, "confirm": "on"})
    assert r.status_code == 200 and f"/visits/{vid}" in str(r.url)
    assert not store.original_path(sha).exists() and not store.display_path(sha).exists()
    assert c.get(f"/api/v1/visits/{vid}").json()["photos"] == []


def test_heic_photos_are_accepted_and_served_as_jpeg(web):
    from lesioncount.io import HEIC_SUPPORTED

    if not HEIC_SUPPORTED:
        pytest.skip("pillow-heif is not installed")
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(photo_bytes(seed=14))).save(buf, format="HEIF")
    csrf = login(web.client, "carl", PW)
    _, vid = _patient_and_visit(web.client, csrf)
    r = _upload(web, csrf, vid, ("phone.heic", buf.getvalue()))
    assert r.status_code == 201, r.text
    served = web.client.get(f"/api/v1/photos/{r.json()['photos'][0]['id']}/image.jpg")
    assert served.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(served.content)).size == (320, 240)


def test_photos_left_uncounted_are_counted_at_the_next_start(web, tmp_path, monkeypatch):
    csrf = login(web.client, "carl", PW)
    _, vid = _patient_and_visit(web.client, csrf)
    monkeypatch.setattr(web.app.state.queue, "submit", lambda _pid: None)  # the server stops before counting
    assert _upload(web, csrf, vid, ("a.jpg", photo_bytes(seed=1))).status_code == 201
    assert web.client.get(f"/api/v1/visits/{vid}/progress").json()["photos"][0]["status"] == "queued"
    again = create_app(Settings(data_dir=tmp_path, counter_factory=FakeCounter))
    assert again.state.queue.wait_idle(30)
    with TestClient(again) as c2:
        login(c2, "carl", PW)
        assert c2.get(f"/api/v1/visits/{vid}/progress").json()["finished"] == 1


def _unreadable(self, path, **kwargs):
    from lesioncount.io import ImageReadError

    raise ImageReadError(path, "corrupt or truncated image")


@pytest.mark.parametrize(
    ("count", "said"),
    [
        (None, "counting failed: fake counter failure"),  # the fake's own failure
        (_unreadable, "the photo could not be read: corrupt or truncated image"),  # no store path shown
    ],
)
def test_failed_count_is_reported(web, monkeypatch, count, said):
    web.fake.fail = True
    if count is not None:
        monkeypatch.setattr(type(web.fake), "count", count)
    csrf = login(web.client, "carl", PW)
    _, vid = _patient_and_visit(web.client, csrf)
    assert _upload(web, csrf, vid, ("a.jpg", photo_bytes())).status_code == 201
    assert web.app.state.queue.wait_idle(30)
    p = web.client.get(f"/api/v1/visits/{vid}/progress").json()["photos"][0]
    assert p["status"] == "failed" and p["error"] == said


def test_undo_and_revert_are_new_versions_and_ids_are_never_reused(web):
    c = web.client
    csrf = login(c, "carl", PW)
    h = {"X-CSRF-Token": csrf}
    _, vid = _patient_and_visit(c, csrf)
    _upload(web, csrf, vid, ("a.jpg", photo_bytes()))
    web.app.state.queue.wait_idle(30)
    pid = c.get(f"/api/v1/visits/{vid}").json()["photos"][0]["id"]
    url = f"/api/v1/photos/{pid}/marks"
    model = c.get(f"/api/v1/photos/{pid}").json()
    added = c.post(url, json={"op": "add", "cls": "scar", "x": 10, "y": 12}, headers=h).json()
    new_id = added["marks"][-1]["id"]
    c.post(url, json={"op": "remove", "id": "m1"}, headers=h)
    undone = c.post(url, json={"op": "revert", "to_version": 2, "base_version": 3}, headers=h).json()
    assert undone["version"] == 4 and undone["marks"] == added["marks"] and undone["counts"] == added["counts"]
    back = c.post(url, json={"op": "revert", "to_version": 1}, headers=h).json()
    assert back["marks"] == model["marks"] and back["counts"] == model["counts"] and back["version"] == 5
    again = c.post(url, json={"op": "add", "cls": "scar", "x": 20, "y": 22}, headers=h).json()
    assert again["marks"][-1]["id"] != new_id  # the undone mark's id keeps meaning that mark in the history
    changes = [v["change"] for v in c.get(f"/api/v1/photos/{pid}/versions").json()]
    assert changes[3:5] == ["undid v3", "reverted to v1"]
    for bad in ({"to_version": 6}, {"to_version": 99}, {}):
        r = c.post(url, json={"op": "revert"} | bad, headers=h)
        assert r.status_code == 400, bad


def test_corrections_are_versions_and_counts_follow(web):
    c = web.client
    csrf = login(c, "carl", PW)
    _, vid = _patient_and_visit(c, csrf)
    _upload(web, csrf, vid, ("a.jpg", photo_bytes()))
    web.app.state.queue.wait_idle(30)
    pid = c.get(f"/api/v1/visits/{vid}").json()["photos"][0]["id"]
    h = {"X-CSRF-Token": csrf}
    ph = c.get(f"/api/v1/photos/{pid}").json()
    first = ph["marks"][0]
    assert first["class"] == "inflammatory"

    r = c.post(f"/api/v1/photos/{pid}/marks", json={"op": "remove", "id": first["id"], "base_version": 1}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and r.json()["counts"]["inflammatory"] == 2 and r.json()["changed_by"] == "carl"
    second = r.json()["marks"][0]
    r = c.post(
        f"/api/v1/photos/{pid}/marks",
        json={"op": "reclassify", "id": second["id"], "cls": "comedone", "base_version": 2},
        headers=h,
    )
    assert r.json()["counts"]["inflammatory"] == 1 and r.json()["counts"]["comedone"] == 3
    r = c.post(
        f"/api/v1/photos/{pid}/marks", json={"op": "add", "cls": "scar", "x": 10, "y": 12, "base_version": 3}, headers=h
    )
    assert r.json()["version"] == 4 and r.json()["counts"]["scar"] == 2
    assert sum(c["scar"] for c in r.json()["counts_by_region"].values()) == 2
    assert r.json()["marks"][-1]["source"] == "manual" and r.json()["model_counts"]["inflammatory"] == 3

    stale = c.post(f"/api/v1/photos/{pid}/marks", json={"op": "remove", "id": "m2", "base_version": 1}, headers=h)
    assert stale.status_code == 409 and "version 4" in stale.json()["detail"]
    off = c.post(f"/api/v1/photos/{pid}/marks", json={"op": "add", "cls": "scar", "x": 9999, "y": 1}, headers=h)
    assert off.status_code == 400
    versions = c.get(f"/api/v1/photos/{pid}/versions").json()
    assert [v["by"] for v in versions] == ["model", "carl", "carl", "carl"]
    assert "reclassified" in versions[2]["change"]
    # The patient's counts use the corrected marks.
    summary = c.get(f"/api/v1/patients/{ph['patient_id']}").json()["summary"]
    assert summary["series"]["front"][0]["counts"]["inflammatory"] == 1


def test_patient_course_change_from_baseline_report_and_toxin_warning(web):
    c = web.client
    csrf = login(c, "carl", PW)
    h = {"X-CSRF-Token": csrf}
    year = dt.date.today().year
    # Visit dates relative to today (a visit in the future is refused), both while the patient is 15 or 16.
    first, second = dt.date.today() - dt.timedelta(days=90), dt.date.today() - dt.timedelta(days=30)
    pid, v1 = _patient_and_visit(c, csrf, code="P-teen", birth_year=year - 16, when=first.isoformat())
    _upload(web, csrf, v1, ("a.jpg", photo_bytes(seed=1)))
    web.app.state.queue.wait_idle(30)
    web.fake.counts = {"inflammatory": 1, "comedone": 2, "scar": 1}
    v2 = c.post(
        f"/api/v1/patients/{pid}/visits", json={"visit_date": second.isoformat(), "treatment": "follow-up"}, headers=h
    ).json()["id"]
    _upload(web, csrf, v2, ("b.jpg", photo_bytes(seed=2)))
    web.app.state.queue.wait_idle(30)

    s = c.get(f"/api/v1/patients/{pid}").json()["summary"]
    later = s["series"]["front"][1]
    assert later["change"]["inflammatory"] == {"abs": -2, "pct": -66.7}
    assert later["change"]["comedone"] == {"abs": 0, "pct": 0.0}
    assert "under 18" in s["warning"]

    page = c.get(f"/patients/{pid}")
    assert "under 18" in page.text and "-67%" in page.text and "<svg" in page.text and "Before and after" in page.text
    rep = c.get(f"/patients/{pid}/report.html")
    assert rep.status_code == 200 and "attachment" in rep.headers["content-disposition"]
    # The compare helper's report, built from the stored photos and their marks.
    # 3 -> 1 is within the count's re-take noise (max(2 lesions, 15%)), and the report says so.
    within = "<td>-2 <span class=small>(within re-take noise)</span></td>"
    assert "P-teen" in rep.text and f"<td>3</td><td>1</td>{within}<td>-67%</td>" in rep.text
    # "67% fewer" makes a responder by the rule, but a change that small is no evidence: the flag says so.
    assert "<td>-67%</td><td>yes <span class=small>(within re-take noise)</span></td>" in rep.text
    assert "under 18" in rep.text and "<script" not in rep.text
    tok = c.post("/api/v1/tokens", json={"name": "r"}, headers=h).json()["token"]
    with TestClient(web.app) as script:
        pdf = script.get(f"/api/v1/patients/{pid}/report.pdf", headers={"Authorization": f"Bearer {tok}"})
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        assert (
            script.get(f"/api/v1/patients/{pid}/report.doc", headers={"Authorization": f"Bearer {tok}"}).status_code
            == 422
        )


def test_report_falls_back_to_counts_when_the_comparison_fails(web, monkeypatch):
    import lesioncount.web.reports as reports

    def broken(*_a, **_k):
        raise ValueError("registration failed")

    monkeypatch.setattr(reports, "build_comparison", broken)
    c = web.client
    csrf = login(c, "carl", PW)
    pid, v1 = _patient_and_visit(c, csrf, code="P-fb")
    _upload(web, csrf, v1, ("a.jpg", photo_bytes(seed=1)))
    web.app.state.queue.wait_idle(30)
    rep = c.get(f"/patients/{pid}/report.html")
    assert rep.status_code == 200 and "registration failed" in rep.text and "counts only" in rep.text
    assert "(baseline)" in rep.text and "<script" not in rep.text
    pdf = c.get(f"/patients/{pid}/report.pdf")
    assert (
        pdf.status_code == 200 and pdf.content.startswith(b"%PDF") and pdf.headers["content-type"] == "application/pdf"
    )


def test_toxin_warning_rules():
    from lesioncount.web.models import Visit
    from lesioncount.web.services import age_warning

    d = dt.date(2026, 6, 1)
    assert "patient is under 18" in age_warning(2010, [Visit(visit_date=d, treatment="Botox")])
    assert "may be under 18" in age_warning(2008, [Visit(visit_date=d, treatment="botulinum toxin")])
    assert age_warning(2000, [Visit(visit_date=d, treatment="botulinum toxin")]) == ""
    assert age_warning(2010, [Visit(visit_date=d, treatment="topical retinoid")]) == ""
    assert "no birth year" in age_warning(None, [Visit(visit_date=d, treatment="botulinum toxin")])


def test_api_token_works_without_csrf_and_can_be_revoked(web):
    c = web.client
    csrf = login(c, "carl", PW)
    tok = c.post("/api/v1/tokens", json={"name": "ci"}, headers={"X-CSRF-Token": csrf}).json()["token"]
    with TestClient(web.app) as script:
        h = {"Authorization": f"Bearer {tok}"}
        assert script.get("/api/v1/me", headers=h).json()["username"] == "carl"
        assert script.post("/api/v1/patients", json={"code": "P-api"}, headers=h).status_code == 201
        assert script.get("/api/v1/me", headers={"Authorization": "Bearer lct_wrong"}).status_code == 401
        tid = c.get("/account").text
        token_id = re.search(r"/account/tokens/(\d+)/revoke", tid).group(1)
        c.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf})
        assert script.get("/api/v1/me", headers=h).status_code == 401


def test_openapi_describes_the_api(web):
    assert web.client.get("/api/openapi.json").status_code == 401  # the map of the API is not public
    login(web.client, "carl", PW)
    spec = web.client.get("/api/openapi.json").json()
    assert "/api/v1/patients" in spec["paths"] and "/api/v1/photos/{photo_id}/marks" in spec["paths"]
    assert not any(p.startswith("/patients") for p in spec["paths"])  # pages stay out of the schema
    ok = spec["paths"]["/api/v1/photos/{photo_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["$ref"].endswith("/PhotoOut")
    assert "marks" in spec["components"]["schemas"]["PhotoOut"]["properties"]


def test_admin_pages_users_and_audit(web):
    c = web.client
    csrf = login(c, "alice", PW)
    r = c.post("/admin/users", data={"csrf_token": csrf, "username": "vera", "password": PW, "role": "viewer"})
    assert r.status_code == 200 and "vera" in r.text
    bad = c.post("/admin/users", data={"csrf_token": csrf, "username": "x y", "password": "short", "role": "viewer"})
    assert bad.status_code == 400
    audit = c.get("/admin/audit").text
    assert "create_user" in audit and "login" in audit
    # Disabling a user ends their session and their tokens at once.
    with TestClient(web.app) as carl:
        carl_csrf = login(carl, "carl", PW)
        tok = carl.post("/api/v1/tokens", json={"name": "t"}, headers={"X-CSRF-Token": carl_csrf}).json()["token"]
        from lesioncount.web.models import User

        with web.app.state.sessions() as db:
            carl_id = db.query(User).filter(User.username == "carl").one().id
        assert f"/admin/users/{carl_id}/active" in c.get("/admin/users").text
        c.post(f"/admin/users/{carl_id}/active", data={"csrf_token": csrf, "active": "0"})
        assert carl.get("/api/v1/me").status_code == 401
        assert carl.get("/api/v1/me", headers={"Authorization": f"Bearer {tok}"}).status_code == 401
        assert "disable_user" in c.get("/admin/audit").text


def test_restart_keeps_data_and_migrations_match_models(web, tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from lesioncount.web.models import Base

    csrf = login(web.client, "alice", PW)
    _patient_and_visit(web.client, csrf)
    again = create_app(Settings(data_dir=tmp_path, counter_factory=FakeCounter))  # migrates again: a no-op
    with TestClient(again) as c2:
        login(c2, "alice", PW)
        assert [p["code"] for p in c2.get("/api/v1/patients").json()] == ["P-001"]
    with again.state.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_added_marks_get_the_facial_region_at_their_point(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    from lesioncount.web.regions import RegionFinder

    path = tmp_path / "face.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    finder = RegionFinder()
    face = finder.analysis(path)
    assert face.found and finder.analysis(path) is face  # analysed once
    x, y, w, h = face.box
    assert finder.region_at(path, x + w / 2, y + 0.05 * h) == "forehead"
    assert finder.region_at(path, 2, 2) == "other"


def test_apply_change_is_pure_and_checks_its_input():
    marks = [
        {
            "class": "comedone",
            "x": 5,
            "y": 5,
            "area_px": 3,
            "bbox": [4, 4, 2, 2],
            "score": 0.8,
            "region": "nose",
            "id": "m1",
            "source": "model",
        }
    ]
    before = [dict(m) for m in marks]
    out, what = apply_change(marks, {"op": "reclassify", "id": "m1", "cls": "scar"}, width=10, height=10)
    assert marks == before and out[0]["class"] == "scar" and "comedone -> scar" in what
    out, _ = apply_change(out, {"op": "add", "cls": "inflammatory", "x": 1, "y": 2}, width=10, height=10)
    assert [m["id"] for m in out] == ["m1", "m2"] and counts_of(out)["total_acne"] == 1
    with pytest.raises(MarkError, match="unknown class"):
        apply_change(marks, {"op": "add", "cls": "mole", "x": 1, "y": 1}, width=10, height=10)
    with pytest.raises(MarkError, match="no mark"):
        apply_change(marks, {"op": "remove", "id": "m9"}, width=10, height=10)
    with pytest.raises(MarkError, match="unknown correction"):
        apply_change(marks, {"op": "rotate"}, width=10, height=10)
    assert counts_of([]) == {"inflammatory": 0, "comedone": 0, "scar": 0, "total_acne": 0}


@pytest.mark.skipif(
    not os.environ.get("LESIONCOUNT_TEST_DATABASE_URL"),
    reason="set LESIONCOUNT_TEST_DATABASE_URL to an empty PostgreSQL test database to run this",
)
def test_postgresql_round_trip(tmp_path):
    """The same app on PostgreSQL: migrations, JSON columns, clinic scoping, corrections. Wipes that database."""
    from sqlalchemy import text

    from lesioncount.web.db import make_engine
    from lesioncount.web.models import Base

    url = os.environ["LESIONCOUNT_TEST_DATABASE_URL"]
    engine = make_engine(url)
    Base.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()

    fake = FakeCounter()
    app = create_app(Settings(data_dir=tmp_path, database_url=url, counter_factory=lambda: fake))
    add_user(app, "North", "carl", PW, "clinician")
    add_user(app, "South", "sam", PW, "admin")
    with TestClient(app) as c:
        csrf = login(c, "carl", PW)
        pid, vid = _patient_and_visit(c, csrf)
        r = c.post(
            f"/api/v1/visits/{vid}/photos",
            files=[("files", ("a.jpg", photo_bytes(seed=3), "image/jpeg"))],
            headers={"X-CSRF-Token": csrf},
        )
        assert r.status_code == 201
        assert app.state.queue.wait_idle(30)
        photo_id = r.json()["photos"][0]["id"]
        r = c.post(
            f"/api/v1/photos/{photo_id}/marks",
            json={"op": "remove", "id": "m1", "base_version": 1},
            headers={"X-CSRF-Token": csrf},
        )
        assert r.json()["version"] == 2 and r.json()["counts"]["inflammatory"] == 2
        assert c.get(f"/api/v1/patients/{pid}").json()["summary"]["series"]["front"][0]["counts"]["total_acne"] == 4
    with TestClient(app) as other:
        login(other, "sam", PW)
        assert other.get(f"/api/v1/photos/{photo_id}").status_code == 404
    app.state.engine.dispose()


def test_visit_dates_in_the_future_or_before_birth_are_refused(web):
    c = web.client
    csrf = login(c, "carl", PW)
    h = {"X-CSRF-Token": csrf}
    pid = c.post("/api/v1/patients", json={"code": "P-dates", "birth_year": 2000}, headers=h).json()["id"]
    future = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    r = c.post(f"/api/v1/patients/{pid}/visits", json={"visit_date": future}, headers=h)
    assert r.status_code in (400, 422) and "in the future" in r.text
    r = c.post(f"/api/v1/patients/{pid}/visits", json={"visit_date": "1999-06-01"}, headers=h)
    assert r.status_code in (400, 422) and "before the patient's birth year" in r.text


def test_photos_carry_cross_origin_resource_policy_and_new_users_are_clinicians(web):
    from lesioncount.web import services as sv

    c = web.client
    login(c, "alice", PW)
    r = c.get("/api/v1/me")
    assert r.headers.get("Cross-Origin-Resource-Policy") == "same-origin"
    assert sv.DEFAULT_ROLE == "clinician"
    page = c.get("/admin/users").text
    assert "<option selected>clinician</option>" in page


def test_a_token_cannot_mint_tokens(web):
    c = web.client
    csrf = login(c, "carl", PW)
    tok = c.post("/api/v1/tokens", json={"name": "script"}, headers={"X-CSRF-Token": csrf}).json()["token"]
    with TestClient(web.app) as script:
        h = {"Authorization": f"Bearer {tok}"}
        assert script.get("/api/v1/me", headers=h).status_code == 200
        r = script.post("/api/v1/tokens", json={"name": "child"}, headers=h)
        assert r.status_code == 403 and "logged-in session" in r.text


def test_a_real_onnx_model_counts_an_upload(tmp_path, astronaut):
    """Not the fake: the toy ONNX model through LesionCounter, face stage included, as in production."""
    import io

    import numpy as np
    from PIL import Image
    from toy_model import make_toy_model, red_blob

    from lesioncount.pipeline import LesionCounter

    counter = LesionCounter(make_toy_model(tmp_path / "toy.onnx"), threads=1)
    photo = red_blob(red_blob(astronaut, 250, 140, 3), 190, 150, 3)  # two papules on her face
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="PNG")
    app = create_app(Settings(data_dir=tmp_path / "web", counter_factory=lambda: counter))
    add_user(app, "North", "carl", PW, "clinician")
    with TestClient(app) as client:
        web = SimpleNamespace(app=app, client=client)
        csrf = login(client, "carl", PW)
        _, vid = _patient_and_visit(client, csrf)
        pid = _upload(web, csrf, vid, ("astronaut.png", buf.getvalue())).json()["photos"][0]["id"]
        assert app.state.queue.wait_idle(60)
        got = client.get(f"/api/v1/photos/{pid}").json()
    direct = counter.count(photo)
    assert got["status"] == "done" and direct.face.found
    # The web app counts the upload exactly as the core counts the same pixels (the toy also takes some
    # reddish skin for papules: 16 here), and the two planted papules are among its marks.
    assert got["counts"] == got["model_counts"] and got["counts"]["inflammatory"] == direct.counts["inflammatory"]
    web_xy = np.array(sorted((m["x"], m["y"]) for m in got["marks"]))
    core_xy = np.array(sorted((les.x, les.y) for les in direct.lesions))
    assert web_xy.shape == core_xy.shape and np.abs(web_xy - core_xy).max() < 0.5
    for x, y in ((250, 140), (190, 150)):
        assert np.hypot(*(web_xy - (x, y)).T).min() <= 3, (x, y)
    for x, y in ((250, 140), (190, 150)):
        assert any(abs(m["x"] - x) <= 3 and abs(m["y"] - y) <= 3 for m in got["marks"]), (x, y)


def test_patient_page_chart_by_date_with_grades_regions_totals_and_warnings(web):
    c = web.client
    csrf = login(c, "carl", PW)
    pid, v1 = _patient_and_visit(c, csrf, when="2026-01-01")
    _upload(web, csrf, v1, ("f.jpg", photo_bytes(seed=1)))
    _upload(web, csrf, v1, ("l.jpg", photo_bytes(seed=2)), view="left")
    web.app.state.queue.wait_idle(30)
    _, v2 = _patient_and_visit_for(c, csrf, pid, "2026-01-11")
    _, v3 = _patient_and_visit_for(c, csrf, pid, "2026-03-12")
    web.fake.warnings = ("underexposed: 1.2 stops dark",)
    _upload(web, csrf, v2, ("f2.jpg", photo_bytes(seed=3)))
    _upload(web, csrf, v2, ("l2.jpg", photo_bytes(seed=4)), view="left")
    web.app.state.queue.wait_idle(30)  # counted while the warning is on
    web.fake.warnings = ()
    _upload(web, csrf, v3, ("f3.jpg", photo_bytes(seed=5)))  # no left photo at the last visit
    web.app.state.queue.wait_idle(30)
    page = c.get(f"/patients/{pid}").text
    # Visits are placed by date: day 10 sits a seventh of the way from baseline to day 70.
    xs = [float(x) for x in re.findall(r'<text x="([\d.]+)" y="[\d.]+" class="tick x-tick"', page)]
    assert len(xs) == 3 and (xs[1] - xs[0]) / (xs[2] - xs[0]) == pytest.approx(10 / 70, abs=0.01)
    assert "day 10" in page and "day 70" in page
    y_labels = re.findall(r'class="tick y-tick" text-anchor="end">(\d+)<', page)
    assert y_labels[0] == "0" and len(y_labels) >= 3  # labelled in steps, not just 0 and the top
    # The Hayashi grade of each visit (the fake's 5 acne lesions: grade 0), and the photo's warning.
    assert re.findall(r'<td class="num grade">(\S+)</td>', page) == ["0", "0", "0"]
    assert "underexposed" in page and page.count('class="dot warned"') == len(COUNT_KEYS)
    assert 'id="region-table"' in page and 'data-region="forehead">1<' in page
    # All views together: only the visits with both views (the last has no left photo).
    every = c.get(f"/patients/{pid}?view=all views").text
    totals = re.findall(r'data-class="total_acne"><span class="count">(\d+)<', every)
    assert totals == ["10", "10"]


def _patient_and_visit_for(c, csrf, pid, when):
    v = c.post(f"/api/v1/patients/{pid}/visits", json={"visit_date": when}, headers={"X-CSRF-Token": csrf})
    assert v.status_code == 201, v.text
    return pid, v.json()["id"]


def test_two_photos_of_one_view_the_clinician_chooses_and_views_can_be_corrected(web):
    c = web.client
    csrf = login(c, "carl", PW)
    h = {"X-CSRF-Token": csrf}
    pid, vid = _patient_and_visit(c, csrf)
    first = _upload(web, csrf, vid, ("a.jpg", photo_bytes(seed=1))).json()["photos"][0]["id"]
    web.app.state.queue.wait_idle(30)
    web.fake.counts = {"inflammatory": 9, "comedone": 0, "scar": 0}
    second = _upload(web, csrf, vid, ("b.jpg", photo_bytes(seed=2))).json()["photos"][0]["id"]
    web.app.state.queue.wait_idle(30)
    page = c.get(f"/visits/{vid}").text
    assert 'id="doubled-front"' in page and page.count(">used<") == 1

    def front_inflammatory():
        return c.get(f"/api/v1/patients/{pid}").json()["summary"]["series"]["front"][0]["counts"]["inflammatory"]

    assert front_inflammatory() == 9  # the newest upload, until someone chooses
    r = c.post(f"/photos/{first}/view", data={"csrf_token": csrf, "use": "1"})
    assert r.status_code == 200 and front_inflammatory() == 3
    # The second photo was really the left view: relabel it; the warning goes, both views count.
    r = c.patch(f"/api/v1/photos/{second}", json={"view": "left"}, headers=h)
    assert r.status_code == 200 and r.json()["view"] == "left"
    assert 'id="doubled-front"' not in c.get(f"/visits/{vid}").text
    series = c.get(f"/api/v1/patients/{pid}").json()["summary"]["series"]
    assert series["front"][0]["counts"]["inflammatory"] == 3 and series["left"][0]["counts"]["inflammatory"] == 9
    assert c.patch(f"/api/v1/photos/{second}", json={"view": "top"}, headers=h).status_code == 422
    with TestClient(web.app) as viewer:
        add_user(web.app, "North", "vera", PW, "viewer")
        vcsrf = login(viewer, "vera", PW)
        r = viewer.patch(f"/api/v1/photos/{first}", json={"view": "right"}, headers={"X-CSRF-Token": vcsrf})
        assert r.status_code == 403
    from lesioncount.web.models import AuditEvent

    with web.app.state.sessions() as db:
        actions = {e.action for e in db.query(AuditEvent).all()}
    assert {"change_view", "choose_photo"} <= actions


def test_patient_search_and_visit_edit_and_delete(web):
    c = web.client
    csrf = login(c, "carl", PW)
    h = {"X-CSRF-Token": csrf}
    pid, vid = _patient_and_visit(c, csrf, code="ACN-017")
    _patient_and_visit(c, csrf, code="ROS-002")
    c.put(f"/api/v1/patients/{pid}", json={"birth_year": 1990, "notes": "Trial 100%_arm"}, headers=h)
    assert [p["code"] for p in c.get("/api/v1/patients", params={"q": "acn"}).json()] == ["ACN-017"]
    assert [p["code"] for p in c.get("/api/v1/patients", params={"q": "100%_"}).json()] == ["ACN-017"]
    # Wildcards are literal: "%" finds the notes holding a "%", not every patient.
    assert [p["code"] for p in c.get("/api/v1/patients", params={"q": "%"}).json()] == ["ACN-017"]
    page = c.get("/", params={"q": "ros"}).text
    assert "ROS-002" in page and "ACN-017" not in page
    assert 'No patient matches "zzz"' in c.get("/", params={"q": "zzz"}).text

    r = c.post(
        f"/visits/{vid}", data={"csrf_token": csrf, "visit_date": "2026-01-12", "treatment": "none", "units": ""}
    )
    assert r.status_code == 200 and "Visit 2026-01-12" in r.text
    future = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    assert c.put(f"/api/v1/visits/{vid}", json={"visit_date": future}, headers=h).status_code == 400
    _upload(web, csrf, vid, ("a.jpg", photo_bytes(seed=31)))
    web.app.state.queue.wait_idle(30)
    sha = c.get(f"/api/v1/photos/{c.get(f'/api/v1/visits/{vid}').json()['photos'][0]['id']}").json()["sha256"]
    assert web.app.state.store.original_path(sha).exists()
    assert c.post(f"/visits/{vid}/delete", data={"csrf_token": csrf}).status_code == 400  # not confirmed
    r = c.post(f"/visits/{vid}/delete", data={"csrf_token": csrf, "confirm": "on"})
    assert r.status_code == 200 and f"/patients/{pid}" in str(r.url)
    assert c.get(f"/api/v1/visits/{vid}").status_code == 404 and not web.app.state.store.original_path(sha).exists()


def test_erasure_removes_the_patient_and_every_file(web):
    c = web.client
    csrf = login(c, "carl", PW)
    h = {"X-CSRF-Token": csrf}
    pid, vid = _patient_and_visit(c, csrf, code="ERASE-1")
    _upload(web, csrf, vid, ("a.jpg", photo_bytes(seed=41)), ("b.jpg", photo_bytes(seed=42)))
    web.app.state.queue.wait_idle(30)
    photos = c.get(f"/api/v1/visits/{vid}").json()["photos"]
    c.get(f"/api/v1/photos/{photos[0]['id']}/image.jpg")  # a display copy exists too
    shas = [c.get(f"/api/v1/photos/{p['id']}").json()["sha256"] for p in photos]
    store = web.app.state.store
    assert c.delete(f"/api/v1/patients/{pid}", params={"confirm": "ERASE"}, headers=h).status_code == 400
    r = c.post(f"/patients/{pid}/erase", data={"csrf_token": csrf, "confirm": "ERASE-1"})
    assert r.status_code == 200
    assert c.get(f"/api/v1/patients/{pid}").status_code == 404
    assert all(not store.original_path(s).exists() and not store.display_path(s).exists() for s in shas)
    from lesioncount.web.models import MarkVersion, Photo, Visit

    with web.app.state.sessions() as db:
        assert db.query(Photo).count() == db.query(Visit).count() == db.query(MarkVersion).count() == 0
    with TestClient(web.app) as admin:
        login(admin, "alice", PW)
        assert "erase_patient" in admin.get("/admin/audit").text


def test_password_change_reset_and_roles(web):
    c = web.client
    csrf = login(c, "carl", PW)
    tok = c.post("/api/v1/tokens", json={"name": "t"}, headers={"X-CSRF-Token": csrf}).json()["token"]
    with TestClient(web.app) as other:  # carl's second session, on another computer
        login(other, "carl", PW)
        bad = c.post(
            "/account/password",
            data={"csrf_token": csrf, "current": "wrong", "new": "n3w password", "again": "n3w password"},
        )
        assert "current password is wrong" in bad.text
        r = c.post(
            "/account/password",
            data={"csrf_token": csrf, "current": PW, "new": "n3w password", "again": "n3w password"},
        )
        assert "Password changed" in r.text
        assert c.get("/api/v1/me").status_code == 200  # this session stays
        assert other.get("/api/v1/me").status_code == 401  # the other one ended
        assert other.get("/api/v1/me", headers={"Authorization": f"Bearer {tok}"}).status_code == 401
    with TestClient(web.app) as admin:
        acsrf = login(admin, "alice", PW)
        from lesioncount.web.models import User

        with web.app.state.sessions() as db:
            ids = {u.username: u.id for u in db.query(User).all()}
        admin.post(f"/admin/users/{ids['carl']}/password", data={"csrf_token": acsrf, "password": "reset by alice"})
        assert c.get("/api/v1/me").status_code == 401  # the reset ends carl's sessions
        with TestClient(web.app) as carl:
            login(carl, "carl", "reset by alice")
        admin.post(f"/admin/users/{ids['carl']}/role", data={"csrf_token": acsrf, "role": "viewer"})
        assert "<option selected>viewer</option>" in admin.get("/admin/users").text.split('data-user="carl"')[1][:600]
        last = admin.post(f"/admin/users/{ids['alice']}/role", data={"csrf_token": acsrf, "role": "clinician"})
        assert last.status_code == 400 and "at least one active admin" in last.text
        events = admin.get("/admin/audit").text
        assert "reset_password" in events and "set_role" in events and "change_password" in events


def test_audit_filters_pages_csv_and_addresses(web):
    c = web.client
    csrf = login(c, "alice", PW)
    h = {"X-CSRF-Token": csrf}
    pid, vid = _patient_and_visit(c, csrf, code="AUD-1")
    c.put(f"/api/v1/patients/{pid}", json={"birth_year": 1990, "notes": "=HYPERLINK(1)"}, headers=h)
    r = _upload(web, csrf, vid, ("a.jpg", photo_bytes(seed=51)))
    web.app.state.queue.wait_idle(30)
    photo = r.json()["photos"][0]["id"]
    c.post(f"/api/v1/photos/{photo}/marks", json={"op": "remove", "id": "m1"}, headers=h)
    with web.app.state.sessions() as db:
        from lesioncount.web.models import AuditEvent

        by_action = {e.action: e for e in db.query(AuditEvent).all()}
        assert by_action["upload_photo"].ip == by_action["correct_marks"].ip == "testclient"
        clinic = by_action["upload_photo"].clinic_id
        for _ in range(230):  # a busy clinic: more than one page
            db.add(
                AuditEvent(
                    clinic_id=clinic, username="alice", action="view_patient", object_type="patient", object_id=pid
                )
            )
        db.add(AuditEvent(clinic_id=clinic, username="alice", action="update_patient", detail="=cmd|' /C calc'!A0"))
        db.commit()
    page1 = c.get("/admin/audit", params={"action": "view_patient"}).text
    assert page1.count("<td>view_patient</td>") == 200 and 'id="audit-older"' in page1
    page2 = c.get("/admin/audit", params={"action": "view_patient", "page": 2}).text
    assert page2.count("<td>view_patient</td>") >= 30 and 'id="audit-older"' not in page2
    assert "<td>upload_photo</td>" in c.get("/admin/audit", params={"user": "alice", "action": "upload_photo"}).text
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    assert "<td>" not in c.get("/admin/audit", params={"since": tomorrow}).text.split("<tbody>")[1].split("</tbody>")[0]
    csv_text = c.get("/admin/audit", params={"fmt": "csv"}).text
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert len(rows) >= 234 and {"at_utc", "user", "action", "ip"} <= set(rows[0])
    assert not any(r["detail"].startswith("=") for r in rows)  # no formula reaches a spreadsheet
    assert any(r["detail"].startswith("'=cmd") for r in rows)


def test_aligned_before_and_after(web, astronaut):
    import io

    import numpy as np
    from PIL import Image

    c = web.client
    csrf = login(c, "carl", PW)
    pid, v1 = _patient_and_visit(c, csrf, when="2026-01-01")
    _, v2 = _patient_and_visit_for(c, csrf, pid, "2026-02-01")
    shifted = np.roll(astronaut, (12, -20), axis=(0, 1))  # the follow-up framed a little differently

    def jpeg(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=92)
        return buf.getvalue()

    before = _upload(web, csrf, v1, ("b.jpg", jpeg(astronaut))).json()["photos"][0]["id"]
    after = _upload(web, csrf, v2, ("a.jpg", jpeg(shifted))).json()["photos"][0]["id"]
    left = _upload(web, csrf, v2, ("l.jpg", jpeg(astronaut)), view="left").json()["photos"][0]["id"]
    web.app.state.queue.wait_idle(30)
    url = f"/api/v1/photos/{after}/aligned.jpg"
    sides = {}
    for side in ("before", "after"):
        r = c.get(url, params={"to": before, "side": side})
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text[:200]
        assert "quality" in r.headers["x-registration"]
        sides[side] = np.asarray(Image.open(io.BytesIO(r.content)).convert("L"), float)
    assert sides["before"].shape == sides["after"].shape  # one frame, one crop
    # Aligned, the two sides match far better than the unaligned photos do.
    raw = np.abs(
        np.asarray(Image.fromarray(astronaut).convert("L"), float)
        - np.asarray(Image.fromarray(shifted).convert("L"), float)
    )
    assert np.abs(sides["before"] - sides["after"]).mean() < 0.5 * raw.mean()
    assert c.get(url, params={"to": left, "side": "after"}).status_code == 400  # another view
    assert 'id="before-after"' in c.get(f"/patients/{pid}").text


def test_reports_are_built_in_the_background_with_progress(web):
    import time

    c = web.client
    csrf = login(c, "carl", PW)
    h = {"X-CSRF-Token": csrf}
    pid, vid = _patient_and_visit(c, csrf, code="REP-9")
    _upload(web, csrf, vid, ("a.jpg", photo_bytes(seed=61)))
    web.app.state.queue.wait_idle(30)
    r = c.post(f"/api/v1/patients/{pid}/report-jobs", params={"fmt": "html"}, headers=h)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running", "done") and job["stage"]
    deadline = time.monotonic() + 60
    while job["status"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
        job = c.get(f"/api/v1/report-jobs/{job['id']}").json()
    assert job["status"] == "done", job
    got = c.get(job["download"])
    assert got.status_code == 200 and "REP-9" in got.text and "attachment" in got.headers["content-disposition"]
    with TestClient(web.app) as other:  # another user of the same clinic cannot fetch it
        login(other, "alice", PW)
        assert other.get(f"/api/v1/report-jobs/{job['id']}").status_code == 404
        assert other.get(job["download"]).status_code == 404
    assert c.post("/api/v1/patients/9999/report-jobs", params={"fmt": "html"}, headers=h).status_code == 404
    assert c.post(f"/api/v1/patients/{pid}/report-jobs", params={"fmt": "doc"}, headers=h).status_code == 422


def test_comparability_with_the_baseline_is_the_reports_verdict(web, astronaut):
    import io

    import numpy as np
    from PIL import Image

    c = web.client
    csrf = login(c, "carl", PW)
    pid, v1 = _patient_and_visit(c, csrf, when="2026-01-01")
    _, v2 = _patient_and_visit_for(c, csrf, pid, "2026-02-01")
    _, v3 = _patient_and_visit_for(c, csrf, pid, "2026-03-01")

    def jpeg(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=92)
        return buf.getvalue()

    dark = (astronaut.astype(float) * 0.35).astype(np.uint8)  # about 1.5 stops darker: not comparable
    base = _upload(web, csrf, v1, ("b.jpg", jpeg(astronaut))).json()["photos"][0]["id"]
    same = _upload(web, csrf, v2, ("s.jpg", jpeg(np.roll(astronaut, 6, axis=1)))).json()["photos"][0]["id"]
    darker = _upload(web, csrf, v3, ("d.jpg", jpeg(dark))).json()["photos"][0]["id"]
    web.app.state.queue.wait_idle(30)
    ok = c.get(f"/api/v1/photos/{same}/comparability", params={"to": base}).json()
    bad = c.get(f"/api/v1/photos/{darker}/comparability", params={"to": base}).json()
    assert ok["comparable"] and ok["score"] > bad["score"]
    assert not bad["comparable"] and any("darker" in w or "exposure" in w for w in bad["warnings"]), bad
    assert c.get(f"/api/v1/photos/{base}/comparability", params={"to": base}).status_code == 400
    page = c.get(f"/patients/{pid}").text
    assert page.count('class="comparable" data-url=') == 2  # each follow-up is checked from the page


def test_photo_api_gives_the_models_expert_style_marks_apart_from_the_marks(web):
    csrf = login(web.client, "carl", PW)
    _, vid = _patient_and_visit(web.client, csrf)
    _upload(web, csrf, vid, ("a.jpg", photo_bytes(seed=1)))
    assert web.app.state.queue.wait_idle(30)  # counted before the fake starts giving expert-style marks
    web.fake.expert_marks = 4
    _upload(web, csrf, vid, ("b.jpg", photo_bytes(seed=2)))
    assert web.app.state.queue.wait_idle(30)
    photos = web.client.get(f"/api/v1/visits/{vid}/progress").json()["photos"]
    plain, expert = (web.client.get(f"/api/v1/photos/{p['id']}").json() for p in photos)
    assert plain["expert_marks"] == []
    assert len(expert["expert_marks"]) == 4 and set(expert["expert_marks"][0]) == {"x", "y", "score"}
    # They are not marks: the counts and the correctable marks are the same as without them.
    assert expert["counts"] == plain["counts"] and len(expert["marks"]) == len(plain["marks"])
    page = web.client.get(f"/photos/{expert['id']}").text
    assert 'id="show-experts"' in page


def test_the_report_warns_when_only_some_visits_were_corrected_by_hand(web):
    c = web.client
    csrf = login(c, "carl", PW)
    h = {"X-CSRF-Token": csrf}
    patient, v1 = _patient_and_visit(c, csrf, when="2026-01-10")
    _, v2 = _patient_and_visit_for(c, csrf, patient, "2026-02-10")
    _upload(web, csrf, v1, ("a.jpg", photo_bytes(seed=1)))
    _upload(web, csrf, v2, ("b.jpg", photo_bytes(seed=2)))
    assert web.app.state.queue.wait_idle(30)
    rep = c.get(f"/patients/{patient}/report.html")
    assert rep.status_code == 200 and "corrected by hand" not in rep.text
    pid = c.get(f"/api/v1/visits/{v1}").json()["photos"][0]["id"]
    first = c.get(f"/api/v1/photos/{pid}").json()["marks"][0]
    r = c.post(f"/api/v1/photos/{pid}/marks", json={"op": "remove", "id": first["id"], "base_version": 1}, headers=h)
    assert r.status_code == 200, r.text
    rep = c.get(f"/patients/{patient}/report.html")
    assert "front: the marks of 2026-01-10 were corrected by hand and those of 2026-02-10 were not" in rep.text
    # Undone back to the model's marks: nothing is mixed any more.
    c.post(f"/api/v1/photos/{pid}/marks", json={"op": "revert", "to_version": 1, "base_version": 2}, headers=h)
    assert "corrected by hand" not in c.get(f"/patients/{patient}/report.html").text


def test_the_patient_page_opens_on_the_view_with_most_visits(web):
    c = web.client
    csrf = login(c, "carl", PW)
    patient, v1 = _patient_and_visit(c, csrf, when="2026-01-10")
    _, v2 = _patient_and_visit_for(c, csrf, patient, "2026-02-10")
    _upload(web, csrf, v1, ("a.jpg", photo_bytes(seed=1)), view="left")
    _upload(web, csrf, v2, ("b.jpg", photo_bytes(seed=2)), view="left")
    _upload(web, csrf, v2, ("c.jpg", photo_bytes(seed=3)), view="front")
    assert web.app.state.queue.wait_idle(30)
    page = c.get(f"/patients/{patient}").text
    assert "<strong>left</strong>" in page and '<a href="?view=front">front</a>' in page


def test_input_the_api_cannot_parse_gets_one_readable_line(web):
    c = web.client
    csrf = login(c, "carl", PW)
    h = {"X-CSRF-Token": csrf}
    patient, vid = _patient_and_visit(c, csrf)
    r = c.post(f"/api/v1/patients/{patient}/visits", json={"visit_date": "2026-02-30"}, headers=h)
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    assert r.json()["detail"].startswith("visit_date: ") and "day value is outside expected range" in r.json()["detail"]
    r = c.post(f"/api/v1/visits/{vid}/photos", headers=h)  # the upload form with no file in it
    assert r.status_code == 422 and r.json()["detail"] == "files: required"


def test_the_report_counts_uncorrected_follow_ups_in_their_baselines_frame(tmp_path, astronaut):
    """As ``lesioncount compare`` does: the same skin at the same scale; a corrected follow-up keeps its marks."""
    import io

    import cv2
    from PIL import Image
    from toy_model import make_toy_model, red_blob

    from lesioncount.pipeline import LesionCounter

    counter = LesionCounter(make_toy_model(tmp_path / "toy.onnx"), threads=1)
    base = red_blob(red_blob(astronaut, 250, 140, 3), 190, 150, 3)
    m = cv2.getRotationMatrix2D((256.0, 256.0), 2.0, 1.05)
    follow = cv2.warpAffine(base, m, (512, 512), borderMode=cv2.BORDER_REFLECT)

    def png(image):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        return buf.getvalue()

    app = create_app(Settings(data_dir=tmp_path / "web", counter_factory=lambda: counter))
    add_user(app, "North", "carl", PW, "clinician")
    said = "the follow-up was counted aligned to the baseline"
    with TestClient(app) as client:
        web = SimpleNamespace(app=app, client=client)
        csrf = login(client, "carl", PW)
        patient, v1 = _patient_and_visit(client, csrf, when="2026-01-10")
        _, v2 = _patient_and_visit_for(client, csrf, patient, "2026-02-10")
        _upload(web, csrf, v1, ("base.png", png(base)))
        fid = _upload(web, csrf, v2, ("follow.png", png(follow))).json()["photos"][0]["id"]
        assert app.state.queue.wait_idle(60)
        assert said in client.get(f"/patients/{patient}/report.html").text
        marks = client.get(f"/api/v1/photos/{fid}").json()["marks"]
        r = client.post(
            f"/api/v1/photos/{fid}/marks",
            json={"op": "remove", "id": marks[0]["id"], "base_version": 1},
            headers={"X-CSRF-Token": csrf},
        )
        assert r.status_code == 200, r.text
        assert said not in client.get(f"/patients/{patient}/report.html").text


def test_only_follow_ups_the_servers_model_counted_with_their_baseline_are_recounted():
    import datetime as dt
    from pathlib import Path

    from lesioncount.web.reports import ReportPhoto, _recountable

    def photo(day: int, sha: str, view: str = "front", corrected: bool = False) -> ReportPhoto:
        result = {"model": {"sha256": sha}}
        return ReportPhoto(Path("x"), result, [], dt.date(2026, 1, day), view, "", None, str(day), corrected)

    counter = SimpleNamespace(model_info=SimpleNamespace(sha256="new"))
    base, same, fixed, old = photo(1, "new"), photo(2, "new"), photo(3, "new", corrected=True), photo(4, "old")
    assert _recountable([base, same, fixed, old], counter) == [same]
    # A baseline counted by the model of before: nothing in its view is recounted with today's.
    assert _recountable([photo(1, "old", "left"), photo(2, "new", "left")], counter) == []
    assert _recountable([base, same], SimpleNamespace()) == []  # a stand-in counter recounts nothing


def test_a_model_that_cannot_load_costs_the_recount_not_the_report(tmp_path):
    calls = []

    def broken():
        calls.append(1)
        raise RuntimeError("model file gone")

    app = create_app(Settings(data_dir=tmp_path / "web", counter_factory=FakeCounter))
    add_user(app, "North", "carl", PW, "clinician")
    with TestClient(app) as client:
        web = SimpleNamespace(app=app, client=client)
        csrf = login(client, "carl", PW)
        patient, v1 = _patient_and_visit(client, csrf, when="2026-01-10")
        _, v2 = _patient_and_visit_for(client, csrf, patient, "2026-02-10")
        _upload(web, csrf, v1, ("a.jpg", photo_bytes(seed=1)))
        _upload(web, csrf, v2, ("b.jpg", photo_bytes(seed=2)))
        assert app.state.queue.wait_idle(30)
        app.state.queue._factory, app.state.queue._counter = broken, None  # the model is gone after counting
        rep = client.get(f"/patients/{patient}/report.html")
        assert rep.status_code == 200 and "P-001" in rep.text and calls
