"""Security of the clinic web app: login, clinic isolation, roles, CSRF, uploads, stored and served photos."""

from __future__ import annotations

import io
import os
from types import SimpleNamespace

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("argon2")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from lesioncount.web import Settings, create_app  # noqa: E402
from lesioncount.web.models import Patient, Photo  # noqa: E402
from lesioncount.web.testing import FakeCounter, add_user, login, photo_bytes  # noqa: E402

PW = "correct horse battery"


@pytest.fixture
def web(tmp_path):
    app = create_app(
        Settings(
            data_dir=tmp_path,
            counter_factory=FakeCounter,
            max_upload_bytes=150_000,
            max_megapixels=0.5,
            max_files_per_upload=3,
        )
    )
    add_user(app, "North", "alice", PW, "admin")
    add_user(app, "North", "carl", PW, "clinician")
    add_user(app, "North", "vic", PW, "viewer")
    add_user(app, "South", "sam", PW, "admin")
    with TestClient(app) as client:
        csrf = login(client, "carl", PW)
        h = {"X-CSRF-Token": csrf}
        pid = client.post("/api/v1/patients", json={"code": "N-1", "birth_year": 1990}, headers=h).json()["id"]
        vid = client.post(f"/api/v1/patients/{pid}/visits", json={"visit_date": "2026-01-01"}, headers=h).json()["id"]
        r = client.post(
            f"/api/v1/visits/{vid}/photos", files=[("files", ("a.jpg", photo_bytes(gps=True), "image/jpeg"))], headers=h
        )
        assert r.status_code == 201, r.text
        app.state.queue.wait_idle(30)
        photo_id = r.json()["photos"][0]["id"]
        yield SimpleNamespace(
            app=app, client=client, csrf=csrf, h=h, pid=pid, vid=vid, photo_id=photo_id, root=tmp_path / "photos"
        )


def _files_under(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _rows(app, model):
    with app.state.sessions() as db:
        return db.query(model).count()


def _urls(w):
    return [
        "/api/v1/me",
        "/api/v1/patients",
        f"/api/v1/patients/{w.pid}",
        f"/api/v1/visits/{w.vid}",
        f"/api/v1/visits/{w.vid}/progress",
        f"/api/v1/photos/{w.photo_id}",
        f"/api/v1/photos/{w.photo_id}/image.jpg",
        f"/api/v1/photos/{w.photo_id}/overlay.jpg",
        f"/api/v1/photos/{w.photo_id}/versions",
        f"/api/v1/patients/{w.pid}/report.html",
    ]


def test_no_access_without_login(web):
    with TestClient(web.app, follow_redirects=False) as anon:
        for url in _urls(web):
            assert anon.get(url).status_code == 401, url
        for url in [
            "/",
            f"/patients/{web.pid}",
            f"/visits/{web.vid}",
            f"/photos/{web.photo_id}",
            f"/patients/{web.pid}/report.html",
            "/admin/users",
            "/admin/audit",
            "/account",
        ]:
            r = anon.get(url)
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), url
        assert anon.post("/api/v1/patients", json={"code": "X"}).status_code == 401
        assert anon.post("/patients", data={"code": "X", "csrf_token": web.csrf}).status_code == 303
        # A forged session cookie is no session.
        anon.cookies.set("lc_session", "forged")
        assert anon.get("/api/v1/patients").status_code == 401
    assert _rows(web.app, Patient) == 1


