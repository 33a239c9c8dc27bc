"""Compare one patient's visits: the public entry point ``compare_visits``.

For every view, the earliest visit is the baseline and every later visit of that view is compared with
it: comparability, registration, lesion matching, change from baseline, grades, responder flags and the
photo measures (shine, redness). With three or more visits of a view, the durability of the response is
followed for inflammatory lesions and total acne. Safety warnings (botulinum toxin under 18) cover all
visits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.compare.comparability import (
    Comparability,
    PairedLight,
    PhotoStats,
    assess_comparability,
    paired_light,
    photo_stats,
)
from lesioncount.compare.match import LesionMatch, default_tolerance_px, match_lesions
from lesioncount.compare.recount import can_recount, count_in_baseline_frame
from lesioncount.compare.register import Registration, register
from lesioncount.compare.secondary import SkinMeasures, compare_measures, skin_measures
from lesioncount.compare.visits import Visit, order_visits
from lesioncount.endpoints import (
    Change,
    Durability,
    contraindication_warnings,
    count_change,
    durability_curve,
    grade_change,
    is_botulinum_toxin,
    region_change,
    responder_flags,
)
from lesioncount.types import TOTAL_ACNE, VIEWS, CountResult

if TYPE_CHECKING:
    from lesioncount.face import FaceAnalysis
    from lesioncount.pipeline import LesionCounter

log = logging.getLogger(__name__)

#: Version of the ``VisitComparison.to_dict`` JSON (see docs/compare.md and ``schema.py``).
COMPARE_SCHEMA_VERSION = "1.1"
#: Photo measures run on a copy whose long side is at most this.
MEASURE_LONG_SIDE_PX = 1200
#: Photos measured and pairs compared at once (threads: OpenCV, ONNX Runtime and LiteRT release the GIL).
WORKERS = min(4, os.cpu_count() or 1)
#: Counts a responder flag is given for (scars do not respond to acne treatment).
RESPONDER_KEYS = ("inflammatory", "comedone", TOTAL_ACNE)
#: Classes whose durability is followed.
DURABILITY_CLASSES = ("inflammatory", TOTAL_ACNE)


@dataclass(frozen=True, eq=False)
class PairComparison:
    """One follow-up compared with the baseline of its view.

    Attributes:
        view: the view.
        baseline_index: index of the baseline in ``VisitComparison.visits``.
        followup_index: index of the follow-up.
        days: days from baseline to follow-up, or None.
        registration: follow-up -> baseline registration (None without both photos).
        comparability: comparability verdict (None without both photos).
        match: lesion-level match (None without both photos).
        change: per class and ``total_acne``.
        region_change: per region, per class.
        grades: Hayashi and GAGS change.
        responder: per class, at least ``responder_threshold_pct`` fewer lesions.
        secondary: shine/redness values and change, or why they are withheld.
        counted_in_baseline_frame: the follow-up was counted aligned to the baseline, on the baseline's skin
            at its scale (``lesioncount.compare.recount``), rather than on its own.
    """

    view: str
    baseline_index: int
    followup_index: int
    days: float | None
    registration: Registration | None
    comparability: Comparability | None
    match: LesionMatch | None
    change: dict[str, Change]
    region_change: dict[str, dict[str, Change]]
    grades: dict[str, Any]
    responder: dict[str, bool | None]
    secondary: dict[str, Any]
    counted_in_baseline_frame: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "baseline_index": self.baseline_index,
            "followup_index": self.followup_index,
            "days": self.days,
            "registration": None if self.registration is None else self.registration.to_dict(),
            "comparability": None if self.comparability is None else self.comparability.to_dict(),
            "match": None if self.match is None else self.match.to_dict(),
            "change": {k: c.to_dict() for k, c in self.change.items()},
            "region_change": {r: {k: c.to_dict() for k, c in v.items()} for r, v in self.region_change.items()},
            "grades": self.grades,
            "responder": self.responder,
            "secondary": self.secondary,
            "counted_in_baseline_frame": self.counted_in_baseline_frame,
        }


@dataclass(frozen=True, eq=False)
class VisitComparison:
    """Everything ``compare_visits`` found for one patient.

    Attributes:
        visits: the visits in date order.
        pairs: every follow-up against the baseline of its view.
        durability: view -> class -> durability (views with three or more visits).
        photo_stats: per visit, the comparability statistics (None without a photo).
        measures: per visit, shine and redness (None without a photo or skin).
        warnings: patient-level warnings (contraindications, missing dates or photos).
        responder_threshold_pct: the responder rule used.
    """

    visits: tuple[Visit, ...]
    pairs: tuple[PairComparison, ...]
    durability: dict[str, dict[str, Durability]]
    photo_stats: tuple[PhotoStats | None, ...]
    measures: tuple[SkinMeasures | None, ...]
    warnings: tuple[str, ...]
    responder_threshold_pct: float = 50.0

    def pairs_for(self, view: str) -> list[PairComparison]:
        """The pairs of one view, in follow-up order."""
        return [p for p in self.pairs if p.view == view]

    @property
    def views(self) -> list[str]:
        """Views present, in ``VIEWS`` order."""
        present = {v.view for v in self.visits}
        return [v for v in VIEWS if v in present]

    def _visit_dict(self, i: int) -> dict[str, Any]:
        v, st, me = self.visits[i], self.photo_stats[i], self.measures[i]
        return {
            "index": i,
            "name": v.name,
            "date": None if v.date is None else v.date.isoformat(),
            "view": v.view,
            "age_years": v.age_years,
            "treatment": v.treatment,
            "image": v.result.image.path,
            "counts": dict(v.result.counts),
            "counts_by_region": {r: dict(c) for r, c in v.result.counts_by_region.items()},
            "grades": v.result.grades,
            "photo_stats": None if st is None else st.to_dict(),
            "measures": None if me is None else me.to_dict(),
            "result": v.result.to_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (schema in docs/compare.md, ``lesioncount.compare.schema``)."""
        return {
            "schema_version": COMPARE_SCHEMA_VERSION,
            "kind": "lesioncount.visit_comparison",
            "visits": [self._visit_dict(i) for i in range(len(self.visits))],
            "pairs": [p.to_dict() for p in self.pairs],
            "durability": {view: {c: d.to_dict() for c, d in ds.items()} for view, ds in self.durability.items()},
            "responder_threshold_pct": self.responder_threshold_pct,
            "warnings": list(self.warnings),
        }


