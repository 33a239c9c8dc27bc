"""The clinic's whole round in a real browser: log in, create a patient, upload two visits, see the marks,
correct one, see the counts change, download the report."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lesioncount.web.testing import photo_bytes

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000  # counting with the real model on a busy CPU


@pytest.fixture(scope="module")
def visit_photos(tmp_path_factory):
    """Two visits of one face: planted lesions at baseline, fewer at the follow-up (768 px, no network)."""
    out = tmp_path_factory.mktemp("photos")
    paths = [out / "2026-01-10_front.jpg", out / "2026-03-10_front.jpg"]
    try:
        import cv2
        from skimage import data

        from lesioncount.compare.demo import baseline, follow_up

        clean = cv2.resize(data.astronaut(), (768, 768), interpolation=cv2.INTER_CUBIC)
        base, planted = baseline(clean, 1, counts={"papule": 8, "pustule": 3, "blackhead": 5, "boxcar": 2})
        later = follow_up(clean, planted, 2, keep=0.4, new_counts={"papule": 1})
        Image.fromarray(base).save(paths[0], quality=92)
        Image.fromarray(np.asarray(later.image)).save(paths[1], quality=92)
    except ImportError:  # scikit-image missing: plain photos (the fake counter marks them all the same)
        paths[0].write_bytes(photo_bytes(640, 480, seed=1))
        paths[1].write_bytes(photo_bytes(640, 480, seed=2))
    return paths


def _snap(page, name: str) -> None:
    """Save a screenshot when $LESIONCOUNT_E2E_SCREENSHOTS names a folder (for looking at a failing run)."""
    folder = os.environ.get("LESIONCOUNT_E2E_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def _counts(page) -> dict[str, int]:
    cells = page.locator("[data-count]")
    out = {}
    for i in range(cells.count()):
        cell = cells.nth(i)
        out[cell.get_attribute("data-count")] = int(cell.inner_text() or 0)
    return out


def _upload_visit(page, server, patient_url, date, photo, treatment="", drop=False):
    page.goto(patient_url)
    form = page.locator("#new-visit")
    form.locator("input[name=visit_date]").fill(date)
    form.locator("input[name=treatment]").fill(treatment)
    if treatment:
        form.locator("input[name=units]").fill("20")
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/visits/\d+$"))
    page.select_option("#upload-view", "front")
    if drop:  # drag and drop: a DataTransfer holding the file, dropped on the zone
        data = page.evaluate_handle(
            """([b64, name]) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], name, { type: "image/jpeg" }));
                return dt;
            }""",
            [base64.b64encode(photo.read_bytes()).decode(), photo.name],
        )
        page.dispatch_event("#dropzone", "drop", {"dataTransfer": data})
    else:
        page.set_input_files("#file-input", str(photo))
    # The drop zone uploads, then polls counting progress and reloads once every photo is counted.
    page.wait_for_selector("#photos td.status:text-is('done')", timeout=TIMEOUT_MS)
    _snap(page, f"visit-{date}")
    return page.url


def test_clinic_round_trip(server, browser, visit_photos, tmp_path):
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    # Log in (unknown visitors are sent to the login page first).
    page.goto(server.url + "/")
    page.wait_for_url(re.compile(r"/login"))
    page.fill("input[name=username]", "doc")
    page.fill("input[name=password]", "e2e password 123")
    page.click("button[type=submit]")
    page.wait_for_selector("h1:text-is('Patients')")

    # Create a patient.
    page.fill("#new-patient input[name=code]", "E2E-001")
    page.fill("#new-patient input[name=birth_year]", "1995")
    page.click("#new-patient button[type=submit]")
    page.wait_for_selector("h1:text-is('Patient E2E-001')")
    patient_url = page.url

    # Two visits, one photo each, counted in the background.
    _upload_visit(page, server, patient_url, "2026-01-10", visit_photos[0], "botulinum toxin")
    visit2 = _upload_visit(page, server, patient_url, "2026-03-10", visit_photos[1], drop=True)

    # See the marks on the follow-up photo.
    page.goto(visit2)
    page.click("#photos a")
    page.wait_for_selector("#photo-app[data-ready='1']")
    before = _counts(page)
    _snap(page, "photo")
    n_marks = page.locator("#overlay circle.mark").count()
    assert n_marks == page.locator("#lesion-list tbody tr").count()
    assert n_marks == before["inflammatory"] + before["comedone"] + before["scar"]
    if not server.real_model:
        assert n_marks > 0
    # Per-class toggle hides that class's marks.
    page.uncheck(".class-toggle[value=inflammatory]")
    assert page.locator("#overlay circle.mark.hidden").count() == before["inflammatory"]
    page.check(".class-toggle[value=inflammatory]")
    assert page.locator("#overlay circle.mark.hidden").count() == 0
    # Zoom in and out with the buttons.
    page.click("#zoom-in")
    page.click("#zoom-reset")

    # Correct: add an inflammatory lesion where the model saw none; the counts follow.
    page.select_option("#add-class", "inflammatory")
    box = page.locator("#viewer").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#status-line:has-text('Saved as version 2')")
    after = _counts(page)
    assert after["inflammatory"] == before["inflammatory"] + 1
    assert after["total_acne"] == before["total_acne"] + 1
    assert page.locator("#overlay circle.mark").count() == n_marks + 1
    # ... and reclassify it as a comedone.
    page.select_option("#add-class", "")
    page.locator("#lesion-list tbody tr").last.click()
    page.select_option("#reclass-to", "comedone")
    page.click("#reclass-btn")
    page.wait_for_selector("#status-line:has-text('Saved as version 3')")
    final = _counts(page)
    _snap(page, "photo-corrected")
    assert final["inflammatory"] == before["inflammatory"] and final["comedone"] == before["comedone"] + 1
    assert "doc" in page.locator("#version-line").inner_text()

    # The patient page shows the corrected counts over time, and the report downloads.
    page.goto(patient_url)
    rows = page.locator("#counts-table tbody tr")
    assert rows.count() == 2
    comedones_now = int(rows.nth(1).locator("td[data-class=comedone] .count").inner_text())
    assert comedones_now == final["comedone"]
    assert page.locator("svg.chart polyline").count() == 4
    _snap(page, "patient")
    with page.expect_download() as dl:
        page.click("#report-link")
    report = tmp_path / "report.html"
    dl.value.save_as(report)
    text = report.read_text(encoding="utf-8")
    assert "E2E-001" in text and "2026-03-10" in text
    assert not errors, errors
    ctx.close()


def _login(page, server):
    page.goto(server.url + "/login")
    page.fill("input[name=username]", "doc")
    page.fill("input[name=password]", "e2e password 123")
    page.click("button[type=submit]")
    page.wait_for_selector("h1:text-is('Patients')")


def _version(page) -> int:
    m = re.search(r"version (\d+)", page.locator("#version-line").inner_text())
    return int(m.group(1)) if m else 0


def test_corrections_by_click_inside_a_ring_keys_undo_and_revert(server, browser, visit_photos):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _login(page, server)
    page.fill("#new-patient input[name=code]", "E2E-KEYS")
    page.click("#new-patient button[type=submit]")
    page.wait_for_selector("h1:text-is('Patient E2E-KEYS')")
    visit = _upload_visit(page, server, page.url, "2026-02-01", visit_photos[0])
    page.goto(visit)
    page.click("#photos a")
    page.wait_for_selector("#photo-app[data-ready='1']")
    n0 = page.locator("#overlay circle.mark").count()
    assert n0 >= 2, "the baseline photo has planted lesions"
    # The list shows the marks' own ids, the ones the history uses.
    ids = [page.locator("#overlay circle.mark").nth(i).get_attribute("data-id") for i in range(n0)]
    assert [page.locator("#lesion-list tbody tr").nth(i).locator("td").first.inner_text() for i in range(n0)] == ids

    # Add mode by key; a click in the middle of an existing ring selects it instead of adding a duplicate.
    page.keyboard.press("1")
    assert page.locator("#add-class").input_value() == "inflammatory"
    ring = page.locator("#overlay circle.mark").first
    box = ring.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#overlay circle.mark.selected")
    assert page.locator("#overlay circle.mark").count() == n0 and _version(page) == 1
    page.keyboard.press("Escape")
    assert page.locator("#add-class").input_value() == "" and page.locator("circle.selected").count() == 0

    # n selects the next mark, Delete removes it, u undoes, c reclassifies.
    page.keyboard.press("n")
    gone = page.locator("#overlay circle.mark.selected").get_attribute("data-id")
    page.keyboard.press("Delete")
    page.wait_for_selector("#status-line:has-text('Saved as version 2')")
    assert page.locator(f"#overlay circle.mark[data-id='{gone}']").count() == 0
    page.keyboard.press("u")
    page.wait_for_selector("#status-line:has-text('Saved as version 3')")
    assert page.locator(f"#overlay circle.mark[data-id='{gone}']").count() == 1
    page.wait_for_selector("#history:has-text('undid v2')")  # the history reloads after the save
    page.locator(f"#lesion-list tbody tr[data-id='{gone}']").click()
    cls = page.locator(f"#overlay circle.mark[data-id='{gone}']").get_attribute("data-cls")
    page.keyboard.press("s" if cls != "scar" else "c")
    page.wait_for_selector("#status-line:has-text('Saved as version 4')")
    assert page.locator(f"#overlay circle.mark[data-id='{gone}']").get_attribute("data-cls") != cls

    # Revert to the model's marks from the history.
    page.locator("#history button.revert[data-version='1']").click()
    page.wait_for_selector("#status-line:has-text('Saved as version 5')")
    assert page.locator(f"#overlay circle.mark[data-id='{gone}']").get_attribute("data-cls") == cls
    assert page.locator("#overlay circle.mark").count() == n0
    page.wait_for_selector("#history:has-text('reverted to v1')")
    assert not errors, errors
    ctx.close()


def test_patient_page_visits_and_records_in_the_browser(server, browser, visit_photos, tmp_path):
    """Issue 14 items 1, 2, 4-8: warnings where decisions are made, the aligned before/after, the chart by
    date, two photos of one view, a mixed upload, the report in the background, search, edit, erase."""
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _login(page, server)
    page.fill("#new-patient input[name=code]", "E2E-REC")
    page.fill("#new-patient input[name=birth_year]", "1990")
    page.click("#new-patient button[type=submit]")
    patient_url = page.url
    _upload_visit(page, server, patient_url, "2026-01-05", visit_photos[0])
    visit2 = _upload_visit(page, server, patient_url, "2026-02-04", visit_photos[1])

    # A mixed upload: the good photo is counted, the bad file is refused with its reason, nothing hangs.
    page.goto(visit2)
    page.select_option("#upload-view", "front")
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"this is not a photo at all" * 20)
    noface = tmp_path / "wall.jpg"
    noface.write_bytes(photo_bytes(640, 480, seed=5))
    page.set_input_files("#file-input", [str(noface), str(bad)])
    page.wait_for_selector("#show-counts", timeout=TIMEOUT_MS)
    assert page.locator("#upload-list li.failed").count() == 1
    assert "notes.jpg" in page.locator("#upload-list").inner_text()
    assert page.locator("#upload-list li.ok .state").inner_text() == "counted"
    page.click("#show-counts")

    # Two front photos at one visit: a warning, and the clinician chooses; the photo without a face is flagged.
    page.wait_for_selector("#doubled-front")
    row = page.locator("#photos tr", has_text="wall.jpg")
    assert "no face" in row.locator("td.quality").inner_text().lower()
    used_before = page.locator("#photos tr", has=page.locator("td.used:text-is('used')")).inner_text()
    with page.expect_navigation():  # the form posts, then the visit page comes back
        page.locator("#photos tr", has_text=visit_photos[1].name).locator(".use-btn").click()
    page.wait_for_selector("#doubled-front")
    used_after = page.locator("#photos tr", has=page.locator("td.used:text-is('used')")).inner_text()
    assert used_before != used_after and visit_photos[1].name in used_after
    # ... and the wrong one relabelled: the warning goes.
    wall = page.locator("#photos tr", has_text="wall.jpg")
    wall.locator("select[name=view]").select_option("left")
    with page.expect_navigation():
        wall.locator(".view-form button").click()
    page.wait_for_selector("#photos")
    assert page.locator("#doubled-front").count() == 0

    # A third visit photographed far too dark: not comparable, and the page says so where the change is.
    dark = tmp_path / "2026-03-06_front.jpg"
    Image.fromarray((np.asarray(Image.open(visit_photos[0])).astype(float) * 0.3).astype(np.uint8)).save(
        dark, quality=92
    )
    _upload_visit(page, server, patient_url, "2026-03-06", dark)

    # The patient page: visits placed by date, a labelled count axis, grades, regions, the aligned pair.
    page.goto(patient_url)
    page.wait_for_function(
        "() => [...document.querySelectorAll('td.comparable[data-url]')].every((td) => td.dataset.comparable)",
        timeout=TIMEOUT_MS,
    )
    verdicts = page.locator("td.comparable[data-url]").all_inner_texts()
    assert verdicts[0] == "yes" and verdicts[1].startswith("NO"), verdicts
    assert page.locator("#counts-table tr.not-comparable").count() == 1
    assert page.locator("svg.chart circle.not-comparable").count() == 4  # one per line at that visit
    assert page.locator("svg.chart text.y-tick").count() >= 3
    assert "day 30" in page.locator("svg.chart").inner_html()
    assert page.locator("#counts-table td.grade").count() == 3
    assert page.locator("#region-table").count() == 1
    page.wait_for_function(
        "document.getElementById('ba-after').complete && document.getElementById('ba-after').naturalWidth > 0"
    )
    page.locator("#ba-range").fill("20")
    assert "80%" in page.locator("#ba-after").evaluate("e => e.style.clipPath")
    page.click("#ba-blink")
    page.wait_for_function("() => document.getElementById('ba-after').style.clipPath.includes('100%')")
    page.click("#ba-blink")
    _snap(page, "patient-records")

    # The report, built in the background with its progress shown, then downloaded.
    with page.expect_download(timeout=TIMEOUT_MS) as dl:
        page.click("#report-link")
        page.wait_for_selector("#report-progress:has-text('Building the report')")
    dl.value.save_as(tmp_path / "r.html")
    assert "E2E-REC" in (tmp_path / "r.html").read_text(encoding="utf-8")

    # The visit page says the same about its photo.
    page.goto(visit2)
    page.wait_for_function(
        "() => [...document.querySelectorAll('td.comparable[data-url]')].every((td) => td.dataset.comparable)",
        timeout=TIMEOUT_MS,
    )
    used = page.locator("#photos tr", has=page.locator("td.used:text-is('used')"))
    assert used.first.locator("td.comparable").inner_text() == "yes"

    # Edit a visit, find the patient, erase the patient.
    page.goto(visit2)
    page.click("details.edit summary")
    page.fill("#edit-visit input[name=treatment]", "topical retinoid")
    with page.expect_navigation():
        page.click("#edit-visit button[type=submit]")
    page.wait_for_selector("text=topical retinoid")
    page.goto(server.url + "/")
    page.fill("#search input[name=q]", "e2e-rec")
    with page.expect_navigation():
        page.click("#search button")
    assert page.locator("table.list tbody tr").count() == 1
    page.goto(patient_url)
    page.locator("details.edit summary", has_text="Erase").click()
    page.fill("#erase-patient input[name=confirm]", "E2E-REC")
    page.click("#erase-patient button[type=submit]")
    page.wait_for_selector("h1:text-is('Patients')")
    assert "E2E-REC" not in page.content()
    assert not errors, errors
    ctx.close()


def test_accounts_roles_and_the_audit_log_in_the_browser(server, browser, tmp_path):
    """Issue 14 item 8, the account side: an admin creates a user, changes the role, resets the password,
    filters the audit log and downloads it; the user changes their own password."""
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/login")
    page.fill("input[name=username]", "boss")
    page.fill("input[name=password]", "e2e password 123")
    page.click("button[type=submit]")
    page.goto(server.url + "/admin/users")
    page.fill("form[action='/admin/users'] input[name=username]", "nurse")
    page.fill("form[action='/admin/users'] input[name=password]", "first nurse pw")
    with page.expect_navigation():
        page.click("form[action='/admin/users'] button[type=submit]")
    row = page.locator("tr[data-user='nurse']")
    assert row.locator("select[name=role]").input_value() == "clinician"  # the default, not admin
    row.locator("select[name=role]").select_option("viewer")
    with page.expect_navigation():
        row.locator(".role-form button").click()
    assert page.locator("tr[data-user='nurse'] select[name=role]").input_value() == "viewer"
    page.locator("tr[data-user='nurse'] .reset-form input[name=password]").fill("reset nurse pw")
    with page.expect_navigation():
        page.locator("tr[data-user='nurse'] .reset-form button").click()
    page.goto(server.url + "/admin/audit")
    page.select_option("#audit-filter select[name=action]", "set_role")
    with page.expect_navigation():
        page.click("#audit-filter button[type=submit]")
    assert "nurse: clinician -> viewer" in page.locator("table.list").inner_text()
    with page.expect_download() as dl:
        page.click("#audit-csv")
    dl.value.save_as(tmp_path / "audit.csv")
    assert "set_role" in (tmp_path / "audit.csv").read_text(encoding="utf-8")
    ctx.close()

    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    page = ctx.new_page()
    page.goto(server.url + "/login")
    page.fill("input[name=username]", "nurse")
    page.fill("input[name=password]", "reset nurse pw")
    page.click("button[type=submit]")
    page.goto(server.url + "/account")
    page.fill("#password-form input[name=current]", "reset nurse pw")
    page.fill("#password-form input[name=new]", "own nurse pw 1")
    page.fill("#password-form input[name=again]", "own nurse pw 1")
    page.click("#password-form button[type=submit]")
    page.wait_for_selector("text=Password changed")
    assert not errors, errors
    ctx.close()