def test_no_access_across_clinics(web):
    with TestClient(web.app) as other:
        csrf = login(other, "sam", PW)
        h = {"X-CSRF-Token": csrf}
        assert other.get("/api/v1/patients").json() == []
        for url in _urls(web)[2:]:
            assert other.get(url).status_code == 404, url
        for url in [
            f"/patients/{web.pid}",
            f"/visits/{web.vid}",
            f"/photos/{web.photo_id}",
            f"/patients/{web.pid}/report.html",
            f"/patients/{web.pid}/report.pdf",
        ]:
            assert other.get(url).status_code == 404, url
        assert (
            other.post(f"/api/v1/patients/{web.pid}/visits", json={"visit_date": "2026-02-02"}, headers=h).status_code
            == 404
        )
        r = other.post(f"/api/v1/photos/{web.photo_id}/marks", json={"op": "remove", "id": "m1"}, headers=h)
        assert r.status_code == 404
        assert other.delete(f"/api/v1/photos/{web.photo_id}", headers=h).status_code == 404
        assert other.put(f"/api/v1/patients/{web.pid}", json={"birth_year": 2000}, headers=h).status_code == 404
        r = other.post(
            f"/api/v1/visits/{web.vid}/photos",
            files=[("files", ("x.jpg", photo_bytes(seed=9), "image/jpeg"))],
            headers=h,
        )
        assert r.status_code == 404
        # The same pseudonym may exist in two clinics without clashing.
        assert other.post("/api/v1/patients", json={"code": "N-1"}, headers=h).status_code == 201
        assert "carl" not in other.get("/admin/audit").text
        from lesioncount.web.models import User

        with web.app.state.sessions() as db:
            carl_id = db.query(User).filter(User.username == "carl").one().id
        r = other.post(f"/admin/users/{carl_id}/active", data={"csrf_token": csrf, "active": "0"})
        assert r.status_code == 404 and "carl" not in other.get("/admin/users").text
    assert _rows(web.app, Photo) == 1


def test_roles(web):
    with TestClient(web.app) as viewer:
        csrf = login(viewer, "vic", PW)
        h = {"X-CSRF-Token": csrf}
        assert viewer.get(f"/api/v1/patients/{web.pid}").status_code == 200
        assert viewer.post("/api/v1/patients", json={"code": "V-1"}, headers=h).status_code == 403
        assert (
            viewer.post(
                f"/api/v1/photos/{web.photo_id}/marks", json={"op": "remove", "id": "m1"}, headers=h
            ).status_code
            == 403
        )
        assert viewer.delete(f"/api/v1/photos/{web.photo_id}", headers=h).status_code == 403
        assert viewer.put(f"/api/v1/patients/{web.pid}", json={"birth_year": 2000}, headers=h).status_code == 403
        assert viewer.get("/admin/users").status_code == 403 and viewer.get("/admin/audit").status_code == 403
    assert web.client.get("/admin/users").status_code == 403  # a clinician manages no users
    r = web.client.post("/admin/users/1/active", data={"csrf_token": web.csrf, "active": "0"})
    assert r.status_code == 403


def test_csrf_is_required_on_every_write(web):
    c = web.client
    for data in ({"code": "C-1"}, {"code": "C-1", "csrf_token": "wrong"}):
        assert c.post("/patients", data=data).status_code == 403
    assert c.post("/api/v1/patients", json={"code": "C-2"}).status_code == 403
    assert c.post("/api/v1/patients", json={"code": "C-2"}, headers={"X-CSRF-Token": "nope"}).status_code == 403
    assert c.post(f"/api/v1/photos/{web.photo_id}/marks", json={"op": "remove", "id": "m1"}).status_code == 403
    assert c.delete(f"/api/v1/photos/{web.photo_id}").status_code == 403
    assert c.post(f"/photos/{web.photo_id}/delete", data={"confirm": "on"}).status_code == 403
    r = c.post(f"/api/v1/visits/{web.vid}/photos", files=[("files", ("b.jpg", photo_bytes(seed=3), "image/jpeg"))])
    assert r.status_code == 403
    assert c.post("/logout", data={}).status_code == 403
    assert _rows(web.app, Patient) == 1 and _rows(web.app, Photo) == 1
    with TestClient(web.app) as fresh:  # the login form too (login CSRF)
        r = fresh.post("/login", data={"username": "carl", "password": PW, "csrf_token": "guess"})
        assert r.status_code == 403


@pytest.mark.parametrize(
    "nxt", ["//evil.example", "/\t/evil.example", "/\\evil.example", "https://evil.example", "/ok"]
)
def test_login_never_redirects_off_site(web, nxt):
    with TestClient(web.app, follow_redirects=False) as c:
        page = c.get("/login").text
        pre = page.split('name="csrf_token" value="')[1].split('"')[0]
        r = c.post("/login", data={"csrf_token": pre, "username": "vic", "password": PW, "next": nxt})
        assert r.status_code == 303 and r.headers["location"] == ("/ok" if nxt == "/ok" else "/")