def _small(
    image: npt.NDArray[np.uint8], box: Sequence[float] | None, skin: npt.NDArray[np.bool_] | None
) -> tuple[npt.NDArray[np.uint8], tuple[float, float, float, float] | None, npt.NDArray[np.bool_] | None]:
    """The photo, face box and skin at a long side of at most ``MEASURE_LONG_SIDE_PX``."""
    s = min(1.0, MEASURE_LONG_SIDE_PX / max(image.shape[:2]))
    box_s = None if box is None else (box[0] * s, box[1] * s, box[2] * s, box[3] * s)
    if s == 1.0:
        return image, box_s, skin
    small = np.asarray(cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA), np.uint8)
    if skin is not None:
        size = (small.shape[1], small.shape[0])
        skin = cv2.resize(skin.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return small, box_s, skin


def _skin(image: npt.NDArray[np.uint8], box: tuple[float, float, float, float] | None) -> npt.NDArray[np.bool_]:
    """Skin for the photo measures when the visit brings none: the face module's, else the face ellipse."""
    from lesioncount.compare.comparability import face_mask
    from lesioncount.face import analyse_face

    fa = analyse_face(image)
    if fa.found and fa.skin.sum() >= 200:
        return fa.skin
    return face_mask(image.shape, box)


def _swap_sides(by_region: Mapping[str, Mapping[str, int]]) -> dict[str, Mapping[str, int]]:
    swap = {"left_cheek": "right_cheek", "right_cheek": "left_cheek"}
    return {swap.get(r, r): c for r, c in by_region.items()}


def _region_change(
    base: CountResult, follow: CountResult, reg: Registration | None, *, in_base_frame: bool = False
) -> dict[str, dict[str, Change]]:
    """Change per region; none where either photo's regions are unknown (no face); a mirrored follow-up's
    sides are swapped back (its landmarks read the mirrored face as an ordinary one), unless it was counted
    in the baseline's frame (its regions are then the baseline's)."""
    if not (base.face.found and (follow.face.found or in_base_frame)):
        return {}
    follow_regions: Mapping[str, Mapping[str, int]] = follow.counts_by_region
    if reg is not None and reg.mirrored and not in_base_frame:
        follow_regions = _swap_sides(follow_regions)
    return region_change(base.counts_by_region, follow_regions)


def _days(a: dt.date | None, b: dt.date | None) -> float | None:
    return None if a is None or b is None else float((b - a).days)


def _not_comparable(pair: PairComparison) -> bool:
    return pair.comparability is not None and not pair.comparability.comparable


def compare_visits(
    visits: Sequence[Visit],
    *,
    tolerance_px: float | None = None,
    responder_threshold_pct: float = 50.0,
    refine: bool = True,
    counter: LesionCounter | None = None,
) -> VisitComparison:
    """Compare one patient's visits, each follow-up against the baseline of the same view.

    Args:
        visits: the patient's visits (any order; sorted by date when every date is known).
        tolerance_px: lesion matching tolerance in baseline pixels; None: 2% of the baseline face height.
        responder_threshold_pct: responder rule (percent fewer lesions).
        refine: run the ECC refinement of the registration.
        counter: the counter the visits were counted with. When given, each follow-up whose alignment is at
            least fair is counted again in its baseline's frame (``lesioncount.compare.recount``: the same
            skin at the same scale), and that count replaces its own in the comparison; a visit with
            ``recount=False`` keeps its own. Leave it None to keep every visit's count as it is (a
            clinician's corrected marks, saved counts).

    Returns:
        The comparison.

    Raises:
        ValueError: no visits, or a visit's photo does not match its count result's size.
    """
    if not visits:
        raise ValueError("compare_visits needs at least one visit (a baseline)")
    ordered = order_visits(visits)
    for v in ordered:
        if v.view not in VIEWS:
            raise ValueError(f"visit {v.name}: view {v.view!r} is not one of {', '.join(VIEWS)}")
        if v.image is not None and (v.image.shape[1], v.image.shape[0]) != (
            v.result.image.width,
            v.result.image.height,
        ):
            raise ValueError(
                f"visit {v.name}: photo is {v.image.shape[1]}x{v.image.shape[0]} but its counts are for "
                f"{v.result.image.width}x{v.result.image.height}; pass the photo the counts were made on"
            )
    warnings = _visit_warnings(ordered)
    shared = _measure(ordered)
    ordered = list(ordered)
    tasks = []  # (baseline, follow-up, view, the baseline's face analysis for the recount)
    for view in VIEWS:
        idx = [i for i, v in enumerate(ordered) if v.view == view]
        base_face = None
        if counter is not None and len(idx) > 1 and ordered[idx[0]].image is not None:
            from lesioncount.face import analyse_face

            base_face = analyse_face(ordered[idx[0]].image)  # type: ignore[arg-type]
        tasks += [(idx[0], f, view, base_face) for f in idx[1:]]

    def compare(task: tuple[int, int, str, FaceAnalysis | None]) -> tuple[PairComparison, Visit]:
        b, f, view, base_face = task
        recount = None if counter is None or base_face is None or not ordered[f].recount else (counter, base_face)
        return _compare_pair(ordered, shared, b, f, view, tolerance_px, responder_threshold_pct, refine, recount)

    # Pairs are independent (each follow-up has one baseline), and OpenCV and ONNX Runtime release the GIL.
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        done = list(pool.map(compare, tasks))
    pairs = [pair for pair, _ in done]
    for (_, f, _, _), (_, follow) in zip(tasks, done, strict=True):
        ordered[f] = follow
    durability = _durability(ordered, pairs)
    for pair in pairs:
        comp = pair.comparability
        if comp is not None and not comp.comparable:
            why = comp.warnings[0] if comp.warnings else f"comparability {comp.score:.2f}"
            warnings.append(
                f"{ordered[pair.followup_index].name} ({pair.view}) is not comparable with its baseline ({why}): "
                "its change from baseline may be wrong"
            )
    return VisitComparison(
        visits=tuple(ordered),
        pairs=tuple(pairs),
        durability=durability,
        photo_stats=tuple(shared.stats),
        measures=tuple(shared.measures),
        warnings=tuple(warnings),
        responder_threshold_pct=responder_threshold_pct,
    )


def _visit_warnings(ordered: Sequence[Visit]) -> list[str]:
    """Warnings about the series itself: views given against detected, dates, photos, the toxin rules."""
    warnings: list[str] = []
    for v in ordered:
        # The view the user gave decides which photos are compared; a detected view that disagrees is said.
        detected = v.result.face.view
        if v.result.face.found and detected in VIEWS and detected != v.view:
            yaw = v.result.face.yaw_deg
            pose = f", head turned {abs(yaw):.0f} degrees" if yaw is not None else ""
            warnings.append(
                f"visit {v.name}: compared as a {v.view} view, but the face looks like a {detected} view{pose}; "
                "check the view recorded for this photo"
            )
    if any(v.date is None for v in ordered):
        warnings.append("some visits have no date: visits are taken in the order given and no durability days")
    if any(v.image is None for v in ordered):
        warnings.append("some visits have no photo: those are compared on counts only (no lesion matching)")
    warnings += contraindication_warnings([(v.treatment, v.age_years, v.date) for v in ordered])
    if any(is_botulinum_toxin(v.treatment) and v.age_years is None for v in ordered):
        warnings.append("botulinum toxin is recorded but the patient's age is not: it is contraindicated under 18")
    return warnings


def _measure(ordered: Sequence[Visit]) -> _Measured:
    """Each visit's photo at measuring size, its skin, its comparability stats and skin measures."""

    def one(v: Visit) -> tuple[Any, PhotoStats | None, SkinMeasures | None, npt.NDArray[np.bool_] | None]:
        if v.image is None:
            return None, None, None, None
        img, box, skin = sm = _small(v.image, v.result.face.box, v.skin_mask)
        if skin is None:
            skin = _skin(img, box)
        return sm, photo_stats(img, face_box=box, skin_mask=skin, view=v.view), skin_measures(img, skin), skin

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        small, stats, measures, skins = (list(col) for col in zip(*pool.map(one, ordered), strict=True))
    return _Measured(small, stats, measures, skins)


def _durability(ordered: Sequence[Visit], pairs: Sequence[PairComparison]) -> dict[str, dict[str, Durability]]:
    """Per view with three or more comparable visits: durability, rebound and the best visit.

    Only comparable visits count (the others stay on the chart, marked); a hint suggests treatment only
    for a patient known to be an adult.
    """
    ages = [v.age_years for v in ordered if v.age_years is not None]
    age = ages[-1] if ages else None
    out: dict[str, dict[str, Durability]] = {}
    for view in VIEWS:
        idx = [i for i, v in enumerate(ordered) if v.view == view]
        bad = {p.followup_index for p in pairs if p.view == view and _not_comparable(p)}
        ok = [i for i in idx if i not in bad]
        if len(ok) < 3:
            continue
        base = ordered[ok[0]]
        treat = [i for i in ok if ordered[i].treatment]
        last_t = ordered[treat[-1]] if treat else None
        since = _days(last_t.date, ordered[ok[-1]].date) if last_t is not None else None
        out[view] = {
            c: dataclasses.replace(
                durability_curve(
                    [ordered[i].result.counts.get(c, 0) for i in ok],
                    [_days(base.date, ordered[i].date) for i in ok],
                    cls=c,
                    treatment=last_t.treatment if last_t is not None else None,
                    days_since_treatment=since,
                    age_years=age,
                ),
                visit_indices=tuple(ok),
                excluded=tuple(sorted(bad)),
            )
            for c in DURABILITY_CLASSES
        }
    return out


@dataclass(frozen=True)
class _Measured:
    """Per visit: the photo at measuring size (with its face box and skin), its stats and skin measures."""

    small: Sequence[tuple[npt.NDArray[np.uint8], Any, Any] | None]
    stats: Sequence[PhotoStats | None]
    measures: Sequence[SkinMeasures | None]
    skins: Sequence[npt.NDArray[np.bool_] | None]

    def light(self, visits: Sequence[Visit], b: int, f: int, reg: Registration) -> PairedLight | None:
        """Exposure and white balance on the skin both photos share, through the registration."""
        sb, sf, kb, kf = self.small[b], self.small[f], self.skins[b], self.skins[f]
        if sb is None or sf is None or kb is None or kf is None:
            return None
        base_img, follow_img = visits[b].image, visits[f].image
        assert base_img is not None and follow_img is not None
        rb, rf = sb[0].shape[1] / base_img.shape[1], sf[0].shape[1] / follow_img.shape[1]
        m = np.asarray(reg.affine, np.float64).copy()
        m[:, :2] *= rb / rf  # follow-up measuring pixels -> baseline measuring pixels
        m[:, 2] *= rb
        return paired_light(sb[0], sf[0], kb, kf, m)


def _compare_pair(
    visits: Sequence[Visit],
    measured: _Measured,
    b: int,
    f: int,
    view: str,
    tolerance_px: float | None,
    responder_threshold_pct: float,
    refine: bool,
    recount: tuple[LesionCounter, FaceAnalysis] | None = None,
) -> tuple[PairComparison, Visit]:
    """The pair's comparison, and the follow-up visit as compared (counted in the baseline's frame when
    ``recount`` gives the counter and the baseline's face analysis and the alignment allows it)."""
    base, follow = visits[b], visits[f]
    reg = comp = match = None
    in_base_frame = False
    secondary: dict[str, Any] = {"shown": False, "reason": "no photo for one of the visits"}
    follow_image = follow.image
    if base.image is not None and follow_image is not None:
        log.info("registering %s onto %s (%s view)", follow.name, base.name, view)
        reg = register(
            base.image,
            follow_image,
            base_box=base.result.face.box,
            follow_box=follow.result.face.box,
            base_landmarks=base.result.face.landmarks,
            follow_landmarks=follow.result.face.landmarks,
            refine=refine,
        )
        if recount is not None and can_recount(reg):
            log.info("counting %s in the baseline's frame", follow.name)
            counted = count_in_baseline_frame(recount[0], follow_image, follow.result, reg, recount[1])
            follow, in_base_frame = dataclasses.replace(follow, result=counted), True
        light = measured.light(visits, b, f, reg)
        # Counted in the baseline's frame, both are counted on one skin at one scale by construction: the
        # rules for photos framed apart (a face found in one only, counting scales apart) do not apply.
        found = None if in_base_frame else (base.result.face.found, follow.result.face.found)
        scales = None if in_base_frame else (base.result.face.scale, follow.result.face.scale)
        comp = assess_comparability(measured.stats[b], measured.stats[f], reg, light, found, scales)  # type: ignore[arg-type]
        tol = tolerance_px or default_tolerance_px(base.result.face.box, base.image.shape)
        match = match_lesions(
            base.result.lesions,
            follow.result.lesions,
            reg,
            tolerance_px=tol,
            base_shape=base.image.shape,
            follow_shape=follow_image.shape,
            base_near=base.result.near_threshold,
            follow_near=follow.result.near_threshold,
        )
        secondary = compare_measures(measured.measures[b], measured.measures[f], comp)
    change = count_change(base.result.counts, follow.result.counts)
    pair = PairComparison(
        view=view,
        baseline_index=b,
        followup_index=f,
        days=_days(base.date, follow.date),
        registration=reg,
        comparability=comp,
        match=match,
        change=change,
        region_change=_region_change(base.result, follow.result, reg, in_base_frame=in_base_frame),
        grades=grade_change(base.result.grades, follow.result.grades),
        responder=responder_flags({k: change[k] for k in RESPONDER_KEYS}, threshold_pct=responder_threshold_pct),
        secondary=secondary,
        counted_in_baseline_frame=in_base_frame,
    )
    return pair, follow
