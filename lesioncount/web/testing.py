"""Helpers for testing the web app without the model: a fake counter, small photos, a logged-in client."""

from __future__ import annotations

import hashlib
import io
import re
import threading
from typing import Any

from PIL import Image, ImageOps

from lesioncount.count import count_by_class, count_by_region, grades
from lesioncount.types import CountResult, FaceInfo, ImageInfo, Lesion, ModelInfo


class FakeCounter:
    """Places a fixed pattern of lesions on any photo (``counts`` per class), no model needed.

    The marks sit on a grid inside the photo so that tests and the browser can click them. ``fail`` makes
    every count raise; ``gate`` (a threading.Event) holds counting until set, to observe progress;
    ``warnings`` go into every result (as the counter's quality warnings would); ``expert_marks`` that many
    expert-style marks (as a model with an experts' heatmap gives).
    """

    def __init__(
        self,
        counts: dict[str, int] | None = None,
        fail: bool = False,
        gate: threading.Event | None = None,
        warnings: tuple[str, ...] = (),
        expert_marks: int = 0,
    ) -> None:
        self.counts = counts or {"inflammatory": 3, "comedone": 2, "scar": 1}
        self.fail = fail
        self.gate = gate
        self.warnings = warnings
        self.expert_marks = expert_marks
        self.calls: list[str] = []

    def count(self, image_or_path: str) -> CountResult:
        self.calls.append(str(image_or_path))
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail:
            raise ValueError("fake counter failure")
        with Image.open(image_or_path) as im:
            w, h = ImageOps.exif_transpose(im).size
        with open(image_or_path, "rb") as f:
            data = f.read()
        lesions = []
        i = 0
        for cls, n in self.counts.items():
            for _ in range(n):
                x = w * (0.2 + 0.6 * ((i * 37) % 10) / 10)
                y = h * (0.2 + 0.6 * ((i * 53) % 10) / 10)
                r = max(3.0, min(w, h) / 60)
                region = ("forehead", "left_cheek", "right_cheek", "nose", "chin")[i % 5]
                lesions.append(Lesion(cls, x, y, 3.14 * r * r, (x - r, y - r, 2 * r, 2 * r), 0.9, region))
                i += 1
        return CountResult(
            image=ImageInfo(str(image_or_path), w, h, hashlib.sha256(data).hexdigest()),
            model=ModelInfo("fake", "0", "0" * 64),
            face=FaceInfo(found=True, box=(0, 0, w, h), method="fake", view="front"),
            lesions=tuple(lesions),
            counts=count_by_class(lesions),
            counts_by_region=count_by_region(lesions),
            grades=grades(lesions, regions_known=True),
            warnings=self.warnings,
            expert_marks=tuple(
                Lesion("acne", w * (0.1 + 0.8 * k / max(1, self.expert_marks)), h / 2, 12.0, (0, 0, 4, 4), 0.5)
                for k in range(self.expert_marks)
            ),
        )


def photo_bytes(
    width: int = 320, height: int = 240, fmt: str = "JPEG", seed: int = 0, gps: bool = False, orientation: int = 1
) -> bytes:
    """A small skin-coloured photo; ``gps=True`` adds EXIF with a GPS block and a camera serial number."""
    im = Image.new("RGB", (width, height), (200 + seed % 40, 150, 130))
    for k in range(5):
        im.putpixel(((seed * 7 + k * 13) % width, (seed * 11 + k * 17) % height), (120, 30, 40))
    buf = io.BytesIO()
    kw: dict[str, Any] = {}
    if gps or orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        if gps:
            exif[0x010F] = "SecretCam"  # Make
            exif[0xA431] = "SERIAL-123456"  # BodySerialNumber
            exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}  # GPSInfo
        kw["exif"] = exif
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


_META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
_FORM_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(client: Any, username: str, password: str) -> str:
    """Log ``client`` (a TestClient) in through the login form; returns the session's CSRF token."""
    page = client.get("/login")
    pre = _FORM_CSRF.search(page.text)
    assert pre is not None, "login form has no CSRF field"
    resp = client.post(
        "/login", data={"csrf_token": pre.group(1), "username": username, "password": password, "next": "/"}
    )
    assert resp.status_code == 200, resp.text[:500]
    m = _META_CSRF.search(resp.text)
    assert m is not None, "not logged in"
    return m.group(1)


def add_user(app: Any, clinic_name: str, username: str, password: str, role: str) -> None:
    """Create a user (and the clinic when new) straight in the app's database."""
    from sqlalchemy import select

    from lesioncount.web.models import Clinic
    from lesioncount.web.services import _new_user

    with app.state.sessions() as db:
        clinic = db.scalar(select(Clinic).where(Clinic.name == clinic_name))
        if clinic is None:
            clinic = Clinic(name=clinic_name)
            db.add(clinic)
            db.flush()
        _new_user(db, clinic.id, username, password, role)
        db.commit()
