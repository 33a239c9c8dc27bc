"""Match individual lesions between a baseline and a registered follow-up photo.

Follow-up lesion centres are mapped into the baseline frame with the registration, then each class is
matched on its own with the project's one centre matcher (``lesioncount.matching.match_centres``:
Hungarian, the most pairs within the tolerance, then the least total distance). A matched pair is a
*persisting* lesion, an unmatched baseline lesion has *resolved*, an unmatched follow-up lesion is *new*.
Lesions that fall outside the other photo's frame cannot be judged and are reported apart (``out_of_view``).

**Hysteresis.** A lesion counted in one photo whose place in the other shows a peak just under the counting
threshold (at least half of it: the count result's ``near_threshold`` peaks), or a lesion counted as another
class, has neither resolved nor appeared: the model saw something there in both photos, once on the other
side of its threshold or under another name. Such a lesion is *uncertain*, apart from resolved and new (a
change of class still shows in the counts per class). Measured on no-change re-takes of real photos in
``docs/compare.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lesioncount.compare.register import Registration, invert, map_points
from lesioncount.matching import match_centres
from lesioncount.types import ACNE_CLASSES, COUNT_KEYS, REGIONS, TOTAL_ACNE, Lesion

#: Default tolerance as a fraction of the baseline face height.
TOLERANCE_FRAC = 0.02
#: Floor on the tolerance, photo pixels.
MIN_TOLERANCE_PX = 3.0
#: Statuses a lesion can have.
STATUSES = ("resolved", "persisting", "new", "uncertain")


@dataclass(frozen=True)
class LesionMatch:
    """Lesion-level outcome of one baseline/follow-up pair.

    Attributes:
        base_lesions: the baseline lesions (baseline pixels).
        follow_lesions: the follow-up lesions (follow-up pixels).
        follow_xy_in_base: (N, 2) follow-up centres mapped to baseline pixels, as nested tuples.
        pairs: ``(base index, follow index)`` of persisting lesions.
        distances_px: centre distance of each pair in baseline pixels.
        resolved: baseline indices that have no partner.
        new: follow-up indices that have no partner.
        base_out_of_view: baseline indices outside the follow-up's frame (not judged).
        follow_out_of_view: follow-up indices outside the baseline's frame (not judged).
        tolerance_px: the matching tolerance in baseline pixels.
    """

    base_lesions: tuple[Lesion, ...]
    follow_lesions: tuple[Lesion, ...]
    follow_xy_in_base: tuple[tuple[float, float], ...]
    pairs: tuple[tuple[int, int], ...]
    distances_px: tuple[float, ...]
    resolved: tuple[int, ...]
    new: tuple[int, ...]
    base_out_of_view: tuple[int, ...]
    follow_out_of_view: tuple[int, ...]
    tolerance_px: float
    base_uncertain: tuple[int, ...] = ()
    follow_uncertain: tuple[int, ...] = ()

    def _rows(self) -> list[tuple[Lesion, str]]:
        rows = [(self.base_lesions[i], "resolved") for i in self.resolved]
        rows += [(self.base_lesions[i], "persisting") for i, _ in self.pairs]
        rows += [(self.follow_lesions[j], "new") for j in self.new]
        rows += [(self.base_lesions[i], "out_of_view") for i in self.base_out_of_view]
        rows += [(self.follow_lesions[j], "out_of_view") for j in self.follow_out_of_view]
        rows += [(self.base_lesions[i], "uncertain") for i in self.base_uncertain]
        rows += [(self.follow_lesions[j], "uncertain") for j in self.follow_uncertain]
        return rows

    def tally(self) -> dict[str, dict[str, int]]:
        """Per class (plus ``total_acne``): counts of resolved, persisting, new, uncertain and out_of_view lesions."""
        out = _empty_tally()
        for les, status in self._rows():
            _add(out, les.cls, status)
        return out

    def tally_by_region(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per region (baseline region for resolved/persisting, follow-up region for new): ``tally`` form."""
        out = {r: _empty_tally() for r in REGIONS}
        for les, status in self._rows():
            _add(out.setdefault(les.region, _empty_tally()), les.cls, status)
        return out

    def status_of_base(self) -> list[str]:
        """Status of each baseline lesion: resolved, persisting, uncertain or out_of_view."""
        st = ["resolved"] * len(self.base_lesions)
        for i, _ in self.pairs:
            st[i] = "persisting"
        for i in self.base_out_of_view:
            st[i] = "out_of_view"
        for i in self.base_uncertain:
            st[i] = "uncertain"
        return st

    def status_of_follow(self) -> list[str]:
        """Status of each follow-up lesion: new, persisting, uncertain or out_of_view."""
        st = ["new"] * len(self.follow_lesions)
        for _, j in self.pairs:
            st[j] = "persisting"
        for j in self.follow_out_of_view:
            st[j] = "out_of_view"
        for j in self.follow_uncertain:
            st[j] = "uncertain"
        return st

    def to_dict(self) -> dict[str, object]:
        return {
            "tolerance_px": round(self.tolerance_px, 2),
            "pairs": [[i, j] for i, j in self.pairs],
            "distances_px": [round(d, 2) for d in self.distances_px],
            "resolved": list(self.resolved),
            "new": list(self.new),
            "base_out_of_view": list(self.base_out_of_view),
            "follow_out_of_view": list(self.follow_out_of_view),
            "base_uncertain": list(self.base_uncertain),
            "follow_uncertain": list(self.follow_uncertain),
            "by_class": self.tally(),
            "by_region": self.tally_by_region(),
        }