def test_logout_ends_the_session_on_the_server(web):
    cookie = web.client.cookies.get("lc_session")
    web.client.post("/logout", data={"csrf_token": web.csrf})
    with TestClient(web.app) as replay:
        replay.cookies.set("lc_session", cookie)
        assert replay.get("/api/v1/me").status_code == 401


def test_idle_sessions_expire(web):
    import datetime as dt

    from lesioncount.web.models import LoginSession

    assert web.client.get("/api/v1/me").status_code == 200
    with web.app.state.sessions() as db:
        for row in db.query(LoginSession).all():
            row.last_seen_at -= dt.timedelta(seconds=web.app.state.settings.session_ttl_s + 1)
        db.commit()
    assert web.client.get("/api/v1/me").status_code == 401
    with web.app.state.sessions() as db:
        assert db.query(LoginSession).count() == 0  # the expired session is deleted, not just ignored


def test_wrong_password_is_refused_and_audited(web):
    with TestClient(web.app) as c:
        page = c.get("/login").text
        pre = page.split('name="csrf_token" value="')[1].split('"')[0]
        r = c.post("/login", data={"csrf_token": pre, "username": "carl", "password": "wrong password"})
        assert r.status_code == 401 and "Wrong user name or password" in r.text
        assert c.get("/api/v1/me").status_code == 401
    with TestClient(web.app) as admin:
        login(admin, "alice", PW)
        assert "login_failed" in admin.get("/admin/audit").text  # filed under carl's clinic, so its admin sees it
    with TestClient(web.app) as other:
        login(other, "sam", PW)
        assert "login_failed" not in other.get("/admin/audit").text  # ...and no other clinic's admin does
    with web.app.state.sessions() as db:
        from lesioncount.web.models import AuditEvent

        row = db.query(AuditEvent).filter(AuditEvent.action == "login_failed").one()
        assert row.username == "carl" and row.ip == "testclient" and row.clinic_id is not None


@pytest.mark.parametrize(
    "name", ["../../../evil.jpg", "..\\..\\evil.jpg", "/etc/passwd", "a/../../b.jpg", ".htaccess", "x\x00.jpg"]
)
def test_path_tricks_in_file_names_stay_inside_the_store(web, name):
    before = _files_under(web.root)
    r = web.client.post(
        f"/api/v1/visits/{web.vid}/photos",
        files=[("files", (name, photo_bytes(seed=len(name)), "image/jpeg"))],
        headers=web.h,
    )
    assert r.status_code == 201, r.text
    stored = r.json()["photos"][0]["name"]
    assert "/" not in stored and "\\" not in stored and ".." not in stored and "\x00" not in stored
    new = set(_files_under(web.root)) - set(before)
    assert all(p.startswith(("originals/", "display/")) for p in new)
    assert not (web.root.parent / "evil.jpg").exists() and not (web.root.parent.parent / "evil.jpg").exists()


def test_static_and_image_routes_resist_traversal(web):
    for url in ["/static/../lesioncount.sqlite3", "/static/%2e%2e/lesioncount.sqlite3", "/static/..%2f..%2fapp.py"]:
        r = web.client.get(url)
        assert r.status_code == 404 and b"SQLite" not in r.content
    assert web.client.get("/api/v1/photos/..%2f1/image.jpg").status_code in (404, 422)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims a canvas of ``width`` x ``height`` and holds no pixels: a decompression bomb's header."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"%PDF-1.4 not a photo" * 10, "not an image"),
        (b"<html><script>alert(1)</script></html>", "not an image"),
        (photo_bytes()[:300], "corrupt or truncated"),
        (b"", "empty"),
        (photo_bytes(width=40, height=40), "too small"),
        (photo_bytes(width=1000, height=800), "megapixel"),
        (_png_header(20_000, 20_000), "over the 0.5 megapixel limit"),  # a bomb, or just too big: either way
        (photo_bytes(fmt="GIF"), "GIF images are not accepted"),
        (os.urandom(160_000), "larger than"),
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing(web, payload, fragment):
    before = _files_under(web.root)
    r = web.client.post(
        f"/api/v1/visits/{web.vid}/photos", files=[("files", ("photo.jpg", payload, "image/jpeg"))], headers=web.h
    )
    assert r.status_code == 400 and fragment in r.json()["detail"], r.text
    assert _files_under(web.root) == before and _rows(web.app, Photo) == 1
    assert not any((web.root / "tmp").iterdir())


