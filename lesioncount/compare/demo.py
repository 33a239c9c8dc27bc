"""Synthetic visit series with known lesion fates, for tests, demos and the web app's example patient.

A baseline photo gets planted lesions (``lesioncount.synth``); the follow-up keeps some of them at the same
skin positions (persisting), drops the rest (resolved) and gains new ones away from all baseline lesions,
then is moved by a known similarity transform (shift, rotation, scale) and given a known exposure change
and blur. The true lesion positions in both photos are exact, so registration and matching can be scored
without any model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.compare.visits import Visit
from lesioncount.count import count_by_class, count_by_region, grades
from lesioncount.synth import KINDS, PlantedLesion, change_exposure, plant, render, skin_tone_mask
from lesioncount.types import CountResult, FaceInfo, ImageInfo, Lesion, ModelInfo

#: Default lesion mix planted at baseline.
BASELINE_COUNTS: dict[str, int] = {"papule": 5, "pustule": 2, "blackhead": 4, "whitehead": 2, "boxcar": 2}


@dataclass(frozen=True)
class SyntheticFollowUp:
    """One synthetic follow-up photo and the truth about it.

    Attributes:
        image: HxWx3 uint8 RGB follow-up photo.
        lesions: its lesions in follow-up pixels (exact planted centres).
        matrix: 2x3 affine baseline -> follow-up pixels that was applied.
        persisting: ``(baseline index, follow-up index)`` pairs.
        resolved: baseline indices not in the follow-up.
        new: follow-up indices not in the baseline.
    """

    image: npt.NDArray[np.uint8]
    lesions: tuple[Lesion, ...]
    matrix: npt.NDArray[np.float64]
    persisting: tuple[tuple[int, int], ...]
    resolved: tuple[int, ...]
    new: tuple[int, ...]
    stops: float = 0.0
    blur_sigma_px: float = 0.0
    notes: dict[str, float] = field(default_factory=dict)


def quadrant_region(x: float, y: float, width: int, height: int) -> str:
    """A crude region for synthetic photos: top third forehead, then left/right cheek by side, chin below."""
    if y < height * 0.33:
        return "forehead"
    if y > height * 0.8:
        return "chin"
    # A frontal photo shows the patient's left cheek on the image right.
    return "left_cheek" if x > width / 2 else "right_cheek"


def to_lesion(p: PlantedLesion | tuple[str, float, float, float], width: int, height: int) -> Lesion:
    """A planted lesion (or ``(cls, x, y, radius)``) as a ``Lesion`` with a crude region."""
    cls, x, y, r = (p.cls or "none", p.x, p.y, p.radius) if isinstance(p, PlantedLesion) else p
    return Lesion(
        cls=cls,
        x=float(x),
        y=float(y),
        area_px=float(np.pi * r * r),
        bbox=(float(x - r), float(y - r), float(2 * r), float(2 * r)),
        score=1.0,
        region=quadrant_region(x, y, width, height),
    )


def similarity(
    shape: tuple[int, ...], *, shift_px: tuple[float, float] = (0.0, 0.0), rotation_deg: float = 0.0, scale: float = 1.0
) -> npt.NDArray[np.float64]:
    """2x3 similarity about the image centre (rotation counter-clockwise on screen), then a shift."""
    h, w = shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rotation_deg, scale).astype(np.float64)
    m[:, 2] += shift_px
    return m


def baseline(
    image: npt.NDArray[np.uint8],
    rng: np.random.Generator | int | None = None,
    *,
    counts: dict[str, int] | None = None,
    allowed: npt.NDArray[np.bool_] | None = None,
) -> tuple[npt.NDArray[np.uint8], list[PlantedLesion]]:
    """Plant baseline lesions on skin (``skin_tone_mask`` unless ``allowed`` is given)."""
    allowed = skin_tone_mask(image) if allowed is None else allowed
    return plant(image, counts or BASELINE_COUNTS, rng, allowed=allowed, min_gap=1.5)


def follow_up(
    clean: npt.NDArray[np.uint8],
    base_planted: list[PlantedLesion],
    rng: np.random.Generator | int | None = None,
    *,
    keep: float = 0.5,
    new_counts: dict[str, int] | None = None,
    matrix: npt.NDArray[np.float64] | None = None,
    stops: float = 0.0,
    blur_sigma_px: float = 0.0,
    allowed: npt.NDArray[np.bool_] | None = None,
    keep_scars: bool = False,
) -> SyntheticFollowUp:
    """Make one follow-up of a baseline made by ``baseline`` on the same clean photo.

    Args:
        clean: the lesion-free photo the baseline was planted on.
        base_planted: the baseline's planted lesions.
        rng: randomness.
        keep: chance that each baseline lesion persists.
        new_counts: kinds of new lesions to plant away from every baseline lesion.
        matrix: 2x3 baseline -> follow-up pixels (see ``similarity``); None for identity.
        stops: exposure change (negative = darker).
        blur_sigma_px: Gaussian blur applied last.
        allowed: where new lesions may go (``skin_tone_mask`` by default).
        keep_scars: scars always persist (they do on real skin).
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    h, w = clean.shape[:2]
    m = np.eye(2, 3) if matrix is None else np.asarray(matrix, np.float64)
    kept = []
    for i, p in enumerate(base_planted):
        draw = rng.random()  # drawn for every lesion, so keep_scars does not change the other lesions' fates
        if draw < keep or (keep_scars and p.cls == "scar"):
            kept.append(i)
    img = clean
    for i in kept:
        p = base_planted[i]
        img, _ = render(img, p.kind, p.x, p.y, p.radius, rng)
    allowed = skin_tone_mask(clean) if allowed is None else allowed
    avoid = [(p.x, p.y, p.radius * 1.5) for p in base_planted]
    img, new_planted = plant(img, new_counts or {"papule": 2, "blackhead": 2}, rng, allowed=allowed, avoid=avoid)
    pts = [(base_planted[i].cls or "none", base_planted[i].x, base_planted[i].y, base_planted[i].radius) for i in kept]
    pts += [(p.cls or "none", p.x, p.y, p.radius) for p in new_planted]
    img = np.asarray(cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), np.uint8)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    lesions = []
    for cls, x, y, r in pts:
        fx, fy = m[:, :2] @ (x, y) + m[:, 2]
        lesions.append(to_lesion((cls, fx, fy, r * scale), w, h))
    if stops:
        img = change_exposure(img, stops)
    if blur_sigma_px:
        img = np.asarray(cv2.GaussianBlur(img, (0, 0), blur_sigma_px), np.uint8)
    assert all(KINDS[p.kind] is not None for p in new_planted)
    return SyntheticFollowUp(
        image=img,
        lesions=tuple(lesions),
        matrix=m,
        persisting=tuple((i, k) for k, i in enumerate(kept)),
        resolved=tuple(i for i in range(len(base_planted)) if i not in kept),
        new=tuple(range(len(kept), len(lesions))),
        stops=stops,
        blur_sigma_px=blur_sigma_px,
    )