def _empty_tally() -> dict[str, dict[str, int]]:
    return {c: {"resolved": 0, "persisting": 0, "new": 0, "uncertain": 0, "out_of_view": 0} for c in COUNT_KEYS}


def _add(tally: dict[str, dict[str, int]], cls: str, status: str) -> None:
    tally.setdefault(cls, {"resolved": 0, "persisting": 0, "new": 0, "uncertain": 0, "out_of_view": 0})[status] += 1
    if cls in ACNE_CLASSES:
        tally[TOTAL_ACNE][status] += 1


def default_tolerance_px(face_box: Sequence[float] | None, image_shape: tuple[int, ...] | None) -> float:
    """Matching tolerance: 2% of the baseline face height, or 1% of the frame diagonal when no face."""
    if face_box is not None:
        return max(MIN_TOLERANCE_PX, TOLERANCE_FRAC * float(face_box[3]))
    if image_shape is not None:
        return max(MIN_TOLERANCE_PX, 0.01 * float(np.hypot(image_shape[0], image_shape[1])))
    return 10.0


def _inside(xy: npt.NDArray[np.float64], shape: tuple[int, ...] | None, margin: float) -> npt.NDArray[np.bool_]:
    if shape is None:
        return np.ones(len(xy), bool)
    h, w = shape[:2]
    return (xy[:, 0] >= margin) & (xy[:, 1] >= margin) & (xy[:, 0] <= w - 1 - margin) & (xy[:, 1] <= h - 1 - margin)