def test_a_truncated_upload_is_refused_even_after_a_library_relaxed_pillow(web):
    from PIL import ImageFile

    good = photo_bytes()
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # what importing weasyprint (the PDF reports) does in the server
    try:
        r = web.client.post(
            f"/api/v1/visits/{web.vid}/photos",
            files=[("files", ("half.jpg", good[: len(good) // 2], "image/jpeg"))],
            headers=web.h,
        )
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    assert r.status_code == 400 and "corrupt or truncated" in r.json()["detail"], r.text
    assert _rows(web.app, Photo) == 1


def test_one_bad_file_refuses_the_whole_batch(web):
    before = _files_under(web.root)
    r = web.client.post(
        f"/api/v1/visits/{web.vid}/photos",
        files=[
            ("files", ("good.jpg", photo_bytes(seed=5), "image/jpeg")),
            ("files", ("bad.jpg", b"nope" * 100, "image/jpeg")),
        ],
        headers=web.h,
    )
    assert r.status_code == 400 and "bad.jpg" in r.json()["detail"]
    assert _files_under(web.root) == before and _rows(web.app, Photo) == 1


def test_a_database_failure_during_upload_leaves_no_files(web, monkeypatch):
    from sqlalchemy.orm import Session

    before = _files_under(web.root)
    real_commit = Session.commit

    def failing_commit(self):
        if any(getattr(o, "action", "") == "upload_photo" for o in self.new):  # the photo rows are flushed
            raise RuntimeError("disk full")
        return real_commit(self)

    monkeypatch.setattr(Session, "commit", failing_commit)
    with pytest.raises(RuntimeError, match="disk full"):
        web.client.post(
            f"/api/v1/visits/{web.vid}/photos",
            files=[("files", ("n.jpg", photo_bytes(seed=77), "image/jpeg"))],
            headers=web.h,
        )
    monkeypatch.undo()
    assert _files_under(web.root) == before and _rows(web.app, Photo) == 1


def test_too_many_files_and_oversize_requests(web):
    files = [("files", (f"{i}.jpg", photo_bytes(seed=20 + i), "image/jpeg")) for i in range(4)]
    r = web.client.post(f"/api/v1/visits/{web.vid}/photos", files=files, headers=web.h)
    assert r.status_code == 400 and "at most 3" in r.json()["detail"]
    big = {"files": ("big.jpg", b"0" * (150_000 * 3 + (1 << 20) + 10), "image/jpeg")}
    assert web.client.post(f"/api/v1/visits/{web.vid}/photos", files=big, headers=web.h).status_code == 413
    assert _rows(web.app, Photo) == 1


@pytest.mark.parametrize("kind", ["image.jpg", "overlay.jpg"])
def test_served_copies_have_no_exif_and_original_is_unchanged(web, kind):
    r = web.client.get(f"/api/v1/photos/{web.photo_id}/{kind}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert b"SecretCam" not in r.content and b"SERIAL-123456" not in r.content and b"Exif" not in r.content
    with Image.open(io.BytesIO(r.content)) as im:
        assert len(im.getexif()) == 0 and "exif" not in im.info and im.size == (320, 240)
    with web.app.state.sessions() as db:
        sha = db.get(Photo, web.photo_id).sha256
    original = web.app.state.store.original_path(sha).read_bytes()
    assert original == photo_bytes(gps=True) and b"SERIAL-123456" in original
    assert "no-store" in r.headers["cache-control"]


def test_exif_orientation_is_applied_to_the_served_copy(web):
    r = web.client.post(
        f"/api/v1/visits/{web.vid}/photos",
        files=[("files", ("rot.jpg", photo_bytes(320, 240, orientation=6, seed=4), "image/jpeg"))],
        headers=web.h,
    )
    ph = r.json()["photos"][0]
    assert (ph["width"], ph["height"]) == (240, 320)
    web.app.state.queue.wait_idle(30)
    img = web.client.get(f"/api/v1/photos/{ph['id']}/image.jpg").content
    with Image.open(io.BytesIO(img)) as im:
        assert im.size == (240, 320)


def test_security_headers(web):
    r = web.client.get("/")
    assert r.headers["x-frame-options"] == "DENY" and "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    cookie = web.client.cookies.jar
    assert any(c.name == "lc_session" and c.has_nonstandard_attr("HttpOnly") for c in cookie)


def test_user_text_is_escaped_in_pages(web):
    evil = "<script>alert(1)</script>"
    h = web.h
    assert web.client.post("/api/v1/patients", json={"code": "X-1", "notes": evil}, headers=h).status_code == 201
    r = web.client.post(
        f"/api/v1/patients/{web.pid}/visits",
        json={"visit_date": "2026-02-01", "treatment": evil, "notes": evil},
        headers=h,
    )
    up = web.client.post(
        f"/api/v1/visits/{r.json()['id']}/photos",
        files=[("files", ('"><img src=x onerror=alert(1)>.jpg', photo_bytes(seed=31), "image/jpeg"))],
        headers=h,
    )
    assert up.status_code == 201
    for url in ["/", f"/patients/{web.pid}", f"/visits/{r.json()['id']}"]:
        page = web.client.get(url).text
        assert evil not in page and "<img src=x" not in page, url
    assert "&lt;script&gt;" in web.client.get("/").text


def _try_login(app, username, password, ip):
    with TestClient(app, client=(ip, 50000)) as c:
        page = c.get("/login").text
        pre = page.split('name="csrf_token" value="')[1].split('"')[0]
        return c.post("/login", data={"csrf_token": pre, "username": username, "password": password})


class _Clock:
    def __init__(self, app):
        from lesioncount.web.models import utcnow

        self.t = utcnow()
        app.state.login_throttle.now = lambda: self.t

    def advance(self, seconds):
        import datetime as dt

        self.t += dt.timedelta(seconds=seconds)


def test_login_throttle_slows_one_name_at_one_address_with_back_off(web):
    clock = _Clock(web.app)
    for _ in range(5):
        assert _try_login(web.app, "carl", "wrong password", "10.0.0.7").status_code == 401
    r = _try_login(web.app, "carl", PW, "10.0.0.7")  # even the right password waits now
    assert r.status_code == 429 and "try again in 30 seconds" in r.text
    # A colleague behind the same clinic address is not locked out, nor is carl at home.
    assert _try_login(web.app, "alice", PW, "10.0.0.7").status_code == 200
    assert _try_login(web.app, "carl", PW, "192.168.5.5").status_code == 200
    clock.advance(31)
    assert _try_login(web.app, "carl", "wrong again", "10.0.0.7").status_code == 401  # 6th: the wait doubles
    r = _try_login(web.app, "carl", PW, "10.0.0.7")
    assert r.status_code == 429 and "try again in 60 seconds" in r.text
    clock.advance(61)
    assert _try_login(web.app, "carl", PW, "10.0.0.7").status_code == 200  # success clears that address
    assert _try_login(web.app, "carl", "wrong password", "10.0.0.7").status_code == 401
    with TestClient(web.app) as admin:
        login(admin, "alice", PW)
        assert "login_blocked" in admin.get("/admin/audit").text


def test_guessing_from_elsewhere_cannot_lock_a_user_out(web):
    """Failures from addresses carl never logged in from slow those addresses only; his own ("testclient",
    where the fixture logged him in) stays open."""
    clock = _Clock(web.app)
    for k in range(40):  # a botnet: two tries from each of 20 addresses
        _try_login(web.app, "carl", f"guess {k}", f"203.0.113.{k // 2}")
    assert _try_login(web.app, "carl", PW, "203.0.113.99").status_code == 429  # a new, unknown address waits
    assert _try_login(web.app, "carl", PW, "testclient").status_code == 200
    clock.advance(3600)  # failures are forgotten after an hour
    assert _try_login(web.app, "carl", PW, "203.0.113.99").status_code == 200


def test_login_throttle_survives_a_restart(web, tmp_path):
    _Clock(web.app)
    for _ in range(5):
        _try_login(web.app, "vic", "wrong password", "10.0.0.8")
    again = create_app(Settings(data_dir=tmp_path, counter_factory=FakeCounter))
    assert _try_login(again, "vic", PW, "10.0.0.8").status_code == 429


def test_api_tokens_expire_carry_scopes_and_can_be_listed_and_revoked(web):
    import datetime as dt

    from lesioncount.web.models import ApiToken

    c = web.client
    ro = c.post("/api/v1/tokens", json={"name": "dashboard", "scopes": "read", "days": 7}, headers=web.h).json()
    rw = c.post("/api/v1/tokens", json={"name": "importer"}, headers=web.h).json()
    assert ro["scopes"] == "read" and rw["scopes"] == "read write"
    made = dt.datetime.fromisoformat(ro["created_at"].rstrip("Z"))
    assert dt.datetime.fromisoformat(ro["expires_at"].rstrip("Z")) - made == pytest.approx(
        dt.timedelta(days=7), abs=dt.timedelta(seconds=5)
    )
    for bad in ({"days": 0}, {"days": 400}, {"scopes": "admin"}):
        assert c.post("/api/v1/tokens", json={"name": "x"} | bad, headers=web.h).status_code == 400
    with TestClient(web.app) as script:
        h_ro, h_rw = ({"Authorization": f"Bearer {t['token']}"} for t in (ro, rw))
        assert script.get("/api/v1/patients", headers=h_ro).status_code == 200
        assert script.post("/api/v1/patients", json={"code": "RO-1"}, headers=h_ro).status_code == 403
        assert script.post("/api/v1/patients", json={"code": "RW-1"}, headers=h_rw).status_code == 201
        listed = script.get("/api/v1/tokens", headers=h_ro).json()
        assert {t["name"] for t in listed} == {"dashboard", "importer"} and all("token" not in t for t in listed)
        assert script.delete(f"/api/v1/tokens/{rw['id']}", headers=h_ro).status_code == 204
        assert script.get("/api/v1/me", headers=h_rw).status_code == 401
        with web.app.state.sessions() as db:  # a week later
            row = db.get(ApiToken, ro["id"])
            row.expires_at = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=1)
            db.commit()
        assert script.get("/api/v1/me", headers=h_ro).status_code == 401
    assert c.get("/api/v1/tokens").json() == []  # neither is listed any more


def test_enabling_a_user_again_does_not_revive_old_tokens(web):
    tok = web.client.post("/api/v1/tokens", json={"name": "t"}, headers=web.h).json()["token"]
    with TestClient(web.app) as admin:
        csrf = login(admin, "alice", PW)
        from lesioncount.web.models import User

        with web.app.state.sessions() as db:
            carl_id = db.query(User).filter(User.username == "carl").one().id
        admin.post(f"/admin/users/{carl_id}/active", data={"csrf_token": csrf, "active": "0"})
        admin.post(f"/admin/users/{carl_id}/active", data={"csrf_token": csrf, "active": "1"})
    with TestClient(web.app) as script:
        assert script.get("/api/v1/me", headers={"Authorization": f"Bearer {tok}"}).status_code == 401
    assert _try_login(web.app, "carl", PW, "testclient").status_code == 200  # carl himself is back


def test_user_names_do_not_leak_across_clinics(web):
    """Two clinics may each have a "drlee": creating one says nothing about the other, and each logs in to
    their own clinic with their own password."""
    with TestClient(web.app) as north, TestClient(web.app) as south:
        ncsrf, scsrf = login(north, "alice", PW), login(south, "sam", PW)
        r = north.post("/admin/users", data={"csrf_token": ncsrf, "username": "drlee", "password": "north password"})
        assert r.status_code == 200
        r = south.post("/admin/users", data={"csrf_token": scsrf, "username": "drlee", "password": "south password"})
        assert r.status_code == 200 and "taken" not in r.text  # nothing says North has a drlee
        again = north.post("/admin/users", data={"csrf_token": ncsrf, "username": "drlee", "password": "other pw 123"})
        assert again.status_code == 400 and "this clinic already has a user" in again.text
    for password, clinic in (("north password", "North"), ("south password", "South")):
        with TestClient(web.app) as c:
            login(c, "drlee", password)
            assert c.get("/api/v1/me").json()["clinic"] == clinic
    assert _try_login(web.app, "drlee", "wrong password", "10.1.1.1").status_code == 401
    from lesioncount.web.models import AuditEvent

    with web.app.state.sessions() as db:  # the failed login reaches both clinics' audit logs
        failed = db.query(AuditEvent).filter(AuditEvent.action == "login_failed", AuditEvent.username == "drlee").all()
        assert len({e.clinic_id for e in failed}) == 2
