"""A follow-up counted in its baseline's frame: the given face analysis sets the skin, lesions come back in
the follow-up's pixels, a poor alignment keeps the follow-up's own count, a mirrored follow-up keeps the
patient's sides."""

from __future__ import annotations

import dataclasses
import datetime as dt

import cv2
import numpy as np
import pytest

from lesioncount.compare import Visit, compare_visits
from lesioncount.compare.demo import similarity
from lesioncount.compare.recount import can_recount
from lesioncount.compare.register import Registration, map_points
from lesioncount.demo import demo_photo
from lesioncount.face import analyse_face
from lesioncount.matching import match_centres
from lesioncount.pipeline import LesionCounter

PLAN = {"papule": 6, "pustule": 4, "blackhead": 3, "whitehead": 3}
DAY = dt.date(2026, 3, 2)


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, list]:
    return demo_photo(21, upscale=4, plan=PLAN)  # 2048 x 2048, face about 450 px high


def _moved(image: np.ndarray, m: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return np.asarray(cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), np.uint8)


def test_a_given_face_analysis_sets_where_lesions_are_counted(counter: LesionCounter, photo) -> None:  # type: ignore[no-untyped-def]
    image, _ = photo
    face = analyse_face(image)
    own = counter.count(image)
    assert own.counts["total_acne"] >= 8, own.counts
    left = face.skin.copy()
    left[:, image.shape[1] // 2 :] = False  # only the image's left half is skin
    half = counter.count(image, face=dataclasses.replace(face, skin=left))
    reach = 0.05 * (face.height_px or 0.0)  # the counting area is the skin grown by 4% of the face height
    assert half.lesions and all(les.x < image.shape[1] / 2 + reach for les in half.lesions)
    assert half.counts["total_acne"] < own.counts["total_acne"]
    with pytest.raises(ValueError, match="array image of the analysis's size"):
        counter.count(image[:-8], face=face)


def test_follow_up_counted_in_the_baseline_frame_lands_on_its_own_lesions(counter: LesionCounter, photo) -> None:  # type: ignore[no-untyped-def]
    image, planted = photo
    m = similarity(image.shape, shift_px=(40.0, -25.0), rotation_deg=2.5, scale=1.06)  # baseline -> follow-up
    again = _moved(image, m)
    base = counter.count(image)
    visits = [Visit(base, image, DAY, "front"), Visit(counter.count(again), again, DAY + dt.timedelta(30), "front")]
    pair = compare_visits(visits, counter=counter)
    (p,) = pair.pairs
    assert p.counted_in_baseline_frame
    follow = pair.visits[1].result
    assert "baseline_frame" in follow.timing_s
    # The lesions are in the follow-up's pixels: on the planted lesions moved by the known transform.
    targets = map_points(m, [(q.x, q.y) for q in planted if q.cls is not None])
    tol = [1.5 * q.radius * 1.06 + 4 for q in planted if q.cls is not None]
    hits = len(match_centres([(les.x, les.y) for les in follow.lesions], targets, tol)[0])
    assert hits >= 0.7 * len(targets), (hits, len(targets))
    # Nothing changed: the follow-up's count is the baseline's, lesion by lesion.
    assert p.match is not None
    assert len(p.match.resolved) + len(p.match.new) <= max(1, 0.1 * len(base.lesions)), p.match.tally()
    assert p.change["total_acne"].followup == follow.counts["total_acne"]
    assert abs(follow.counts["total_acne"] - base.counts["total_acne"]) <= 1
    # Without the counter, the follow-up's own count is compared.
    own = compare_visits(visits)
    assert not own.pairs[0].counted_in_baseline_frame
    assert own.visits[1].result is visits[1].result
    # A follow-up whose marks a clinician corrected keeps them, counter or not.
    kept = compare_visits([visits[0], dataclasses.replace(visits[1], recount=False)], counter=counter)
    assert not kept.pairs[0].counted_in_baseline_frame and kept.visits[1].result is visits[1].result


def test_poor_alignment_is_not_recounted() -> None:
    eye = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
    assert can_recount(Registration(eye, "features", quality=0.8))
    assert not can_recount(Registration(eye, "identity", quality=0.1))
    assert not can_recount(None)


def test_mirrored_follow_up_keeps_the_patients_sides(counter: LesionCounter, photo) -> None:  # type: ignore[no-untyped-def]
    image, _ = photo
    mirrored = np.ascontiguousarray(image[:, ::-1])
    base = counter.count(image)
    visits = [
        Visit(base, image, DAY, "front"),
        Visit(counter.count(mirrored), mirrored, DAY + dt.timedelta(30), "front"),
    ]
    comp = compare_visits(visits, counter=counter)
    (p,) = comp.pairs
    assert p.registration is not None and p.registration.mirrored
    assert p.counted_in_baseline_frame
    for side in ("left_cheek", "right_cheek"):
        change = p.region_change[side]["total_acne"]
        assert abs(change.followup - change.baseline) <= 1, (side, change)


def test_no_change_retakes_of_real_photos_keep_their_lesions(acne04) -> None:  # type: ignore[no-untyped-def]
    """Issue 13's goal on real photos: on re-takes where nothing changed, resolved plus new stay at most 10%
    of the baseline's lesions (12 ACNE04 validation photos of every grade; skipped without them)."""
    from lesioncount.evaluate.retake import retake
    from lesioncount.io import read_image

    counter = LesionCounter(threads=2)
    rng = np.random.default_rng(3)
    base_total = fates = recounted = 0
    for path in sorted((acne04 / "valid").glob("*.jpg"))[::24]:
        image = read_image(path)
        again = retake(image, rng).image
        visits = [
            Visit(counter.count(image), image, DAY, "left"),
            Visit(counter.count(again), again, DAY + dt.timedelta(14), "left"),
        ]
        (pair,) = compare_visits(visits, counter=counter).pairs
        assert pair.match is not None
        base_total += len(visits[0].result.lesions)
        fates += len(pair.match.resolved) + len(pair.match.new)
        recounted += pair.counted_in_baseline_frame
    assert recounted == 12
    assert base_total >= 120
    assert fates <= 0.10 * base_total, (fates, base_total)


def _heal_radius(les) -> int:  # type: ignore[no-untyped-def]
    return max(4, round(0.65 * max(les.bbox[2], les.bbox[3])))


def _heal(image: np.ndarray, lesions: list) -> np.ndarray:  # type: ignore[type-arg]
    """The photo with these lesions removed: each disc (1.3 times the lesion's box) inpainted from its rim."""
    mask = np.zeros(image.shape[:2], np.uint8)
    for les in lesions:
        cv2.circle(mask, (round(les.x), round(les.y)), _heal_radius(les), 255, -1)
    return np.asarray(cv2.inpaint(image, mask, 5, cv2.INPAINT_TELEA), np.uint8)


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_series_with_inpainted_lesions_reads_which_resolved(acne04) -> None:  # type: ignore[no-untyped-def]
    """Issue 13 on real photos: ACNE04 validation photos of every grade, half of their counted acne lesions
    inpainted away, then re-taken (rotated, zoomed, re-exposed, JPEG) by a known transform. The removed lesions
    read as resolved, the untouched skin keeps its lesions (the no-change goal: untouched lesions called
    resolved plus new lesions away from the inpainted discs, at most 10% of the baseline's lesions), and the
    rotation is read within 0.5 degrees. New lesions on the inpainted discs are the inpainting's own marks
    or a removed lesion's neighbour no longer outshone; they are counted apart.

    Measured (8 series): model 2.2.0, 74 of 76 removed lesions resolved, 6 false fates against 155 baseline
    lesions, 10 new on the discs; model 2.1.0, 71 of 76, 7 against 155, 6. Rotation within 0.01 degrees.
    """
    from lesioncount.evaluate.retake import retake
    from lesioncount.io import read_image
    from lesioncount.types import ACNE_CLASSES

    counter = LesionCounter(threads=2)
    rng = np.random.default_rng(5)
    removed_total = removed_resolved = base_total = noise = on_discs = series = 0
    for path in sorted((acne04 / "valid").glob("*.jpg"))[5::24]:
        image = read_image(path)
        base = counter.count(image)
        acne = [k for k, les in enumerate(base.lesions) if les.cls in ACNE_CLASSES]
        if len(acne) < 4:
            continue
        gone = {int(k) for k in rng.choice(acne, len(acne) // 2, replace=False)}
        discs = [(base.lesions[k].x, base.lesions[k].y, _heal_radius(base.lesions[k])) for k in gone]
        again = retake(_heal(image, [base.lesions[k] for k in gone]), rng)
        visits = [
            Visit(base, image, DAY, "left"),
            Visit(counter.count(again.image), again.image, DAY + dt.timedelta(30), "left"),
        ]
        (pair,) = compare_visits(visits, counter=counter).pairs
        assert pair.match is not None and pair.registration is not None
        assert pair.counted_in_baseline_frame
        assert abs(pair.registration.rotation_deg - again.rotation_deg) <= 0.5, (path.name, again.rotation_deg)
        resolved = set(pair.match.resolved)
        removed_total += len(gone)
        removed_resolved += len(gone & resolved)
        base_total += len(base.lesions)
        new_xy = [pair.match.follow_xy_in_base[j] for j in pair.match.new]
        near_disc = [any(np.hypot(x - dx, y - dy) <= r + 10 for dx, dy, r in discs) for x, y in new_xy]
        on_discs += sum(near_disc)
        noise += len(resolved - gone) + near_disc.count(False)
        series += 1
    assert series >= 6 and removed_total >= 40
    assert removed_resolved >= 0.85 * removed_total, (removed_resolved, removed_total)
    assert noise <= 0.10 * base_total, (noise, base_total)
    assert on_discs <= 0.2 * removed_total, (on_discs, removed_total)
