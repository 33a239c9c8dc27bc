"""Count a follow-up photo in its baseline's frame: aligned to the baseline, on the baseline's skin, at its scale.

Counted on its own, a follow-up is framed by its own face stage: its own face height sets the working
scale and its own skin where lesions are looked for. Two shots of an unchanged face then differ by more
than the lesions: a face box 3% taller, a skin edge a few pixels further out, and peaks near the threshold
fall on the other side of it. Counted in the baseline's frame, the follow-up is warped onto the baseline
with the registration and counted with the baseline's face analysis, so both photos are read at the same
scale on the same skin, and only what changed on the skin changes the count. On no-change re-takes of
real photos this halved the lesions called resolved or new (``docs/compare.md``).

The lesions are mapped back into the follow-up's pixels through the registration's inverse, so the
follow-up's overlay, JSON and the lesion matching work as for any count. Their regions are the baseline's
(the patient's own sides, also for a mirrored follow-up).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.compare.register import QUALITY_FAIR, Registration, invert, map_points, warp_to_base
from lesioncount.count import count_by_class, count_by_region
from lesioncount.types import CountResult, Lesion

if TYPE_CHECKING:
    from lesioncount.face import FaceAnalysis
    from lesioncount.pipeline import LesionCounter


def can_recount(registration: Registration | None) -> bool:
    """Whether the alignment is good enough to count the follow-up in the baseline's frame: a band-pass NCC
    of the aligned faces of at least ``QUALITY_FAIR`` (under it, lesions would be looked for in the wrong
    places of the baseline's skin)."""
    return registration is not None and registration.quality >= QUALITY_FAIR


def _to_follow(les: Lesion, inverse: npt.NDArray[np.float64], size_scale: float) -> Lesion:
    ((x, y),) = map_points(inverse, [[les.x, les.y]])
    w, h = les.bbox[2] * size_scale, les.bbox[3] * size_scale
    return dataclasses.replace(
        les,
        x=float(x),
        y=float(y),
        bbox=(float(x - w / 2), float(y - h / 2), float(w), float(h)),
        area_px=les.area_px * size_scale**2,
    )


def count_in_baseline_frame(
    counter: LesionCounter,
    follow_image: npt.NDArray[np.uint8],
    follow_result: CountResult,
    registration: Registration,
    base_face: FaceAnalysis,
) -> CountResult:
    """The follow-up's count result, counted in the baseline's frame.

    Args:
        counter: the counter (model) the visits were counted with.
        follow_image: the follow-up photo (HxWx3 uint8 RGB).
        follow_result: its own count result: its image and face blocks are kept.
        registration: follow-up -> baseline registration.
        base_face: the baseline photo's face analysis, at the baseline photo's size.

    Returns:
        ``follow_result`` with the lesions, near-threshold peaks, counts and grades of the aligned count, in
        follow-up pixels (its warnings are the follow-up's own: the pixels are the same), and the aligned
        count's time as ``timing_s["baseline_frame"]``.
    """
    from lesioncount.pipeline import grade_block

    # The border is replicated, not black: a black edge across the skin would look like a dark lesion.
    warped, covered = warp_to_base(
        follow_image, registration, base_face.skin.shape, interpolation=cv2.INTER_CUBIC, border=cv2.BORDER_REPLICATE
    )
    face = dataclasses.replace(base_face, skin=base_face.skin & covered)
    aligned = counter.count(warped, name=follow_result.image.path, face=face)
    inverse = invert(registration.affine)
    size_scale = 1.0 / registration.scale

    def in_follow(found: tuple[Lesion, ...]) -> list[Lesion]:
        """The lesions on pixels the follow-up shows (the counting area reaches past its skin), mapped back."""
        h, w = covered.shape
        shown = [les for les in found if covered[min(max(int(les.y), 0), h - 1), min(max(int(les.x), 0), w - 1)]]
        return [_to_follow(les, inverse, size_scale) for les in shown]

    lesions = sorted(in_follow(aligned.lesions), key=lambda c: (c.y, c.x))
    near = tuple(in_follow(aligned.near_threshold))
    gradable = follow_result.grades.get("hayashi") is not None
    timing = {**follow_result.timing_s, "baseline_frame": float(np.round(aligned.timing_s.get("total", 0.0), 4))}
    return dataclasses.replace(
        follow_result,
        lesions=tuple(lesions),
        counts=count_by_class(lesions),
        counts_by_region=count_by_region(lesions),
        grades=grade_block(lesions, follow_result.face, gradable=gradable),
        timing_s=timing,
        near_threshold=near,
    )
