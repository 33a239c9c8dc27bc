"""Manifests, photo dates, compare_visits end to end on a synthetic patient, the JSON schema, the report and
the CLI (with saved counts: no model needed)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image
from skimage import data

from lesioncount.compare import ManifestError, Visit, compare_visits, demo, read_manifest
from lesioncount.compare.schema import VISIT_COMPARISON_SCHEMA
from lesioncount.compare.visits import parse_date, photo_date
from lesioncount.report.visits_html import STATUS_COLOURS, render_visits_html

DAY0 = dt.date(2026, 1, 10)


@pytest.fixture(scope="module")
def patient():
    """Baseline + 3 follow-ups of one front view: improvement, then a rebound; the last one darker."""
    clean = data.astronaut()
    base, planted = demo.baseline(clean, 1)
    h, w = clean.shape[:2]
    visits = [
        Visit(demo.make_result([demo.to_lesion(p, w, h) for p in planted], clean.shape), base, DAY0,
              treatment="botulinum toxin 20 U", age_years=17)
    ]  # fmt: skip
    follow = [
        (45, dict(keep=0.3, new_counts={"papule": 1}, matrix=demo.similarity(clean.shape, shift_px=(8.0, -5.0)))),
        (100, dict(keep=0.3, new_counts={"papule": 1}, matrix=demo.similarity(clean.shape, rotation_deg=4.0))),
        (170, dict(keep=0.6, new_counts={"papule": 4, "pustule": 3}, stops=-1.8)),
    ]
    truths = []
    for k, (days, kw) in enumerate(follow):
        fu = demo.follow_up(clean, planted, 10 + k, **kw)
        truths.append(fu)
        visits.append(Visit(demo.make_result(fu.lesions, clean.shape), fu.image, DAY0 + dt.timedelta(days=days)))
    return visits, truths


def test_compare_visits_end_to_end(patient) -> None:
    visits, truths = patient
    shuffled = [visits[2], visits[0], visits[3], visits[1]]
    comp = compare_visits(shuffled)
    assert [v.date for v in comp.visits] == sorted(v.date for v in visits)  # sorted by date
    assert len(comp.pairs) == 3 and all(p.baseline_index == 0 for p in comp.pairs)
    for pair, fu in zip(comp.pairs, truths, strict=True):
        assert pair.match is not None and pair.registration is not None
        assert pair.match.pairs == tuple(sorted(fu.persisting))
        assert pair.match.resolved == fu.resolved and pair.match.new == fu.new
        base_n = comp.visits[0].result.counts["inflammatory"]
        follow_n = comp.visits[pair.followup_index].result.counts["inflammatory"]
        assert pair.change["inflammatory"].absolute == follow_n - base_n
    assert [p.days for p in comp.pairs] == [45.0, 100.0, 170.0]
    # Clean follow-ups: comparable, colour measures shown; the dark one: flagged, colour measures withheld.
    assert comp.pairs[0].comparability.comparable and comp.pairs[0].secondary["shown"]
    dark = comp.pairs[2]
    assert any("stops darker" in w for w in dark.comparability.warnings) and not dark.secondary["shown"]
    # Durability comes from the comparable visits only: the dark follow-up (the apparent rebound) is left out.
    dur = comp.durability["front"]["inflammatory"]
    assert dur.visit_indices == (0, 1, 2) and dur.excluded == (3,)
    assert dur.counts == tuple(comp.visits[i].result.counts["inflammatory"] for i in (0, 1, 2))
    # A 17-year-old: toxin is contraindicated, and no hint may suggest (re-)treatment.
    assert any("contraindicated under 18" in w for w in comp.warnings)
    for d in comp.durability["front"].values():
        assert d.hint is None or ("re-treatment" not in d.hint and "consider" not in d.hint)
    assert [w for w in comp.warnings if "not comparable" in w] == [
        f"{comp.visits[3].name} (front) is not comparable with its baseline "
        f"({dark.comparability.warnings[0]}): its change from baseline may be wrong"
    ]
    # The JSON form validates against the documented schema and survives a JSON round trip.
    d = json.loads(json.dumps(comp.to_dict()))
    jsonschema.validate(d, VISIT_COMPARISON_SCHEMA)
    assert (
        d["pairs"][0]["match"]["by_class"]["inflammatory"]["resolved"]
        == comp.pairs[0].match.tally()["inflammatory"]["resolved"]
    )


def test_views_are_compared_only_with_their_own_baseline(patient) -> None:
    visits, _ = patient
    from dataclasses import replace

    left_base = replace(visits[0], view="left", date=DAY0 + dt.timedelta(days=1))
    left_follow = replace(visits[1], view="left", date=DAY0 + dt.timedelta(days=46))
    comp = compare_visits([visits[0], visits[1], left_base, left_follow])
    assert {(p.view, comp.visits[p.baseline_index].view) for p in comp.pairs} == {("front", "front"), ("left", "left")}
    assert comp.views == ["front", "left"] and comp.durability == {}


def test_counts_only_visits_and_errors(patient) -> None:
    visits, _ = patient
    from dataclasses import replace

    bare = [replace(v, image=None) for v in visits[:2]]
    comp = compare_visits(bare)
    assert comp.pairs[0].match is None and comp.pairs[0].registration is None
    assert not comp.pairs[0].secondary["shown"] and any("no photo" in w for w in comp.warnings)
    jsonschema.validate(json.loads(json.dumps(comp.to_dict())), VISIT_COMPARISON_SCHEMA)
    assert len(compare_visits(visits[:1]).pairs) == 0
    with pytest.raises(ValueError, match="at least one visit"):
        compare_visits([])
    with pytest.raises(ValueError, match="pass the photo the counts were made on"):
        compare_visits([replace(visits[0], image=np.zeros((64, 80, 3), np.uint8))])
    with pytest.raises(ValueError, match="not one of front, left, right"):
        compare_visits([replace(visits[0], view="top")])


def test_report_html(patient) -> None:
    visits, _ = patient
    html = render_visits_html(compare_visits(visits), title="P-0042 <test>")
    assert html.startswith("<!doctype html>") and "P-0042 &lt;test&gt;" in html
    assert html.count("data:image/jpeg;base64,") == 6  # 3 pairs x (baseline, aligned follow-up)
    assert html.count("data:image/png;base64,") == 1  # the timeline
    assert "contraindicated under 18" in html and "stops darker" in html and "rebound" in html
    for colour in STATUS_COLOURS.values():
        assert f"rgb{colour}" in html
    assert html.count("contraindicated under 18") == 1  # said once, not once per visit
    assert "baseline baseline" not in html and "Comparability 0." not in html
    report = render_visits_html(compare_visits(visits), clinic="Skin Clinic Oslo", clinician="Dr. A. Berg")
    assert "Skin Clinic Oslo" in report and "Dr. A. Berg" in report and "model truth 0" in report


def test_report_pdf(patient) -> None:
    from lesioncount.report.visits_html import render_visits_pdf

    pdf = render_visits_pdf(compare_visits(patient[0][:2]))
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000


def test_manifest_yaml_and_csv(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "patient: P-1\nbirth_date: 2009-06-01\nvisits:\n"
        "  - {date: 2026-01-10, view: front, path: a.jpg, treatment: Botox 20 U}\n"
        "  - {date: 2026-03-10, path: b.jpg, counts: b.json}\n"
    )
    recs = read_manifest(tmp_path / "m.yaml")
    assert recs[0].path == str(tmp_path / "a.jpg") and recs[0].view == "front" and recs[1].view is None
    assert recs[0].age_years == pytest.approx(16.61, abs=0.01) and recs[1].counts_path == str(tmp_path / "b.json")
    (tmp_path / "m.csv").write_text("date,view,path,age,treatment\n2026-01-10,left,a.jpg,30,\n,,b.jpg,,\n")
    recs = read_manifest(tmp_path / "m.csv")
    assert recs[0].age_years == 30 and recs[0].view == "left" and recs[1].date is None and recs[0].treatment is None
    bad = {
        "views.csv": ("date,view,path\n2026-01-10,top,a.jpg\n", "view 'top' is not one of"),
        "dates.csv": ("date,path\n10/01/2026,a.jpg\n", "write it as YYYY-MM-DD"),
        "typo.csv": ("date,paht\n2026-01-10,a.jpg\n", "did you mean 'path'"),
        "age.csv": ("age,path\nold,a.jpg\n", "not a number of years"),
        "empty.yaml": ("visits: []\n", "no visits listed"),
        "m.txt": ("x", "must be .yaml, .yml or .csv"),
    }
    for name, (text, msg) in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ManifestError, match=msg):
            read_manifest(tmp_path / name)
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "missing.yaml")


def test_dates_from_exif(tmp_path: Path) -> None:
    im = Image.fromarray(np.zeros((64, 64, 3), np.uint8))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2025:11:02 14:03:00"
    im.save(tmp_path / "e.jpg", exif=exif)
    im.save(tmp_path / "n.jpg")
    assert photo_date(tmp_path / "e.jpg") == dt.date(2025, 11, 2)
    assert photo_date(tmp_path / "n.jpg") is None
    assert photo_date(tmp_path / "missing.jpg") is None
    assert parse_date("2026-02-03") == dt.date(2026, 2, 3) and parse_date("") is None


def test_cli_with_saved_counts(patient, tmp_path: Path) -> None:
    from lesioncount.cli import main

    visits, _ = patient
    rows = []
    for i, v in enumerate(visits[:3]):
        Image.fromarray(v.image).save(tmp_path / f"v{i}.png")
        result = demo.make_result(v.result.lesions, v.image.shape, path=str(tmp_path / f"v{i}.png"))
        (tmp_path / f"v{i}.json").write_text(json.dumps(result.to_dict()))
        rows.append(
            f"{v.date.isoformat()},front,v{i}.png,{'17' if i == 0 else ''},{'Botox' if i == 0 else ''},v{i}.json"
        )
    (tmp_path / "p.csv").write_text("date,view,path,age,treatment,counts\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert main(["compare", "--manifest", str(tmp_path / "p.csv"), "--out", str(out)]) == 0
    d = json.loads((out / "comparison.json").read_text())
    jsonschema.validate(d, VISIT_COMPARISON_SCHEMA)
    assert len(d["pairs"]) == 2 and "front" in d["durability"]
    assert "contraindicated" in (out / "report.html").read_text()
    assert main(["compare", str(tmp_path / "v0.png"), "--out", str(out)]) == 2  # one photo is not a series
    assert main(["compare", "--manifest", str(tmp_path / "nope.csv"), "--out", str(out)]) == 2


@pytest.mark.slow
def test_cli_counts_with_the_model(patient, tmp_path: Path) -> None:
    from lesioncount.cli import main
    from lesioncount.infer import DEFAULT_MODEL_STEM

    model = Path(__file__).resolve().parents[1] / "models" / f"{DEFAULT_MODEL_STEM}.onnx"
    if not model.is_file():
        pytest.skip(f"no model at {model}")
    visits, _ = patient
    paths = []
    for i, v in enumerate(visits[:2]):
        Image.fromarray(v.image).save(tmp_path / f"v{i}.png")
        paths.append(str(tmp_path / f"v{i}.png"))
    out = tmp_path / "out"
    args = ["compare", *paths, "--date", "2026-01-10", "--date", "2026-02-24", "--view", "front"]
    assert main([*args, "--out", str(out), "--model", str(model), "--threads", "1"]) == 0
    d = json.loads((out / "comparison.json").read_text())
    jsonschema.validate(d, VISIT_COMPARISON_SCHEMA)
    assert d["pairs"][0]["days"] == 45 and d["pairs"][0]["registration"]["quality_label"] == "good"


def test_synthetic_patient_and_cli_demo(tmp_path: Path) -> None:
    from lesioncount.cli import main
    from lesioncount.compare.demo import synthetic_patient

    visits, truths = synthetic_patient(rng=0)
    comp = compare_visits(visits)
    for pair, fu in zip(comp.pairs, truths, strict=True):
        assert pair.match.pairs == tuple(sorted(fu.persisting)) and pair.match.new == fu.new
    assert comp.durability["front"]["inflammatory"].rebound
    assert {les.region for v in visits for les in v.result.lesions} - {"other"}  # regions come from the face
    out = tmp_path / "demo"
    assert main(["compare", "--demo", "--out", str(out)]) == 0
    jsonschema.validate(json.loads((out / "comparison.json").read_text()), VISIT_COMPARISON_SCHEMA)
    assert main(["compare", "--demo", "x.jpg", "--out", str(out)]) == 2


def test_the_given_view_is_used_and_a_disagreeing_detection_is_warned() -> None:
    """A re-take recorded as front but detected as left is still compared with the front baseline."""
    clean = data.astronaut()
    box = (150, 40, 200, 260)
    base = demo.make_result([], clean.shape, face_box=box, view="front")
    retake = demo.make_result([], clean.shape, face_box=box, view="left")
    comp = compare_visits(
        [Visit(base, clean, DAY0, view="front"), Visit(retake, clean, DAY0 + dt.timedelta(days=30), view="front")]
    )
    assert len(comp.pairs) == 1 and comp.pairs[0].view == "front"
    assert comp.pairs[0].comparability is not None and comp.pairs[0].comparability.view_match
    said = [w for w in comp.warnings if "looks like a left view" in w]
    assert len(said) == 1 and DAY0.isoformat() not in said[0]


def test_a_face_found_at_one_visit_only_is_not_comparable() -> None:
    clean = data.astronaut()
    box = (150, 40, 200, 260)
    found = demo.make_result([], clean.shape, face_box=box)
    lost = demo.make_result([], clean.shape, face_box=None)
    comp = compare_visits([Visit(found, clean, DAY0), Visit(lost, clean, DAY0 + dt.timedelta(days=30))])
    c = comp.pairs[0].comparability
    assert c is not None and not c.comparable and "face was not found in the follow-up" in c.warnings[0]


def test_pdf_report_tables_fit_the_page(patient) -> None:
    """Every table of every printed page lies within the page's content width (nothing cut at the margin)."""
    pytest.importorskip("weasyprint")
    from lesioncount.report.visits_html import render_visits_document

    visits, _ = patient
    doc = render_visits_document(compare_visits(visits), clinic="Clinic", clinician="Dr. X")
    assert len(doc.pages) >= 2

    def boxes(box):
        yield box
        for child in getattr(box, "children", None) or []:
            yield from boxes(child)

    n_tables = 0
    for page in doc.pages:
        body = page._page_box.children[0]  # the html box: the page minus its margins
        for b in boxes(page._page_box):
            if type(b).__name__ == "TableBox":
                n_tables += 1
                assert b.position_x + b.margin_width() <= body.position_x + body.margin_width() + 1.0
    assert n_tables >= 6