def make_result(
    lesions: tuple[Lesion, ...] | list[Lesion],
    shape: tuple[int, ...],
    *,
    path: str = "synthetic.png",
    face_box: tuple[int, int, int, int] | None = None,
    view: str = "front",
) -> CountResult:
    """A ``CountResult`` holding given lesions, as the counting pipeline would return it (no model)."""
    h, w = shape[:2]
    return CountResult(
        image=ImageInfo(path, w, h, "0" * 64),
        model=ModelInfo("truth", "0", "0" * 64),
        face=FaceInfo(found=face_box is not None, box=face_box, method="synthetic", view=view),
        lesions=tuple(lesions),
        counts=count_by_class(lesions),
        counts_by_region=count_by_region(lesions),
        grades=grades(list(lesions), regions_known=True),
    )


def synthetic_patient(
    clean: npt.NDArray[np.uint8] | None = None, rng: np.random.Generator | int | None = 0
) -> tuple[list[Visit], list[SyntheticFollowUp]]:
    """A made-up patient for demos and the web app's example page: four front visits, no model needed.

    Botulinum toxin at baseline (age 24); at day 45 most inflammatory lesions have resolved, at day 100 the
    skin is still clear, at day 170 lesions are back (a rebound) and the photo is 1.5 stops darker. Lesions
    are the planted ones, so the counts are exact.

    Args:
        clean: HxWx3 uint8 RGB lesion-free face photo; scikit-image's astronaut (public domain), enlarged
            to 1024 px, when None.
        rng: randomness.

    Returns:
        The visits (baseline first) and, for each follow-up, the truth about its lesions.
    """
    import datetime as dt

    from lesioncount.face import analyse_face

    if clean is None:
        from skimage import data

        # Enlarged 2x: lesions keep their real size, so the face has room for new ones at follow-up.
        clean = np.asarray(cv2.resize(data.astronaut(), None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC), np.uint8)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    face = analyse_face(clean)
    box = face.box
    # Plant where either the face analysis or the loose skin-colour model sees skin near the face.
    skin = face.skin | skin_tone_mask(clean)
    if box is not None:
        from lesioncount.compare.comparability import face_mask

        x, y, bw, bh = box
        skin &= face_mask(clean.shape, (x - 0.12 * bw, y + 0.02 * bh, 1.24 * bw, 1.25 * bh))
    h, w = clean.shape[:2]

    def with_regions(lesions: tuple[Lesion, ...] | list[Lesion]) -> list[Lesion]:
        return [replace(les, region=face.region_at(les.x, les.y)) if face.found else les for les in lesions]

    counts = {"papule": 4, "pustule": 2, "blackhead": 3, "whitehead": 2, "boxcar": 2}
    base_img, planted = baseline(clean, rng, allowed=skin, counts=counts)
    base_lesions = with_regions([to_lesion(p, w, h) for p in planted])
    day0 = dt.date(2026, 1, 12)
    visits = [
        Visit(
            make_result(base_lesions, clean.shape, path="baseline.png", face_box=box),
            base_img,
            day0,
            "front",
            age_years=24,
            treatment="botulinum toxin 20 U, forehead and cheeks",
            skin_mask=skin,
        )
    ]
    plan = [
        (45, dict(keep=0.3, new_counts={"papule": 1}, matrix=similarity(clean.shape, shift_px=(6.0, -4.0)))),
        (100, dict(keep=0.25, new_counts={"blackhead": 1}, matrix=similarity(clean.shape, rotation_deg=3.0))),
        (170, dict(keep=0.6, new_counts={"papule": 3, "pustule": 1}, stops=-1.5)),
    ]
    truths = []
    for days, kw in plan:
        fu = follow_up(clean, planted, rng, allowed=skin, keep_scars=True, **kw)  # type: ignore[arg-type]
        truths.append(fu)
        les = with_regions(fu.lesions)
        result = make_result(les, clean.shape, path=f"day{days}.png", face_box=box)
        visits.append(Visit(result, fu.image, day0 + dt.timedelta(days=days), "front", age_years=24, skin_mask=skin))
    return visits, truths
