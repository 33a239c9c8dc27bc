"""The screenshots of the clinic web app in docs/web.md, from public-domain photos only.

    python scripts/web_screenshots.py [--out docs/img]

Runs the app (shipped model) on a temporary data folder, creates a patient with two visits of
scikit-image's astronaut (public domain) with lesions planted as the compare demo does, corrects one mark,
and takes screenshots in headless Chromium (Debian's /usr/bin/chromium through Playwright) of the photo
page, the patient page and the report. No ACNE04 photo is involved, so the images may be committed.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "screenshot password"


def _photos(folder: Path) -> list[Path]:
    from lesioncount.compare.demo import baseline, follow_up

    clean = cv2.resize(data.astronaut(), (1536, 1536), interpolation=cv2.INTER_CUBIC)
    base, planted = baseline(clean, 1, counts={"papule": 8, "pustule": 3, "blackhead": 5, "boxcar": 2})
    later = follow_up(clean, planted, 2, keep=0.4, new_counts={"papule": 1})
    paths = [folder / "2026-09-01_front.jpg", folder / "2026-11-02_front.jpg"]
    Image.fromarray(base).save(paths[0], quality=92)
    Image.fromarray(np.asarray(later.image)).save(paths[1], quality=92)
    return paths


def _serve(folder: Path) -> tuple[str, object]:
    import uvicorn

    from lesioncount.pipeline import LesionCounter
    from lesioncount.web import Settings, create_app
    from lesioncount.web.testing import add_user

    app = create_app(Settings(data_dir=folder, counter_factory=lambda: LesionCounter(threads=2)))
    add_user(app, "Demo Clinic", "dr.demo", PASSWORD, "clinician")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def _save(shot: Path, out: Path, height: int) -> None:
    with Image.open(shot) as im:
        w, h = im.size
        top = im.convert("RGB").crop((0, 0, w, min(h, height)))
        top.resize((w * 2 // 3, top.size[1] * 2 // 3), Image.Resampling.LANCZOS).save(out, quality=80)
    print(f"wrote {out}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        photos = _photos(root)
        url, server = _serve(root / "web")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
            page = browser.new_context(viewport={"width": 1400, "height": 950}).new_page()
            page.goto(url + "/login")
            page.fill("input[name=username]", "dr.demo")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.fill("#new-patient input[name=code]", "DEMO-001")
            page.fill("#new-patient input[name=birth_year]", "1994")
            page.click("#new-patient button[type=submit]")
            patient_url = page.url
            for photo, when, treatment in ((photos[0], "2026-09-01", "botulinum toxin"), (photos[1], "2026-11-02", "")):
                page.goto(patient_url)
                page.fill("#new-visit input[name=visit_date]", when)
                page.fill("#new-visit input[name=treatment]", treatment)
                if treatment:
                    page.fill("#new-visit input[name=units]", "20")
                page.click("#new-visit button[type=submit]")
                page.wait_for_url(re.compile(r"/visits/\d+$"))
                page.set_input_files("#file-input", str(photo))
                page.wait_for_selector("#photos td.status:text-is('done')", timeout=120_000)
            visit2 = page.url
            page.click("#photos a")
            page.wait_for_selector("#photo-app[data-ready='1']")
            page.keyboard.press("n")
            page.keyboard.press("c")  # one correction: the first mark is really a comedone
            page.wait_for_selector("#status-line:has-text('Saved as version 2')")
            page.keyboard.press("n")
            page.screenshot(path=str(root / "photo.png"), full_page=True)
            _save(root / "photo.png", args.out / "web_photo.jpg", 1300)
            page.goto(patient_url)
            page.wait_for_function("() => document.getElementById('ba-after').naturalWidth > 0")
            page.wait_for_function("() => document.querySelector('td.comparable[data-comparable]') !== null")
            page.screenshot(path=str(root / "patient.png"), full_page=True)
            _save(root / "patient.png", args.out / "web_patient.jpg", 2200)
            report = page.context.request.get(patient_url + "/report.html")
            (root / "report.html").write_bytes(report.body())
            page.goto((root / "report.html").as_uri())
            page.screenshot(path=str(root / "report.png"), full_page=True)
            _save(root / "report.png", args.out / "web_report.jpg", 2000)
            browser.close()
        server.should_exit = True  # type: ignore[attr-defined]
        del visit2
    return 0


if __name__ == "__main__":
    sys.exit(main())