def test_aligned_crop_matches_a_full_warp() -> None:
    """The report's follow-up crop (only the part that lands in the crop is shrunk and warped) shows what
    warping the whole follow-up onto the baseline and cropping shows."""
    import cv2

    from lesioncount.compare.demo import similarity
    from lesioncount.report.visits_html import _aligned_crop

    photo = cv2.resize(data.astronaut(), (1536, 1536), interpolation=cv2.INTER_CUBIC)
    m = similarity(photo.shape, shift_px=(35.0, -20.0), rotation_deg=4.0, scale=0.8)  # follow-up -> baseline
    crop, size = (300, 200, 1100, 1000), (400, 400)
    got, valid = _aligned_crop(photo, m, crop, size)
    full = cv2.warpAffine(photo, m, (1536, 1536), flags=cv2.INTER_CUBIC)
    want = cv2.resize(full[200:1000, 300:1100], size, interpolation=cv2.INTER_AREA)
    assert valid[5:-5, 5:-5].all()
    diff = np.abs(got.astype(int) - want.astype(int))[5:-5, 5:-5]
    assert np.median(diff) <= 2 and np.percentile(diff, 99) <= 25, (np.median(diff), np.percentile(diff, 99))
    # Outside the follow-up's frame nothing is shown.
    _, edge = _aligned_crop(photo, similarity(photo.shape, shift_px=(400.0, 0.0)), (0, 0, 800, 800), size)
    assert not edge[:, :190].any() and edge[:, 210:].all()