def match_lesions(
    base_lesions: Sequence[Lesion],
    follow_lesions: Sequence[Lesion],
    matrix: Registration | npt.ArrayLike | None = None,
    *,
    tolerance_px: float = 10.0,
    base_shape: tuple[int, ...] | None = None,
    follow_shape: tuple[int, ...] | None = None,
    base_near: Sequence[Lesion] = (),
    follow_near: Sequence[Lesion] = (),
) -> LesionMatch:
    """Pair baseline and follow-up lesions after registration.

    Args:
        base_lesions: lesions of the baseline photo (baseline pixels).
        follow_lesions: lesions of the follow-up photo (follow-up pixels).
        matrix: a ``Registration`` (its affine plus local flow correction), a 2x3 affine follow-up -> baseline
            pixels, or None for identity.
        tolerance_px: largest centre distance (baseline pixels) for a persisting pair; > 0.
        base_shape: baseline photo shape; follow-up lesions that map outside it are ``out_of_view``.
        follow_shape: follow-up photo shape; baseline lesions that map outside it are ``out_of_view``.
        base_near, follow_near: each photo's peaks just under the threshold (``CountResult.near_threshold``);
            an unpaired lesion with one of these, or an unpaired counted lesion of another class, within the
            tolerance in the other photo is ``uncertain`` rather than resolved or new.

    Returns:
        The lesion match. Every input lesion lands in exactly one of pairs, resolved/new, uncertain or
        out_of_view.
    """
    if tolerance_px <= 0:
        raise ValueError(f"tolerance_px must be positive, got {tolerance_px}")
    to_base = matrix.to_base if isinstance(matrix, Registration) else None
    m = np.eye(2, 3) if matrix is None else matrix.affine if isinstance(matrix, Registration) else np.asarray(matrix)
    m = m.astype(np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"matrix must be 2x3 (follow-up -> baseline affine), got shape {m.shape}")
    base = tuple(base_lesions)
    follow = tuple(follow_lesions)
    bxy = np.array([[les.x, les.y] for les in base], np.float64).reshape(-1, 2)
    fxy_own = np.array([[les.x, les.y] for les in follow], np.float64).reshape(-1, 2)
    fxy = to_base(fxy_own) if to_base is not None else map_points(m, fxy_own)
    # A lesion is judged only when the other photo shows its place (a small margin for edge lesions).
    base_in = _inside(map_points(invert(m), bxy), follow_shape, 2.0)
    follow_in = _inside(fxy, base_shape, 2.0)
    pairs: list[tuple[int, int, float]] = []
    classes = sorted({les.cls for les in base} | {les.cls for les in follow})
    for c in classes:
        bi = [i for i, les in enumerate(base) if les.cls == c and base_in[i]]
        fj = [j for j, les in enumerate(follow) if les.cls == c and follow_in[j]]
        if not bi or not fj:
            continue
        rows, cols, dist = match_centres(bxy[bi], fxy[fj], tolerance_px)
        pairs += [(bi[r], fj[k], float(dk)) for r, k, dk in zip(rows, cols, dist, strict=True)]
    pairs.sort()
    paired_b = {i for i, _, _ in pairs}
    paired_f = {j for _, j, _ in pairs}
    resolved = [i for i in range(len(base)) if base_in[i] and i not in paired_b]
    new = [j for j in range(len(follow)) if follow_in[j] and j not in paired_f]
    # Hysteresis: what the other photo shows near an unpaired lesion, in baseline pixels.
    near_f = np.array([[les.x, les.y] for les in follow_near], np.float64).reshape(-1, 2)
    near_f = to_base(near_f) if to_base is not None and len(near_f) else map_points(m, near_f)
    near_b = np.array([[les.x, les.y] for les in base_near], np.float64).reshape(-1, 2)
    # Evidence in the other photo: its peaks just under the threshold, and its unpaired counted lesions (of
    # another class: one of the same class that close would have been paired).
    follow_seen = np.vstack([near_f, fxy[new]]) if new else near_f
    base_seen = np.vstack([near_b, bxy[resolved]]) if resolved else near_b
    base_unc = [i for i in resolved if _near(bxy[i], follow_seen, tolerance_px)]
    follow_unc = [j for j in new if _near(fxy[j], base_seen, tolerance_px)]
    return LesionMatch(
        base_lesions=base,
        follow_lesions=follow,
        follow_xy_in_base=tuple((float(x), float(y)) for x, y in fxy),
        pairs=tuple((i, j) for i, j, _ in pairs),
        distances_px=tuple(d for _, _, d in pairs),
        resolved=tuple(i for i in resolved if i not in base_unc),
        new=tuple(j for j in new if j not in follow_unc),
        base_out_of_view=tuple(i for i in range(len(base)) if not base_in[i]),
        follow_out_of_view=tuple(j for j in range(len(follow)) if not follow_in[j]),
        tolerance_px=float(tolerance_px),
        base_uncertain=tuple(base_unc),
        follow_uncertain=tuple(follow_unc),
    )


def _near(xy: npt.NDArray[np.float64], others: npt.NDArray[np.float64], tolerance_px: float) -> bool:
    return bool(len(others)) and float(np.min(np.hypot(*(others - xy).T))) <= tolerance_px
