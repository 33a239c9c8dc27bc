"""The shipped model on photos with planted lesions: recovered at two scales, marks not counted, demo runs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lesioncount.demo import demo_photo, run_demo
from lesioncount.matching import match_centres
from lesioncount.pipeline import LesionCounter
from lesioncount.synth import PLANTED_CHECK_PLAN, PLANTED_CHECK_RECALL, PLANTED_CHECK_SEED, PLANTED_CHECK_UPSCALE


def _recovered(result, planted, scale: float = 1.0) -> int:  # type: ignore[no-untyped-def]
    """Planted lesions with a found lesion within 1.5 radii + 4 px (photo pixels), one-to-one."""
    targets = [p for p in planted if p.cls is not None]
    return len(
        match_centres(
            [(les.x, les.y) for les in result.lesions],
            [(p.x * scale, p.y * scale) for p in targets],
            [(1.5 * p.radius + 4) * scale for p in targets],
        )[0]
    )


@pytest.fixture(scope="module")
def planted_photo() -> tuple[np.ndarray, list]:
    return demo_photo(PLANTED_CHECK_SEED, upscale=PLANTED_CHECK_UPSCALE, plan=PLANTED_CHECK_PLAN)  # 3072 px


def test_planted_lesions_recovered(counter: LesionCounter, planted_photo) -> None:  # type: ignore[no-untyped-def]
    image, planted = planted_photo
    inflammatory = [p for p in planted if p.cls == "inflammatory"]
    big = counter.count(image)
    # Measured with model 2.2.0 (soft count on smoothed heatmaps): 9 of 11 inflammatory, 16 of 21 planted lesions
    # in all (2.1.0: 10 and 17). Its calibration keeps this recall (lesioncount.train.calibrate.planted_recall).
    assert _recovered(big, inflammatory) >= PLANTED_CHECK_RECALL * len(inflammatory), big.counts
    assert _recovered(big, planted) >= 0.7 * sum(p.cls is not None for p in planted), big.counts


@pytest.mark.xfail(
    strict=True,
    reason="known weakness of model 2.2.0: a face enlarged over 2x (here 223 px high) loses small lesions "
    "(measured: 8 of 11 inflammatory, total acne 10 against 15 at full size)",
)
def test_same_face_at_a_third_of_the_resolution_gives_the_same_counts(counter: LesionCounter, planted_photo) -> None:  # type: ignore[no-untyped-def]
    image, planted = planted_photo
    inflammatory = [p for p in planted if p.cls == "inflammatory"]
    big = counter.count(image)
    small = counter.count(cv2.resize(image, None, fx=1 / 3, fy=1 / 3, interpolation=cv2.INTER_AREA))
    assert _recovered(small, inflammatory, 1 / 3) >= PLANTED_CHECK_RECALL * len(inflammatory), small.counts
    assert abs(big.counts["total_acne"] - small.counts["total_acne"]) <= max(3, 0.2 * big.counts["total_acne"])


def test_expert_style_marks_find_the_planted_acne(counter: LesionCounter, planted_photo) -> None:  # type: ignore[no-untyped-def]
    image, planted = planted_photo
    acne = [p for p in planted if p.cls in ("inflammatory", "comedone")]
    r = counter.count(image)
    found = len(
        match_centres(
            [(m.x, m.y) for m in r.expert_marks], [(p.x, p.y) for p in acne], [1.5 * p.radius + 4 for p in acne]
        )[0]
    )
    # Measured with model 2.3.0: 16 of the 17 planted acne lesions (11 of 11 inflammatory, 5 of 6
    # comedones), with 20 expert-style marks in all; the counted marks found 12 of them.
    assert found >= 0.8 * len(acne), (found, len(r.expert_marks))
    assert len(r.expert_marks) <= 2 * len(acne)


def _marks_counted(counter: LesionCounter, kind: str, *, experts: bool = False) -> int:
    hits = 0
    for seed in (11, 12, 13):
        image, planted = demo_photo(seed, upscale=5, plan={kind: 5, "papule": 3})
        r = counter.count(image)
        marks = r.expert_marks if experts else r.lesions
        hits += sum(
            1
            for p in planted
            if p.kind == kind and any(np.hypot(les.x - p.x, les.y - p.y) <= 1.5 * p.radius + 4 for les in marks)
        )
    return hits


def test_brown_marks_are_not_counted(counter: LesionCounter) -> None:
    assert _marks_counted(counter, "brown_mark") <= 3  # of 15; measured 2 with model 2.2.0 (2.1.0: 0, 2.0.0: 2)
    # The expert-style marks too: measured 3 of 15 with model 2.3.0.
    assert _marks_counted(counter, "brown_mark", experts=True) <= 4


@pytest.mark.xfail(strict=True, reason="known weakness of model 2.2.0: flat red marks (PIE) are counted as papules")
def test_red_marks_are_not_counted(counter: LesionCounter) -> None:
    assert _marks_counted(counter, "red_mark") <= 2  # of 15; measured 11 with model 2.2.0 (2.1.0: 13, 2.0.0: 12)


def test_demo_writes_its_outputs(tmp_path: Path) -> None:
    o = run_demo(tmp_path)
    for f in o.files.values():
        assert f.is_file() and f.stat().st_size > 0
    assert o.n_planted == sum(o.planted.values()) > 0
    assert o.matched >= 0.6 * o.n_planted
    assert "planted" in o.files["html"].read_text()