def test_pdf_report_rendered_page_by_page_stays_inside_its_margins(patient, tmp_path: Path) -> None:
    """The printed report, rendered by pdftoppm (poppler; `make test` installs it), page by page: every page
    carries content, and nothing is drawn in the 12 mm margins (a table or image cut at the page edge would be)."""
    import shutil
    import subprocess

    pytest.importorskip("weasyprint")
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (Debian's poppler-utils) is not installed")
    from lesioncount.report.visits_html import render_visits_pdf

    visits, _ = patient
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render_visits_pdf(compare_visits(visits), clinic="Clinic", clinician="Dr. X"))
    dpi = 50
    subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2
    margin = int(12 / 25.4 * dpi) - 2  # the @page margin, less a pixel of anti-aliasing on each side
    for path in pages:
        page = np.asarray(Image.open(path).convert("L"))
        assert page.shape == pytest.approx((round(297 / 25.4 * dpi), round(210 / 25.4 * dpi)), abs=2)  # A4
        inner = page[margin:-margin, margin:-margin]
        assert (inner < 128).sum() > 100, f"{path.name} is blank"
        ring = page.copy()
        ring[margin:-margin, margin:-margin] = 255
        assert ring.min() >= 240, f"{path.name} draws in its margin at {np.argwhere(ring < 240)[:3].tolist()}"


def test_report_builds_its_advice_from_comparable_visits_only(patient) -> None:
    """Issue 13's advice rule: durability, rebound and the best visit come from comparable visits only, the
    report says which visit it left out, and no box says "no rebound" and "rising again" together."""
    import re

    visits, _ = patient
    comp = compare_visits(visits)
    assert all(d.excluded == (3,) for d in comp.durability["front"].values())
    html = render_visits_html(comp)
    boxes = re.findall(r"<div class=(?:warn|ok)>([^<]*)", html)
    lines = [b for b in boxes if b.startswith(("inflammatory:", "total acne:"))]
    assert len(lines) == 2
    for line in lines:
        assert "(from comparable visits only; visit 4 left out)" in line
        assert not ("no rebound" in line and "rising again" in line)
    assert "consider re-treatment" not in html  # a 17-year-old


def test_a_grade_change_within_re_take_noise_says_so() -> None:
    from types import SimpleNamespace

    from lesioncount.endpoints import Change
    from lesioncount.report.visits_html import _change_table

    def pair(base_n: int, follow_n: int) -> SimpleNamespace:
        change = {k: Change(base_n, follow_n) for k in ("inflammatory", "comedone", "total_acne", "scar")}
        grade = {
            "baseline": 2,
            "followup": 1,
            "change": -1,
            "baseline_label": "severe",
            "followup_label": "moderate",
            "baseline_n": base_n,
            "followup_n": follow_n,
        }
        return SimpleNamespace(change=change, responder={}, grades={"hayashi": grade})

    near = _change_table(pair(21, 20), 50)  # one lesion fewer crosses the boundary at 20/21
    assert "<td>-1 <span class=small>(within re-take noise)</span></td><td colspan=2" in near
    far = _change_table(pair(40, 12), 50)
    assert "<td>-1</td><td colspan=2" in far


def test_ages_show_whole_years_or_the_two_a_birth_year_allows() -> None:
    from lesioncount.report.visits_html import _age

    assert (_age(None), _age(31.0), _age(24.5)) == ("", "31", "24-25")


def test_region_changes_within_re_take_noise_are_greyed_without_a_percent() -> None:
    from lesioncount.endpoints import Change
    from lesioncount.report.visits_html import _region_cell

    assert _region_cell(Change(10, 8)) == "<td class=noise>10 → 8</td>"
    assert _region_cell(Change(10, 4)) == "<td>10 → 4 (-60%)</td>"
    assert _region_cell(Change(5, 5)) == "<td>5 → 5 (+0%)</td>"
